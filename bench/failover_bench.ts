/**
 * How long a 3-node cluster on loopback is without a leader after kill -9 of
 * its leader: from the kill to the first "became leader" line of a survivor.
 * Then the old leader is restarted and the next round kills the new leader.
 *
 *     deno task bench:failover [--rounds 20]
 *
 * Default timing: 50 ms ticks, election timeout 10-20 ticks (0.5-1 s), so the
 * expected gap is one randomized election timeout plus a PreVote and a vote
 * round trip.
 * @module
 */

import { parseArgs } from "node:util";
import { TestCluster } from "../tests/e2e/harness.ts";

const { values } = parseArgs({
  args: Deno.args,
  options: { rounds: { type: "string", default: "20" } },
});
const rounds = Number(values.rounds);

const cluster = await TestCluster.init();
const gaps: number[] = [];
try {
  await cluster.join();
  await cluster.join();
  for (let r = 0; r < rounds; r++) {
    const leader = cluster.leader()!;
    const marks = new Map([...cluster.members.values()].map((m) => [m.id, m.proc?.mark() ?? 0]));
    const t0 = performance.now();
    await leader.proc!.kill("SIGKILL");
    leader.proc = undefined;
    const rest = [...cluster.members.values()].filter((m) => m.proc);
    await Promise.any(rest.map((m) => m.proc!.waitFor(/became leader/, marks.get(m.id))));
    gaps.push(performance.now() - t0);
    console.error(`round ${r + 1}: new leader after ${gaps[gaps.length - 1].toFixed(0)} ms`);
    const back = cluster.restart(leader.id);
    await back.waitFor(/now follower/);
  }
} finally {
  await cluster.destroy();
}
gaps.sort((a, b) => a - b);
const q = (p: number) => gaps[Math.min(gaps.length - 1, Math.floor(p * gaps.length))].toFixed(0);
console.log(
  `failover after kill -9 of the leader, ${gaps.length} rounds: min ${q(0)} ms, p50 ${
    q(0.5)
  } ms, p90 ${q(0.9)} ms, max ${q(1)} ms`,
);
