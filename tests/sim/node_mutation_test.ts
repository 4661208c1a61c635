/**
 * The whole-node checker is proven by mutations it must catch within the CI
 * seed budget: the P7 bug itself (a new master announcing %lead and
 * answering %head from a stale applied state, releasing what the state
 * machine then refused), releases that ignore the ship's optimism, and
 * acknowledgements sent before the write they acknowledge is flushed (a
 * power cut then loses what a quorum was counted on).
 */

import assert from "node:assert/strict";
import type { NodeMutation } from "../../cluster/driver.ts";
import { runNodeSeeds } from "./node_main.ts";
import { runNodeSimulation } from "./node_sim.ts";

function firstCatch(mutation: NodeMutation, seeds: number): number | undefined {
  for (let seed = 1; seed <= seeds; seed += 25) {
    const { firstFailingSeed } = runNodeSeeds({
      seed,
      seeds: Math.min(25, seeds - seed + 1),
      steps: 300,
      nodes: 3,
      optimism: "quorum",
      mutation,
      traceAll: false,
    });
    if (firstFailingSeed !== undefined) return firstFailingSeed;
  }
  return undefined;
}

Deno.test("mutation staleLead (the P7 bug: %lead before the applied state is the log's tail) is caught", () => {
  const seed = firstCatch("staleLead", 300);
  assert.ok(seed !== undefined, "no violation in 300 seeds: the checker misses the P7 bug");
  console.log(`staleLead caught at seed ${seed}`);
});

Deno.test("mutation releaseEarly (released before a quorum holds it) is caught", () => {
  const seed = firstCatch("releaseEarly", 300);
  assert.ok(seed !== undefined, "no violation in 300 seeds: the checker misses early releases");
  console.log(`releaseEarly caught at seed ${seed}`);
});

Deno.test("mutation ackBeforeDurable (acknowledged and counted before the flush) is caught", () => {
  const seed = firstCatch("ackBeforeDurable", 300);
  assert.ok(seed !== undefined, "no violation in 300 seeds: the checker misses unflushed acks");
  console.log(`ackBeforeDurable caught at seed ${seed}`);
});

Deno.test("a whole-node seed replays exactly: the same trace twice", () => {
  const a = runNodeSimulation({ seed: 77, steps: 200, trace: true });
  const b = runNodeSimulation({ seed: 77, steps: 200, trace: true });
  assert.ok(a.trace.length > 100);
  assert.deepEqual(b.trace, a.trace);
  assert.deepEqual(b.stats, a.stats);
});
