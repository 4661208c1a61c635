/**
 * Shared body of the CI whole-node simulator tests.
 * @module
 */

import assert from "node:assert/strict";
import { formatNodeSummary, runNodeSeeds } from "./node_main.ts";

/** Runs `seeds` whole-node seeds from `seed`; fails with the replay report on any violation. */
export function runNodeBudget(seed: number, seeds: number, steps: number): void {
  const started = performance.now();
  const { stats, failure } = runNodeSeeds({
    seed,
    seeds,
    steps,
    nodes: 0,
    optimism: undefined,
    mutation: undefined,
    traceAll: false,
  });
  console.log(formatNodeSummary(stats, performance.now() - started));
  assert.equal(failure, undefined, failure);
  assert.equal(stats.violations, 0);
  // The budget must exercise what it claims to: failovers with a runtime pipelining through them.
  assert.ok(stats.masters >= 2 * seeds, `only ${stats.masters} masters in ${seeds} seeds`);
  assert.ok(stats.released >= 100 * seeds, `only ${stats.released} events released`);
  assert.ok(stats.crashes > 0 && stats.partitions > 0 && stats.resyncs > seeds);
  // ... and followers behind a compacted log catching up by snapshot, under the same faults.
  assert.ok(stats.snapshots >= seeds / 10, `only ${stats.snapshots} snapshots installed`);
  assert.ok(stats.joins >= seeds / 4, `only ${stats.joins} nodes joined mid-run`);
}
