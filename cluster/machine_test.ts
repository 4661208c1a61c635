import assert from "node:assert/strict";
import { decodeCommand, encodeAddress, encodeRaw, Machine } from "./machine.ts";

/** A settings map standing in for the store's settings table. */
function memoryStore() {
  const m = new Map<string, string>();
  return {
    getSetting: (k: string) => m.get(k),
    setSetting: (k: string, v: string) => void m.set(k, v),
    map: m,
  };
}

Deno.test("commands round-trip and unknown kinds are refused", () => {
  assert.deepEqual(decodeCommand(encodeAddress(7, "10.0.0.7:7700")), {
    kind: "address",
    nodeId: 7,
    address: "10.0.0.7:7700",
  });
  const raw = decodeCommand(encodeRaw(new Uint8Array([1, 2, 3])));
  assert.equal(raw.kind, "raw");
  assert.deepEqual(raw.kind === "raw" && [...raw.data], [1, 2, 3]);
  assert.throws(() => decodeCommand(new Uint8Array([99])), /Unknown command kind 99/);
});

Deno.test("applying addresses is idempotent and survives a restart", () => {
  const store = memoryStore();
  const a = new Machine(store);
  a.apply(encodeAddress(1, "a:1"));
  a.apply(encodeAddress(2, "b:2"));
  a.apply(encodeAddress(2, "b:2")); // re-applied after a restart: no change
  a.apply(encodeAddress(1, "a:9")); // a node that moved
  const b = new Machine(store);
  assert.deepEqual([...b.addresses], [[1, "a:9"], [2, "b:2"]]);
  b.apply(encodeRaw(new Uint8Array(10)));
  assert.equal(b.rawApplied, 1);
  assert.equal(b.rawBytesApplied, 10);
});
