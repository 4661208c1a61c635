/**
 * `deno task demo` as a newcomer runs it: a real 3-node cluster, ~zod booted,
 * the master killed, and a report of zero losses.
 */

import assert from "node:assert/strict";
import { HANG_GUARD_MS, NodeProcess } from "./harness.ts";
import { bootedPier, vereMissing } from "../real_vere.ts";

const VERE = vereMissing("3.0");

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
    const { code, out } = await runDemo([
      "--runtime",
      "stand-in",
      "--seconds",
      "1",
      "--rate",
      "1000",
    ]);
    assert.equal(code, 0, out);
    assert.match(out, /^Runtime: the stand-in/m);
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
    assert.match(out, /^Runtime: the stand-in .*, as --no-pill was given/m);
    assert.match(out, /planning a small GENERATED boot sequence \(not a real ship\)/);
    assert.match(out, /lost: 0/);
  },
});

Deno.test({
  name:
    `seguro demo --runtime vere: the real vere run by the nodes, the master killed, the survivors' logs the same${
      VERE === undefined ? "" : ` (ignored: ${VERE})`
    }`,
  ignore: VERE !== undefined,
  sanitizeResources: false,
  sanitizeOps: false,
  async fn() {
    // The demo boots ~zod into the same cache as the tests: booted before the hang guard runs.
    await bootedPier("3.0");
    const { code, out } = await runDemo(["--runtime", "vere", "--seconds", "2"]);
    assert.equal(code, 0, out);
    assert.match(out, /^Runtime: the real vere at .*urbit-3\.0$/m);
    // Warm standby can leave nothing to replay: the snapshot at the last committed event.
    assert.match(
      out,
      /its vere started [0-9.]+ s after the kill .*replayed (events [0-9]+-[0-9]+|no event \(its warm snapshot was current\)) and answered/,
    );
    assert.match(out, /surviving nodes with the same log of ~zod: 2 of 2/);
  },
});

Deno.test({
  name: "seguro demo --runtime vere without a vere that runs: one line naming the problem, exit 1",
  sanitizeResources: false,
  sanitizeOps: false,
  async fn() {
    const { code, out } = await runDemo(["--runtime", "vere", "--vere", "/nonexistent/urbit"]);
    assert.equal(code, 1, out);
    assert.match(
      out,
      /^error: the demo cannot run the real vere: no vere at \/nonexistent\/urbit; or use --runtime stand-in$/m,
    );
    const bad = await runDemo(["--runtime", "vm"]);
    assert.equal(bad.code, 1, bad.out);
    assert.match(bad.out, /--runtime vm is not a runtime; give vere or stand-in/);
  },
});
