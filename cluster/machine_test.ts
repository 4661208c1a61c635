import assert from "node:assert/strict";
import { applyAll } from "../tests/machine_commands.ts";
import { decodeCommand, encodeAddress, encodeCommand, encodeRaw, Machine } from "./machine.ts";
import { Store } from "./store.ts";

async function withStore(f: (store: Store, dir: string) => void | Promise<void>): Promise<void> {
  const dir = await Deno.makeTempDir({ prefix: "seguro-machine-" });
  const store = Store.create(dir, {
    identity: { clusterId: "ab".repeat(16), nodeId: 1, groupId: 1 },
    secret: new Uint8Array(32).fill(3),
    conf: { voters: [1], learners: [] },
  });
  try {
    await f(store, dir);
  } finally {
    store.close();
    await Deno.remove(dir, { recursive: true });
  }
}

Deno.test("commands round-trip and unknown kinds are refused", () => {
  assert.deepEqual(decodeCommand(encodeAddress(7, "10.0.0.7:7700")), {
    kind: "address",
    nodeId: 7,
    address: "10.0.0.7:7700",
  });
  const events = {
    kind: "events" as const,
    ship: (1n << 127n) + 5n,
    firstEve: 9,
    events: [{ mug: 0xdeadbeef, job: new Uint8Array([1, 2]) }],
  };
  assert.deepEqual(decodeCommand(encodeCommand(events)), events);
  const set = { kind: "shipSet" as const, ship: 0n, optimism: -1 };
  assert.deepEqual(decodeCommand(encodeCommand(set)), set);
  const raw = decodeCommand(encodeRaw(new Uint8Array([1, 2, 3])));
  assert.deepEqual(raw.kind === "raw" && [...raw.data], [1, 2, 3]);
  assert.throws(() => decodeCommand(new Uint8Array([99])), /Unknown command kind 99/);
  const revoke = { kind: "revoke" as const, serial: "7c3838087f05985083e22f9d71bc2785" };
  assert.deepEqual(decodeCommand(encodeCommand(revoke)), revoke);
  assert.throws(
    () => decodeCommand(encodeCommand({ kind: "revoke", serial: "7C38; DROP" })),
    /A revoke command has serial/,
  );
});

Deno.test("revocations are applied, idempotent, and survive a reopen", async () => {
  await withStore((store) => {
    const m = new Machine(store);
    applyAll(store, m, [
      encodeCommand({ kind: "revoke", serial: "0a" }),
      encodeCommand({ kind: "revoke", serial: "0b" }),
      encodeCommand({ kind: "revoke", serial: "0a" }),
    ]);
    assert.deepEqual([...m.revoked].sort(), ["0a", "0b"]);
    assert.deepEqual([...new Machine(store).revoked].sort(), ["0a", "0b"], "kept in the store");
  });
});

Deno.test("a ship's layout is recorded, never lowered, kept in the store, and forgotten with the ship", async () => {
  const layout = { kind: "shipLayout" as const, ship: 3n, layout: "epochs1" as const };
  assert.deepEqual(decodeCommand(encodeCommand(layout)), layout);
  const bad = encodeCommand(layout);
  bad[17] = 4;
  assert.throws(() => decodeCommand(bad), /A shipLayout command has layout 4/);
  await withStore((store) => {
    const m = new Machine(store);
    const add = encodeCommand({ kind: "shipAdd", ship: 3n, fake: true, optimism: -1, life: 0 });
    const set = (l: "log1" | "epochs1" | "epochs2") =>
      encodeCommand({ kind: "shipLayout", ship: 3n, layout: l });
    applyAll(store, m, [add]);
    assert.equal(m.layout(3n), undefined, "none recorded yet");
    applyAll(store, m, [set("epochs1")], 2);
    assert.equal(m.layout(3n), "epochs1");
    applyAll(store, m, [set("log1")], 3);
    assert.equal(m.layout(3n), "epochs1", "never lowered");
    applyAll(store, m, [set("epochs2")], 4);
    assert.equal(new Machine(store).layout(3n), "epochs2", "raised, and kept in the store");
    applyAll(store, m, [encodeCommand({ kind: "shipRemove", ship: 3n }), add], 5);
    assert.equal(m.layout(3n), undefined, "forgotten with the ship");
  });
});

