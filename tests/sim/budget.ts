/**
 * Shared body of the CI simulator tests.
 *
 * @module
 */

import assert from "node:assert/strict";
import { formatSummary, runSeeds } from "./main.ts";

/** Runs `seeds` seeds from `seed` and fails with the replay report on any violation. */
export function runBudget(seed: number, seeds: number, steps: number, nodes = 0): void {
  const started = performance.now();
  const { stats, failure } = runSeeds({
    seed,
    seeds,
    steps,
    nodes,
    traceAll: false,
    mutation: undefined,
  });
  console.log(formatSummary(stats, performance.now() - started));
  assert.equal(failure, undefined, failure);
  assert.equal(stats.violations, 0);
  assert.ok(stats.elections >= seeds, "every seed elected at least one leader");
  assert.ok(stats.acked > 0 && stats.faults > 0);
}
