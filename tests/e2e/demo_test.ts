/**
 * `deno task demo` as a newcomer runs it: a real 3-node cluster, ~zod booted,
 * the master killed, and a report of zero losses.
 */

import assert from "node:assert/strict";
import { HANG_GUARD_MS, NodeProcess } from "./harness.ts";

/** Runs the demo; a hang guard kills it rather than let it hang the suite. */
async function runDemo(args: string[]): Promise<{ code: number; out: string }> {
  const demo = new NodeProcess(["demo", ...args]);
  const guard = setTimeout(() => demo.kill("SIGKILL"), HANG_GUARD_MS);
  const status = await demo.exited;
  clearTimeout(guard);
  return { code: status.code, out: demo.lines.join("\n") };
}

Deno.test({
  name: "seguro demo: failover with zero released events lost",
  sanitizeResources: false,
  sanitizeOps: false,
  async fn() {
    const { code, out } = await runDemo(["--seconds", "1", "--rate", "1000"]);
    assert.equal(code, 0, out);
    assert.match(out, /node \d is master; the runtime reconnected/);
    assert.match(out, /released events checked on the new master: [\d,]+; lost: 0/);
    assert.match(out, /no released event was lost/);
  },
});

Deno.test({
  name: "seguro demo --no-pill: a labelled generated boot sequence, then the same failover",
  sanitizeResources: false,
  sanitizeOps: false,
  async fn() {
    const { code, out } = await runDemo(["--no-pill", "--seconds", "1", "--rate", "500"]);
    assert.equal(code, 0, out);
    assert.match(out, /planning a small GENERATED boot sequence \(not a real ship\)/);
    assert.match(out, /lost: 0/);
  },
});