Deno.test("addresses are applied, idempotent, and survive a reopen", async () => {
  await withStore((store) => {
    const m = new Machine(store);
    applyAll(store, m, [
      encodeAddress(1, "a:1"),
      encodeAddress(2, "b:2"),
      encodeAddress(2, "b:2"),
      encodeAddress(1, "a:9"),
    ]);
    assert.deepEqual([...new Machine(store).addresses], [[1, "a:9"], [2, "b:2"]]);
    assert.equal(m.defaultOptimism, -1, "no default yet: a quorum");
    applyAll(store, m, [encodeCommand({ kind: "defaultOptimism", optimism: 0 })], 5);
    assert.equal(m.defaultOptimism, 0);
    assert.equal(new Machine(store).defaultOptimism, 0, "the default survives a reopen");
  });
});

Deno.test("ship events: contiguous, idempotent by (ship, eve), gaps and conflicts refused, ships independent", async () => {
  await withStore((store) => {
    const m = new Machine(store, (s) => `~ship${s}`);
    const job = (n: number) => new Uint8Array([n, 1]);
    const ev = (ship: bigint, firstEve: number, jobs: number[]) =>
      encodeCommand({
        kind: "events",
        ship,
        firstEve,
        events: jobs.map((n) => ({ mug: n, job: job(n) })),
      });
    const results = applyAll(store, m, [
      encodeCommand({ kind: "shipAdd", ship: 0n, fake: true, optimism: -1, life: 0 }),
      encodeCommand({ kind: "shipAdd", ship: 1n, fake: true, optimism: 2, life: 0 }),
      ev(0n, 1, [1, 2, 3]),
      ev(1n, 1, [7]),
      ev(0n, 2, [2, 3, 4]), // retried overlap: 2 and 3 skipped, 4 appended
      ev(0n, 6, [6]), // gap
      ev(0n, 3, [9]), // a different event 3
      ev(5n, 1, [1]), // unknown ship
      encodeCommand({ kind: "shipAdd", ship: 1n, fake: true, optimism: -1, life: 0 }),
    ]);
    assert.deepEqual(results.slice(0, 5).map((r) => [r.ok, r.appended, r.skipped]), [
      [true, 0, 0],
      [true, 0, 0],
      [true, 3, 0],
      [true, 1, 0],
      [true, 1, 2],
    ]);
    assert.match(
      results[5].ok ? "" : results[5].reason,
      /last event is 4; event 6 would leave a gap/,
    );
    assert.match(results[6].ok ? "" : results[6].reason, /already has a different event 3/);
    assert.match(results[7].ok ? "" : results[7].reason, /~ship5 is not on this cluster/);
    assert.match(results[8].ok ? "" : results[8].reason, /already on this cluster/);
    const zod = m.ships.get(0n)!;
    assert.equal(zod.lastEve, 4);
    assert.equal(zod.lastMug, 4);
    assert.equal(zod.bytes, 8);
    assert.deepEqual(m.ships.events(0n, 1, 10).map((e) => [e.eve, e.mug, [...e.job]]), [
      [1, 1, [1, 1]],
      [2, 2, [2, 1]],
      [3, 3, [3, 1]],
      [4, 4, [4, 1]],
    ]);
    assert.equal(m.ships.get(1n)!.lastEve, 1);
    assert.equal(m.ships.get(1n)!.optimism, 2);
    applyAll(store, m, [encodeCommand({ kind: "shipRemove", ship: 0n })], 10);
    assert.equal(m.ships.get(0n), undefined);
    assert.deepEqual(m.ships.events(0n, 1, 10), []);
    assert.deepEqual(m.ships.list().map((s) => s.ship), [1n]);
  });
});

