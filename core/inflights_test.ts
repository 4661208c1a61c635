import assert from "node:assert/strict";
import { RaftInvariantError } from "./errors.ts";
import { Inflights } from "./inflights.ts";

Deno.test("Inflights is bounded by count and by bytes and frees in order", () => {
  const w = new Inflights(3, 100);
  w.add(5, 10);
  w.add(7, 10);
  assert.equal(w.full(), false);
  w.add(9, 10);
  assert.equal(w.full(), true, "3 messages");
  assert.throws(() => w.add(10, 1), RaftInvariantError);
  w.freeLE(7);
  assert.equal(w.count, 1);
  assert.equal(w.totalBytes, 10);
  w.add(12, 95);
  assert.equal(w.full(), true, "105 bytes");
  w.freeLE(100);
  assert.equal(w.count, 0);
  assert.equal(w.full(), false);
});

Deno.test("Inflights refuses an index that does not grow", () => {
  const w = new Inflights(4, 1000);
  w.add(5, 1);
  assert.throws(() => w.add(5, 1), /inflight index 5 does not exceed the newest 5/);
});
