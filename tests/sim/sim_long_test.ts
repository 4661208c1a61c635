/**
 * Long simulator runs: fewer seeds, many more fault steps, so that slow
 * drifts (terms, compaction, membership churn) get time to go wrong.
 */

import { runBudget } from "./budget.ts";

Deno.test("simulator: 200 long runs of 5 nodes, 5,000 fault steps each, stay safe and live", () => {
  runBudget(1_000_000, 200, 5000, 5);
});

Deno.test("simulator: 100 long runs of 7 nodes, 3,000 fault steps each, stay safe and live", () => {
  runBudget(2_000_000, 100, 3000, 7);
});
