/**
 * The steps of a node's stop: each one bounded, and one that overruns or
 * fails named in the log, so a stop never hangs and a slow one says where.
 */

import assert from "node:assert/strict";
import { stopStep } from "./node.ts";

Deno.test("stop step: one that finishes in time is quiet; one that fails is named, and the stop goes on", async () => {
  const lines: string[] = [];
  const log = (line: string) => void lines.push(line);
  assert.equal(await stopStep("the quick part", () => Promise.resolve(), 1000, log), true);
  assert.equal(await stopStep("the part with nothing to do", () => undefined, 1000, log), true);
  assert.deepEqual(lines, []);
  assert.equal(
    await stopStep("the broken part", () => Promise.reject(new Error("It broke")), 1000, log),
    false,
  );
  assert.equal(
    await stopStep(
      "the part that throws",
      () => {
        throw new Error("It threw");
      },
      1000,
      log,
    ),
    false,
  );
  assert.deepEqual(lines, [
    "stop: the broken part failed (It broke); going on without it",
    "stop: the part that throws failed (It threw); going on without it",
  ]);
});

Deno.test("stop step: one that never finishes is left behind at its deadline, named in the log", async () => {
  const lines: string[] = [];
  const started = performance.now();
  const never = new Promise<void>(() => {});
  assert.equal(await stopStep("the stuck part", () => never, 50, (l) => lines.push(l)), false);
  assert.ok(performance.now() - started >= 45);
  assert.deepEqual(lines, [
    "stop: the stuck part did not finish within 50 ms; going on without it",
  ]);
});
