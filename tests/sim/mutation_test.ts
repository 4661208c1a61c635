/**
 * Mutation checks: with one Raft rule deliberately broken (a test-only
 * switch in the core), the simulator must find a violation within the CI
 * seed budget. This is what proves the checker can fail.
 */

import assert from "node:assert/strict";
import { runSeeds } from "./main.ts";
import { type Profile, STORM_PROFILE } from "./simulator.ts";
import type { TestingMutation } from "../../core/mod.ts";

function firstCatch(
  mutation: TestingMutation,
  nodes: number,
  profile?: Partial<Profile>,
): string | undefined {
  // Stop at the first failing seed; the budget is the CI budget of 2,000 seeds.
  for (let seed = 1; seed <= 2000; seed += 50) {
    const { failure } = runSeeds({
      seed,
      seeds: 50,
      steps: 1000,
      nodes,
      traceAll: false,
      mutation,
      profile,
    });
    if (failure !== undefined) return failure;
  }
  return undefined;
}

Deno.test("mutation: committing old-term entries by counting is caught within the seed budget", () => {
  // Figure 8 needs logs of three terms to diverge: run 3-node clusters in election storms.
  const failure = firstCatch("commitOldTermByCounting", 3, STORM_PROFILE);
  assert.ok(failure !== undefined, "the simulator missed the Figure 8 bug");
  assert.match(failure, /FAILED seed=\d+/);
  assert.match(
    failure,
    /replay: deno task sim --seed \d+ --nodes \d --steps \d+ --mutation commitOldTermByCounting/,
  );
  assert.match(failure, /Leader Completeness|State Machine Safety|Log Matching|RaftInvariantError/);
});

Deno.test("mutation: granting votes without the log check is caught within the seed budget", () => {
  const failure = firstCatch("voteWithoutLogCheck", 0);
  assert.ok(failure !== undefined, "the simulator missed votes for stale logs");
});
