import assert from "node:assert/strict";
import { Admission, LOG_LINES_PER_WINDOW, LOG_WINDOW_MS, RateLimitedLog } from "./admission.ts";

Deno.test("admission caps handshakes in all and per address, and frees a place when one ends", () => {
  const a = new Admission(3, 2);
  assert.equal(a.admit("10.0.0.1"), undefined);
  assert.equal(a.admit("10.0.0.1"), undefined);
  assert.match(
    a.admit("10.0.0.1")!,
    /^2 connections from 10\.0\.0\.1 are already in their handshake$/,
  );
  assert.equal(a.admit("10.0.0.2"), undefined);
  assert.match(a.admit("10.0.0.3")!, /^3 connections are already in their handshake$/);
  a.done("10.0.0.1");
  assert.equal(a.handshaking, 2);
  assert.equal(a.admit("10.0.0.3"), undefined);
  assert.throws(() => a.done("10.0.0.9"), /invariant: admission released for 10\.0\.0\.9 with 0/);
});

Deno.test("a rate-limited log writes a few lines per window, then says how many it dropped", () => {
  const lines: string[] = [];
  let now = 0;
  const log = new RateLimitedLog((line) => lines.push(line), () => now);
  for (let i = 0; i < 1000; i++) log.line(`refused ${i}`);
  assert.equal(lines.length, LOG_LINES_PER_WINDOW);
  now += LOG_WINDOW_MS;
  log.line("refused later");
  assert.deepEqual(lines.slice(LOG_LINES_PER_WINDOW), [
    `(${1000 - LOG_LINES_PER_WINDOW} more such lines in ${LOG_WINDOW_MS / 1000} s were not logged)`,
    "refused later",
  ]);
});
