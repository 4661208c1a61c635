/**
 * Ships on a real 3-node cluster: boot events from a pill, appends that are
 * idempotent by (ship, eve), refused gaps and conflicts, `log tail -f`,
 * `log verify` catching a corrupted row, `ship remove`.
 */

import assert from "node:assert/strict";
import { DatabaseSync } from "node:sqlite";
import { join } from "node:path";
import { ClusterClient } from "../../cluster/api.ts";
import type { ApiError, ShipJson } from "../../cluster/admin_protocol.ts";
import { shipKey } from "../../cluster/ships.ts";
import { cell, cord, jam, list, tuple } from "../../vere/noun.ts";
import { daFromUnix } from "../../vere/event.ts";
import { clusterTest, NodeProcess, TestCluster } from "./harness.ts";

/** A small pill the test builds itself: 2 formulas, 1 module ovum, 1 userspace ovum. */
function testPillBytes(): Uint8Array {
  const ovum = (wire: string, tag: string) => tuple(list([cord(wire)]), cord(tag), 0n);
  return jam(tuple(
    cord("pill"),
    cord("test"),
    list([tuple(2n, 0n, 3n), tuple(1n, 0n)]),
    list([ovum("c", "what")]),
    list([ovum("c", "park")]),
  ));
}

/** The job of a made-up event `n` after boot. */
function job(n: number): Uint8Array {
  return jam(
    tuple(
      daFromUnix(1_800_000_000n + BigInt(n), 0),
      list([cord("d")]),
      cord("belt"),
      cell(BigInt(n), 0n),
    ),
  );
}

function seguro(c: TestCluster, args: string[]): NodeProcess {
  return new NodeProcess([...args, "--cluster", c.anyAddress()], { SEGURO_TOKEN: c.token });
}

async function ships(client: ClusterClient): Promise<ShipJson[]> {
  return await client.ships.list();
}

clusterTest(
  "ships: boot from a pill, idempotent appends, gaps refused, tail -f, verify, remove",
  3,
  async (c) => {
    const pill = join(c.root, "test.pill");
    await Deno.writeFile(pill, testPillBytes());

    const add = seguro(c, ["ship", "add", "~zod", "--fake", "--pill", pill]);
    assert.equal((await add.exited).code, 0, add.lines.join("\n"));
    assert.match(add.lines.join("\n"), /Added ~zod with its 9 boot events \(life 2\)/);

    const leader = c.leader()!;
    const client = await ClusterClient.connect(leader.address, c.credentials);
    try {
      assert.equal((await ships(client))[0].lastEve, 9);
      const plan = (firstEve: number, ns: number[]) =>
        // The request is the events command itself, as a runtime's plans become.
        client.ships.write({
          kind: "events",
          ship: 0n,
          firstEve,
          events: ns.map((n) => ({ mug: n, job: job(n) })),
        });

      // tail -f sees events as they commit.
      const tail = seguro(c, ["log", "tail", "~zod", "-n", "1", "-f", "--json"]);
      await tail.waitFor(/"eve": ?9/);
      const answer = await plan(10, [10, 11, 12]);
      assert.deepEqual(answer, { appended: 3, skipped: 0 });
      await tail.waitFor(/"eve":12/);
      await tail.kill("SIGTERM");

      // A retried batch is acknowledged without a second copy.
      const retry = await plan(11, [11, 12, 13]);
      assert.deepEqual(retry, { appended: 1, skipped: 2 });
      await assert.rejects(
        plan(20, [20]),
        (e: ApiError) => /event 20 would leave a gap/.test(e.message),
      );
      await assert.rejects(
        plan(12, [99]),
        (e: ApiError) => /already has a different event 12/.test(e.message),
      );
      assert.equal((await ships(client))[0].lastEve, 13);
    } finally {
      client.close();
    }

    // Every node agrees, then a corrupted row on node 3 is caught.
    const verify = seguro(c, ["log", "verify", "~zod"]);
    assert.equal((await verify.exited).code, 0, verify.lines.join("\n"));
    assert.match(verify.lines.join("\n"), /3 nodes agree on 13 events/);

    const victim = [...c.members.values()].find((m) => m.id !== leader.id)!;
    await victim.proc!.kill("SIGTERM");
    const db = new DatabaseSync(join(victim.dir, "seguro.db"));
    // The row now holds bad bytes itself instead of pointing into its log entry.
    db.prepare("UPDATE event SET job = ?, job_at = -1, job_len = 0 WHERE ship = ? AND eve = 11")
      .run(
        new Uint8Array([0xff, 0x00, 0x07]),
        shipKey(0n),
      );
    db.close();
    c.restart(victim.id);
    await victim.proc!.waitForEvent("listening");
    const caught = seguro(c, ["log", "verify", "~zod"]);
    assert.equal((await caught.exited).code, 1);
    const out = caught.lines.join("\n");
    assert.match(
      out,
      new RegExp(`node ${victim.id}: event 11: the stored job is not a valid jam`),
    );
    assert.match(out, /^error: ~zod's log has 1 problem/m);

    // Remove: refused without --yes when not on a terminal, then done on every node.
    const refused = seguro(c, ["ship", "remove", "~zod"]);
    assert.equal((await refused.exited).code, 2);
    assert.match(refused.lines.join("\n"), /pass --yes to confirm/);
    const removed = seguro(c, ["ship", "remove", "~zod", "--yes"]);
    assert.equal((await removed.exited).code, 0, removed.lines.join("\n"));
    const commit = (await c.status(leader.id)).commitIndex;
    for (const m of c.members.values()) {
      await c.waitCommitted(m.id, commit);
      const cl = await ClusterClient.connect(m.address, c.credentials);
      try {
        assert.deepEqual(await ships(cl), [], `node ${m.id} still has ~zod`);
      } finally {
        cl.close();
      }
    }
  },
);
