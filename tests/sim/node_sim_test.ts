/**
 * The CI budget of the whole-node simulator, first half (the second is in
 * node_sim_more_test.ts so that the two run in parallel): every seed runs
 * the real drivers, stores, state machines, ship masters and runtime hubs of
 * a 3- or 5-node cluster with a protocol-exact runtime through faults, and
 * checks the release promise after every step.
 */

import { runNodeBudget } from "./node_sim_budget.ts";

Deno.test("whole-node simulator: seeds 1-1,000 keep every released event (or report its loss below a quorum)", () => {
  runNodeBudget(1, 1000, 300);
});