Deno.test("shipRun: set and cleared, survives a reopen, refused for an unknown ship, dropped with the ship", async () => {
  await withStore((store) => {
    const m = new Machine(store, (s) => `~ship${s}`);
    const run = { kind: "shipRun" as const, ship: 7n, run: true };
    assert.deepEqual(decodeCommand(encodeCommand(run)), run);
    assert.throws(() => decodeCommand(new Uint8Array([8, ...new Uint8Array(16), 2])), /run flag 2/);
    const [unknown] = applyAll(store, m, [encodeCommand(run)]);
    assert.equal(unknown.ok, false);
    assert.equal(m.runs(7n), false);
    applyAll(store, m, [
      encodeCommand({ kind: "shipAdd", ship: 7n, fake: true, optimism: -1, life: 0 }),
      encodeCommand(run),
    ], 2);
    assert.equal(m.runs(7n), true);
    assert.deepEqual(m.runShips(), [7n]);
    assert.equal(new Machine(store).runs(7n), true, "the flag survives a reopen");
    applyAll(store, m, [encodeCommand({ ...run, run: false })], 4);
    assert.equal(new Machine(store).runs(7n), false);
    applyAll(store, m, [encodeCommand(run), encodeCommand({ kind: "shipRemove", ship: 7n })], 5);
    assert.equal(m.runs(7n), false, "removing the ship clears its flag");
    assert.deepEqual(m.runShips(), []);
    assert.equal(new Machine(store).runs(7n), false);
  });
});

Deno.test("images: checksummed contiguous chunks, resumable, completed only by the right size and SHA-256", async () => {
  const { sha256, IMAGE_CHUNK_BYTES } = await import("./images.ts");
  await withStore((store) => {
    const m = new Machine(store, (s) => `~ship${s}`);
    const file = new Uint8Array(IMAGE_CHUNK_BYTES + 10).map((_, i) => (i * 7) & 0xff);
    const part = (offset: number, end: number) => {
      const data = file.subarray(offset, end);
      return encodeCommand({
        kind: "imageChunk",
        ship: 5n,
        epoch: 40,
        offset,
        sha256: sha256(data),
        data,
      });
    };
    const done = (size: number, sum: Uint8Array) =>
      encodeCommand({ kind: "imageDone", ship: 5n, epoch: 40, size, sha256: sum });
    const chunk = decodeCommand(part(0, 3));
    assert.equal(chunk.kind === "imageChunk" && chunk.offset, 0);
    const results = applyAll(store, m, [
      part(0, 100), // unknown ship: refused
      encodeCommand({ kind: "shipAdd", ship: 5n, fake: true, optimism: -1, life: 0 }),
      part(0, IMAGE_CHUNK_BYTES),
      part(0, IMAGE_CHUNK_BYTES), // the same chunk again: skipped
      part(IMAGE_CHUNK_BYTES + 5, file.length), // a gap
      done(file.length, sha256(file)), // too early: the size is short
      part(IMAGE_CHUNK_BYTES, file.length),
      done(file.length, sha256(file.subarray(1))), // wrong checksum
      done(file.length, sha256(file)),
      done(file.length, sha256(file)), // again: idempotent
      part(file.length, file.length + 1), // after completion
    ]);
    assert.deepEqual(results.map((r) => r.ok), [
      false,
      true,
      true,
      true,
      false,
      false,
      true,
      false,
      true,
      true,
      false,
    ]);
    assert.match(results[4].ok ? "" : results[4].reason, /would leave a gap/);
    assert.match(results[7].ok ? "" : results[7].reason, /does not match the SHA-256/);
    const bad = encodeCommand({
      kind: "imageChunk",
      ship: 5n,
      epoch: 41,
      offset: 0,
      sha256: sha256(file.subarray(0, 9)),
      data: file.subarray(0, 10),
    });
    const [corrupt] = applyAll(store, m, [bad], 12);
    assert.match(corrupt.ok ? "" : corrupt.reason, /does not match its checksum/);
    const again = new Machine(store);
    assert.deepEqual(again.images.list(5n).map((i) => [i.epoch, i.size, i.sha256]), [
      [40, file.length, Array.from(sha256(file), (b) => b.toString(16).padStart(2, "0")).join("")],
    ]);
    assert.deepEqual(
      again.images.chunk(5n, 40, IMAGE_CHUNK_BYTES),
      file.subarray(IMAGE_CHUNK_BYTES),
    );
    applyAll(store, m, [encodeCommand({ kind: "shipRemove", ship: 5n })], 13);
    assert.deepEqual(m.images.list(5n), [], "removing the ship drops its images");
  });
});
