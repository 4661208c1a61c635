/**
 * The runtime model and the release checker catch each broken promise when
 * fed a history that breaks it (each check proven by the mutation it catches).
 */

import assert from "node:assert/strict";
import { createPrng } from "../../core/mod.ts";
import { type AppliedLog, PromiseViolation, ReleaseChecker } from "./release_checker.ts";
import { type ModelEvent, RuntimeModel } from "./runtime_model.ts";

const ev = (eve: number, mug = eve): ModelEvent => ({ eve, mug, job: new Uint8Array([eve, 1]) });

function logOf(events: ModelEvent[]): AppliedLog {
  return {
    lastEve: () => events.length,
    events: (from, count) => events.slice(from - 1, from - 1 + count),
  };
}

/** A model connected to node 1, led, re-synced at head 0 and planning. */
function planningModel(checker: ReleaseChecker): RuntimeModel {
  const m = new RuntimeModel(0n, createPrng(7), checker, 4);
  m.connected(1);
  m.receive({ type: "hail", version: 1, node: 1 });
  m.receive({ type: "lead", ship: 0n });
  const plans = m.receive({ type: "head", ship: 0n, eve: 0, mug: 0 });
  assert.equal(plans.length, 4, "pipelines a full window at once");
  return m;
}

Deno.test("model: a %done lower than an earlier one on the same connection is a violation", () => {
  const m = planningModel(new ReleaseChecker(true));
  m.receive({ type: "done", ship: 0n, eve: 3 });
  assert.equal(m.released, 3);
  assert.throws(() => m.receive({ type: "done", ship: 0n, eve: 2 }), PromiseViolation);
});

Deno.test("model: a %done after %fence and before %lead is a violation, and releases nothing", () => {
  const m = planningModel(new ReleaseChecker(true));
  m.receive({ type: "fence", ship: 0n });
  assert.throws(() => m.receive({ type: "done", ship: 0n, eve: 4 }), /last notice was %fence/);
  assert.equal(m.released, 0);
});

Deno.test("model: at a quorum, [%head] below what was released is a violation; below it, a reported loss", () => {
  const strict = planningModel(new ReleaseChecker(true));
  strict.receive({ type: "done", ship: 0n, eve: 4 });
  strict.receive({ type: "nope", ship: 0n, eve: 5, why: "test" });
  assert.throws(
    () => strict.receive({ type: "head", ship: 0n, eve: 2, mug: 0 }),
    /released up to 4/,
  );
  const loose = planningModel(new ReleaseChecker(false));
  loose.receive({ type: "done", ship: 0n, eve: 4 });
  loose.receive({ type: "nope", ship: 0n, eve: 5, why: "test" });
  loose.receive({ type: "head", ship: 0n, eve: 2, mug: 0 });
  assert.equal(loose.released, 2, "it carries on from the log");
});

Deno.test("checker: a released event that a node commits differently is a violation", () => {
  const c = new ReleaseChecker(true);
  c.released(ev(1));
  c.observe(1, logOf([ev(1)]));
  c.released(ev(2));
  assert.throws(() => c.observe(2, logOf([ev(1), ev(2, 99)])), /committed event 2/);
});

Deno.test("checker: logs that diverge between nodes, or shrink, are violations", () => {
  const c = new ReleaseChecker(true);
  c.observe(1, logOf([ev(1), ev(2)]));
  assert.throws(() => c.observe(2, logOf([ev(1), ev(2, 7)])), /logs diverge at event 2/);
  const d = new ReleaseChecker(true);
  d.observe(1, logOf([ev(1), ev(2)]));
  assert.throws(() => d.observe(1, logOf([ev(1)])), /shrank/);
});

Deno.test("checker: at the end, a released event missing everywhere is a violation unless a loss report covers it (below a quorum)", () => {
  const logs = new Map([[1, logOf([ev(1)])], [2, logOf([ev(1)])]]);
  const quorum = new ReleaseChecker(true);
  quorum.released(ev(1));
  quorum.released(ev(2));
  assert.throws(() => quorum.finish(logs, []), /released event 2 .* is missing/);
  const loss = { ship: 0n, firstEve: 2, lastEve: 2, index: 5, term: 1 };
  const below = new ReleaseChecker(false);
  below.released(ev(2));
  assert.throws(() => below.finish(logs, []), /no loss report covers it/);
  below.finish(logs, [loss]);
  const still = new ReleaseChecker(true);
  still.released(ev(2));
  assert.throws(
    () => still.finish(logs, [loss]),
    /missing/,
    "at a quorum no report excuses a loss",
  );
});

Deno.test("checker: after a crash that lost unflushed writes, a shorter applied log is read again and checked", () => {
  const c = new ReleaseChecker(true);
  c.observe(1, logOf([ev(1), ev(2), ev(3)]));
  c.lostUnflushed(1);
  c.observe(1, logOf([ev(1)])); // back to what was durable
  assert.throws(() => c.observe(1, logOf([ev(1), ev(2, 9)])), /logs diverge at event 2/);
  const d = new ReleaseChecker(true);
  d.observe(1, logOf([ev(1), ev(2)]));
  d.lostUnflushed(1);
  d.observe(1, logOf([ev(1), ev(2)]));
  assert.throws(
    () => d.observe(1, logOf([ev(1)])),
    /shrank/,
    "only the first look after the crash",
  );
});
