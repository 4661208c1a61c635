/**
 * What an operator gets wrong or runs into, on real clusters of `seguro`
 * processes: another cluster's token, an optimism out of range, a removed
 * node, and numbers printed the same way everywhere.
 */

import assert from "node:assert/strict";
import { join } from "node:path";
import { ClusterClient } from "../../cluster/api.ts";
import type { ShipJson } from "../../cluster/admin_protocol.ts";
import { decodeToken } from "../../cluster/token.ts";
import { cord, jam, list, tuple } from "../../vere/noun.ts";
import { daFromUnix } from "../../vere/event.ts";
import { count } from "../../cmd/lib/output.ts";
import { clusterTest, freePort, NodeProcess, type TestCluster } from "./harness.ts";

/** `seguro ARGS` against the cluster (through any member), to the end. */
async function seguro(
  c: TestCluster,
  args: string[],
): Promise<{ code: number; out: string; stdout: string }> {
  const p = new NodeProcess([...args, "--cluster", c.anyAddress()], { SEGURO_TOKEN: c.token });
  const { code } = await p.exited;
  return { code, out: p.lines.join("\n"), stdout: p.stdoutLines.join("\n") };
}

clusterTest(
  "join with another cluster's token names both clusters the right way round; log show and tail print sizes alike",
  1,
  async (c) => {
    const tokenRun = new NodeProcess(["token", "new"]);
    assert.equal((await tokenRun.exited).code, 0);
    const other = tokenRun.lines.find((l) => l.startsWith("sgt2."))!;
    const otherId = decodeToken(other).clusterId;
    const address = c.members.get(1)!.address;
    const dir = join(c.root, "stranger");
    const join1 = new NodeProcess(
      ["join", address, "--data-dir", dir, "--listen", `127.0.0.1:${freePort()}`],
      { SEGURO_TOKEN: other },
    );
    assert.equal((await join1.exited).code, 1, join1.lines.join("\n"));
    assert.match(
      join1.lines.join("\n"),
      new RegExp(
        `^error: ${address} is not a node of the token's cluster ${
          otherId.slice(0, 8)
        }\\.\\.\\. \\(its certificate is another CA's\\); check the address, or use that cluster's token$`,
        "m",
      ),
    );
    assert.equal(await Deno.stat(dir).then(() => true, () => false), false);

    // One event of a few KiB: `log show` and `log tail` print its size the same way.
    assert.equal((await seguro(c, ["ship", "add", "~zod", "--fake"])).code, 0);
    const job = jam(tuple(
      daFromUnix(1_800_000_000n, 0),
      list([cord("d")]),
      cord("belt"),
      cord("x".repeat(5000)),
    ));
    const client = await ClusterClient.connect(address, c.credentials);
    try {
      await client.ships.write({
        kind: "events",
        ship: 0n,
        firstEve: 1,
        events: [{ mug: 0, job }],
      });
    } finally {
      client.close();
    }
    const size = count(job.length);
    assert.ok(size.includes(","), size);
    const show = await seguro(c, ["log", "show", "~zod", "1"]);
    assert.equal(show.code, 0, show.out);
    assert.match(show.out, new RegExp(`^bytes +${size}$`, "m"));
    const tail = await seguro(c, ["log", "tail", "~zod", "-n", "1"]);
    assert.equal(tail.code, 0, tail.out);
    assert.match(tail.out, new RegExp(`%belt +${size} `));
  },
);

clusterTest(
  "3 nodes: optimism outside 0..voters-1 is refused; a removed node says so and stops, and stays stopped",
  3,
  async (c) => {
    assert.equal((await seguro(c, ["ship", "add", "~zod", "--fake"])).code, 0);
    const range =
      "give a number of replicas besides the master from 0 to 2 \\(this cluster has 3 voters\\)";
    const set99 = await seguro(c, ["ship", "set", "~zod", "--optimism", "99"]);
    assert.equal(set99.code, 1, set99.out);
    assert.match(
      set99.out,
      new RegExp(`^error: Optimism 99 is out of range: ${range}, 'quorum' or 'default'$`, "m"),
    );
    const default3 = await seguro(c, ["ship", "default", "--optimism", "3"]);
    assert.equal(default3.code, 1, default3.out);
    assert.match(
      default3.out,
      new RegExp(`^error: Optimism 3 is out of range: ${range}, or 'quorum'$`, "m"),
    );
    const defaultDefault = await seguro(c, ["ship", "default", "--optimism", "default"]);
    assert.equal(defaultDefault.code, 1, defaultDefault.out);
    assert.match(defaultDefault.out, /^error: The cluster default cannot be 'default'/m);
    const set2 = await seguro(c, ["ship", "set", "~zod", "--optimism", "2"]);
    assert.equal(set2.code, 0, set2.out);
    const listed = await seguro(c, ["ship", "list", "--json"]);
    const ships = JSON.parse(listed.stdout) as ShipJson[];
    assert.equal(ships[0].optimism, 2);

    // Remove node 3 while it runs: it learns it, says so, and exits 0.
    const three = c.members.get(3)!;
    const one = c.members.get(1)!;
    const remove = new NodeProcess(
      ["member", "remove", "3", "--cluster", one.address],
      { SEGURO_TOKEN: c.token },
    );
    assert.equal((await remove.exited).code, 0, remove.lines.join("\n"));
    await three.proc!.waitForEvent("removed", { node: 3 });
    const exit = await three.proc!.exited;
    assert.equal(exit.code, 0, three.proc!.lines.slice(-10).join("\n"));
    assert.match(three.proc!.lines.join("\n"), /stopped: removed from the cluster/);
    three.proc = undefined;

    // Running its data dir again is refused at once, with what to do instead.
    const again = new NodeProcess(["run", "--data-dir", three.dir]);
    assert.equal((await again.exited).code, 1);
    assert.match(
      again.lines.join("\n"),
      /^error: node 3 was removed from cluster [0-9a-f]{8}\.\.\. \(.*\), so .* cannot run again; to bring this machine back, 'seguro join' from an empty data dir/m,
    );
    assert.deepEqual((await c.status(1)).conf.voters, [1, 2]);
  },
);
