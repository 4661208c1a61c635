import assert from "node:assert/strict";
import { EventLoopLag, LAG_SAMPLE_MS } from "./event_loop_lag.ts";

Deno.test("a loop kept busy shows as lag; the sampler does not keep the process alive", async () => {
  const lags: number[] = [];
  let busy: (() => void) | undefined;
  const sampled = new Promise<void>((resolve) => busy = resolve);
  // The sampler's own timer does not keep the loop alive: this one does, for the test.
  const keepAlive = setTimeout(() => {}, 60_000);
  const lag = new EventLoopLag((ms) => {
    lags.push(ms);
    if (lags.length === 2) busy!();
  });
  try {
    await sampled;
    const t = performance.now();
    while (performance.now() - t < 10 * LAG_SAMPLE_MS) {
      // The loop is blocked: the next sample comes late by about this long.
    }
    const after = lags.length;
    await new Promise<void>((resolve) => {
      const check = setInterval(() => {
        if (lags.length > after) {
          clearInterval(check);
          resolve();
        }
      }, 1);
    });
    assert.ok(lags[after] >= 8 * LAG_SAMPLE_MS, `lags ${lags.join(", ")}`);
  } finally {
    lag.stop();
    clearTimeout(keepAlive);
  }
});
