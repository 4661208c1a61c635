/**
 * The CI seed budget: thousands of simulated clusters with faults, every
 * safety property checked after every step, liveness checked at the end.
 * A failure prints the replay command and the trace.
 */

import { runBudget } from "./budget.ts";

Deno.test("simulator: seeds 1-2,000 (3, 5 and 7 nodes, 1,000 fault steps each) stay safe and live", () => {
  runBudget(1, 2000, 1000);
});

Deno.test("simulator: seeds 2,001-4,000 (3, 5 and 7 nodes, 1,000 fault steps each) stay safe and live", () => {
  runBudget(2001, 2000, 1000);
});
