import assert from "node:assert/strict";
import type { PlannedEvent } from "../cluster/machine.ts";
import { NodeError } from "./errors.ts";
import type { ClusterTarget } from "./pier_client.ts";
import { addShip, describeChop, planBatches } from "./ship_admin.ts";

/** A target nothing listens at (port 1 on loopback): a check that passes ends there. */
const UNREACHABLE: ClusterTarget = {
  address: "127.0.0.1:1",
  credentials: { clusterId: "0".repeat(32), secret: new Uint8Array(32) },
};

function event(bytes: number): PlannedEvent {
  return { mug: 0, job: new Uint8Array(bytes) };
}

Deno.test("add: batches hold at most the byte limit, in order; a big job is alone", () => {
  const events = [event(3), event(4), event(2), event(10), event(1), event(5)];
  const batches = planBatches(events, 7);
  assert.deepEqual(batches.map((b) => b.map((e) => e.job.length)), [[3, 4], [2], [10], [1, 5]]);
  assert.deepEqual(batches.flat(), events);
  assert.deepEqual(planBatches([], 7), []);
});

Deno.test("add: a noun that is no pill is a NodeError naming it, before the cluster is asked", async () => {
  await assert.rejects(
    addShip(UNREACHABLE, 0n, { fake: true, pill: { noun: 42n, name: "bad.pill" } }),
    (e) =>
      e instanceof NodeError &&
      e.message ===
        "bad.pill is not a usable pill: The noun is not a pill: expected [%pill typ bot mod use]",
  );
});

Deno.test("chop: the sentence says what drops and where the log starts, planned and done", () => {
  const plan = {
    ship: "0",
    fromEve: 1,
    toEve: 4000,
    firstEve: 4001,
    epoch: 4000,
    bytes: 3_912_345,
    imageBytes: 0,
    lastEve: 4100,
    keptEpochs: [4000],
    chopped: false,
  };
  assert.equal(
    describeChop(plan),
    "drops events 1-4,000 of ~zod (3.9 MB); the log will start at event 4,001 after epoch 4,000's image",
  );
  assert.equal(
    describeChop({
      ...plan,
      fromEve: 101,
      imageBytes: 2_500_000,
      bytes: 12_600_000,
      chopped: true,
    }),
    "dropped events 101-4,000 of ~zod (13 MB) and the images of older epochs (2.5 MB); the log starts at event 4,001 after epoch 4,000's image",
  );
  assert.match(
    describeChop({ ...plan, fromEve: 4000, bytes: 2900 }),
    /^drops event 4,000 of ~zod \(2,900 bytes\);/,
  );
});
