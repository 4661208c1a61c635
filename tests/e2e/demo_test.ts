/**
 * `deno task demo` as a newcomer runs it: a real 3-node cluster, ~zod booted,
 * the master killed, and a report of zero losses.
 */

import assert from "node:assert/strict";
import { NodeProcess } from "./harness.ts";

Deno.test({
  name: "seguro demo: failover with zero released events lost",
  sanitizeResources: false,
  sanitizeOps: false,
  async fn() {
    const demo = new NodeProcess(["demo", "--seconds", "1", "--rate", "1000"]);
    const status = await demo.exited;
    const out = demo.lines.join("\n");
    assert.equal(status.code, 0, out);
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
    const demo = new NodeProcess(["demo", "--no-pill", "--seconds", "1", "--rate", "500"]);
    const status = await demo.exited;
    const out = demo.lines.join("\n");
    assert.equal(status.code, 0, out);
    assert.match(out, /planning a small GENERATED boot sequence \(not a real ship\)/);
    assert.match(out, /lost: 0/);
  },
});
