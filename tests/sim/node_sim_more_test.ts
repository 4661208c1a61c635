/** The CI budget of the whole-node simulator, second half (see node_sim_test.ts). */

import { runNodeBudget } from "./node_sim_budget.ts";

Deno.test("whole-node simulator: seeds 1,001-2,000 keep every released event (or report its loss below a quorum)", () => {
  runNodeBudget(1001, 1000, 300);
});
