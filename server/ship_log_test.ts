import assert from "node:assert/strict";
import { jam } from "../vere/noun.ts";
import type { ClusterTarget } from "./pier_client.ts";
import { describeEvent, verifyShipLog } from "./ship_log.ts";

/** A target nothing listens at (port 1 on loopback). */
const UNREACHABLE: ClusterTarget = {
  address: "127.0.0.1:1",
  credentials: { clusterId: "0".repeat(32), secret: new Uint8Array(32) },
};

Deno.test("log: an event that does not decode is an ovum '(undecodable)' with its mug and size", () => {
  const formula = describeEvent({ eve: 1, mug: 7, job: jam(42n) }, 1);
  assert.equal(formula.kind, "formula");
  assert.equal(formula.mug, 7);
  assert.equal(formula.bytes, jam(42n).length);
  // Not a jam at all (and, past the life, no [now ovum] either).
  const junk = describeEvent({ eve: 2, mug: 0xdeadbeef, job: new Uint8Array([0]) }, 1);
  assert.deepEqual(junk, {
    eve: 2,
    kind: "ovum",
    time: null,
    wire: null,
    card: "(undecodable)",
    bytes: 1,
    mug: 0xdeadbeef,
  });
});

Deno.test("log: verify counts a member without an address or an answer as not agreeing", async () => {
  const r = await verifyShipLog(
    [{ id: 1, address: null }, { id: 2, address: UNREACHABLE.address }],
    UNREACHABLE.credentials,
    0n,
  );
  assert.equal(r.agree, false);
  assert.equal(r.answered, 0);
  assert.equal(r.lastEve, 0);
  assert.deepEqual(r.problems, []);
  assert.deepEqual(r.nodes[0], { id: 1, error: "address unknown" });
  assert.equal(r.nodes[1].id, 2);
  assert.ok("error" in r.nodes[1] && r.nodes[1].error.length > 0);
});
