/**
 * Compaction and snapshot streaming on real processes: nodes that keep a
 * tail of 20 log entries; a follower killed with kill -9 while events flow,
 * and a node that joins late, both catch up by snapshot, and every node then
 * holds every event (`log verify`).
 */

import assert from "node:assert/strict";
import { ClusterClient, withLeader } from "../../cluster/api.ts";
import { HANG_GUARD_MS, NodeProcess, TestCluster } from "./harness.ts";
import { beltEvents } from "./belt_events.ts";

const TAIL = ["--log-tail", "20"];

/** Appends events `from`..`to` of ~zod in batches of 5 (one log entry each). */
async function appendEvents(c: TestCluster, from: number, to: number): Promise<void> {
  await withLeader(c.anyAddress(), c.credentials, async (client) => {
    for (let first = from; first <= to; first += 5) {
      const batch = beltEvents(first, Math.min(to, first + 4));
      await client.ships.write({
        kind: "events",
        ship: 0n,
        firstEve: first,
        events: batch.map((e) => ({ mug: e.mug, job: e.job })),
      });
    }
  });
}

function seguro(c: TestCluster, args: string[]): NodeProcess {
  return new NodeProcess([...args, "--cluster", c.anyAddress()], { SEGURO_TOKEN: c.token });
}

Deno.test({
  name: "snapshots: a follower behind the compacted log, and a late joiner, catch up by snapshot",
  sanitizeResources: false,
  sanitizeOps: false,
  async fn() {
    const c = await TestCluster.init(TAIL);
    const guard = setTimeout(() => c.destroy(), HANG_GUARD_MS);
    try {
      await c.join(TAIL);
      await c.join(TAIL);
      await withLeader(
        c.anyAddress(),
        c.credentials,
        (client) => client.ships.add(0n, { fake: true }),
      );
      await appendEvents(c, 1, 100);

      // kill -9 a follower; 60 more entries pass its tail while it is down.
      const follower = [...c.members.values()].find((m) => m !== c.leader())!;
      await follower.proc!.kill("SIGKILL");
      follower.proc = undefined;
      await appendEvents(c, 101, 400);
      const back = c.restart(follower.id, TAIL);
      const installed = await back.waitForEvent("snapshot_installed");
      assert.ok(Number(installed.index) > 20, `snapshot at ${installed.index}`);

      // A node that joins now gets the state by snapshot, not the log from entry 1.
      const late = await c.join(TAIL);
      await late.proc!.waitForEvent("snapshot_installed");
      await appendEvents(c, 401, 420);

      const verify = seguro(c, ["log", "verify", "~zod"]);
      assert.equal((await verify.exited).code, 0, verify.lines.join("\n"));
      assert.match(verify.lines.join("\n"), /4 nodes agree on 420 events/);

      // Every node's log is compacted to its tail: restart reads a bounded log.
      for (const m of c.members.values()) {
        const client = await ClusterClient.connect(m.address, c.credentials);
        try {
          const s = await client.status();
          assert.ok(s.lastIndex - s.firstIndex < 2 * 20 + 5, `node ${m.id}: ${JSON.stringify(s)}`);
        } finally {
          client.close();
        }
      }
    } finally {
      clearTimeout(guard);
      await c.destroy();
    }
  },
});
