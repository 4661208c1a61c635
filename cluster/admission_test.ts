import assert from "node:assert/strict";
import { Admission, LOG_LINES_PER_WINDOW, LOG_WINDOW_MS, RateLimitedLog } from "./admission.ts";

Deno.test("admission keeps at most the caps in their handshake, closing the oldest (of the address, else of all)", () => {
  const a = new Admission(3, 2);
  const closed: string[] = [];
  const conn = (name: string, address: string) => ({ address, close: () => closed.push(name) });
  const a1 = conn("a1", "10.0.0.1");
  const a2 = conn("a2", "10.0.0.1");
  const a3 = conn("a3", "10.0.0.1");
  assert.deepEqual(a.admit(a1), []);
  assert.deepEqual(a.admit(a2), []);
  assert.deepEqual(a.admit(a3), [a1], "the address's oldest makes room");
  assert.deepEqual(closed, ["a1"]);
  const b1 = conn("b1", "10.0.0.2");
  assert.deepEqual(a.admit(b1), []);
  assert.equal(a.handshaking, 3);
  const c1 = conn("c1", "10.0.0.3");
  assert.deepEqual(a.admit(c1), [a2], "past the global cap, the oldest of all");
  a.done(a2); // its own handshake then ends: nothing more happens
  a.done(a3);
  assert.equal(a.handshaking, 2);
  assert.deepEqual(closed, ["a1", "a2"]);
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
