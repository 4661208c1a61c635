/**
 * `seguro ship import` on a real 3-node cluster whose leader is killed (-9)
 * in the middle of the import: the import reconnects to the new leader,
 * re-reads what the cluster holds and finishes by itself; every event is on
 * every node exactly once.
 */

import assert from "node:assert/strict";
import { join } from "node:path";
import { ClusterClient } from "../../cluster/api.ts";
import { sameBytes } from "../../cluster/codec.ts";
import { bytesToAtom, cell, jam } from "../../vere/noun.ts";
import { LOG_VERSION, type PierEvent, writePier } from "../../vere/pier.ts";
import { lmdbMissing } from "../fixtures.ts";
import { clusterTest, NodeProcess, type TestCluster } from "./harness.ts";

/** Events in the pier: five 4 MiB batches of 128 events, so the import takes a while. */
const EVENTS = 640;
/** Bytes of the payload atom in each job. */
const PAYLOAD_BYTES = 32 * 1024;
/**
 * The leader is killed once a follower holds this event, the last of the first
 * batch: two batches at most are in flight then, so two at least are left.
 */
const KILL_AT_EVE = 128;

/** Event `eve`: the jam of `[eve payload]`, a payload of 32 KiB that differs per event. */
function bigEvent(eve: number): PierEvent {
  const payload = new Uint8Array(PAYLOAD_BYTES);
  const view = new DataView(payload.buffer);
  for (let i = 0; i < PAYLOAD_BYTES; i += 4) view.setUint32(i, Math.imul(eve, 2654435761) ^ i);
  payload[PAYLOAD_BYTES - 1] = 1; // no trailing zero bytes: the atom keeps its length
  return {
    eve,
    mug: Math.imul(eve, 40503) >>> 1,
    job: jam(cell(BigInt(eve), bytesToAtom(payload))),
  };
}

/** Every event of `ship` on the node at `address`, read back page by page. */
async function readBack(c: TestCluster, address: string): Promise<PierEvent[]> {
  const client = await ClusterClient.connect(address, c.credentials);
  try {
    const out: PierEvent[] = [];
    for (;;) {
      const page = await client.ships.events(0n, out.length + 1, 100);
      if (page.length === 0) return out;
      out.push(...page);
    }
  } finally {
    client.close();
  }
}

/** Resolves once the node at `address` holds event `eve` of ~zod (a long poll, no sleep). */
async function holds(c: TestCluster, address: string, eve: number): Promise<void> {
  const client = await ClusterClient.connect(address, c.credentials);
  try {
    const got = await client.ships.events(0n, eve, 1, 60_000);
    assert.equal(got.length, 1, `${address} did not get event ${eve} within 60 s`);
  } finally {
    client.close();
  }
}

clusterTest(
  "ship import goes on by itself after a kill -9 of the leader; every event once on every node",
  3,
  async (c) => {
    const pier = join(c.root, "zod-pier");
    const events = Array.from({ length: EVENTS }, (_, i) => bigEvent(i + 1));
    writePier(pier, {
      meta: { version: LOG_VERSION, who: 0n, fake: true, life: 0 },
      events,
      vereVersion: "4.0",
    });
    const first = c.leader()!;
    const watcher = [...c.members.values()].find((m) => m.id !== first.id)!;

    // Started at the first leader's address: once it is killed, the import must find the
    // other members by itself.
    const started = performance.now();
    const args = ["ship", "import", "~zod", pier, "--cluster", first.address];
    const importing = new NodeProcess(args, { SEGURO_TOKEN: c.token });
    await holds(c, watcher.address, KILL_AT_EVE);
    // The leader now (heavy writes can move leadership before the kill): the import writes to it.
    const leader = c.leader()!;
    const killedAt = importing.mark();
    await leader.proc!.kill("SIGKILL");
    const killedMs = performance.now() - started;
    const survivor = [...c.members.values()].find((m) => m.id !== leader.id)!;
    const status = await importing.exited;
    const output = importing.lines.join("\n");
    assert.equal(status.code, 0, output);
    console.error(
      `  killed the leader (node ${leader.id}) ${killedMs.toFixed(0)} ms in; import done after ${
        (performance.now() - started).toFixed(0)
      } ms`,
    );
    // After the kill it said it retried, and from where; then it finished the whole pier.
    assert.match(
      importing.lines.slice(killedAt).join("\n"),
      /^(lost the connection to|leader changed|cannot reach|no leader).*; resuming from event [\d,]+ in \d+\.\d s$/m,
    );
    assert.doesNotMatch(output, /^error:/m);
    assert.match(output, /Imported 640 events of ~zod .* it now has 640\./);

    // Every event exactly once, byte for byte, on a survivor.
    const held = await readBack(c, survivor.address);
    assert.deepEqual(held.map((e) => e.eve), events.map((e) => e.eve));
    assert.ok(held.every((e, i) => e.mug === events[i].mug), "mugs");
    assert.ok(held.every((e, i) => sameBytes(e.job, events[i].job)), "jobs");

    // The killed leader comes back, catches up, and all three nodes hold the same log.
    const back = c.restart(leader.id);
    await back.waitForEvent("listening");
    await holds(c, leader.address, EVENTS);
    const verify = new NodeProcess(["log", "verify", "~zod", "--cluster", survivor.address], {
      SEGURO_TOKEN: c.token,
    });
    assert.equal((await verify.exited).code, 0, verify.lines.join("\n"));
    assert.match(verify.lines.join("\n"), /3 nodes agree on 640 events/);
  },
  { ignore: lmdbMissing() },
);
