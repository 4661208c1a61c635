import assert from "node:assert/strict";
import {
  OPTIMISM_DEFAULT,
  OPTIMISM_QUORUM,
  optimismProblem,
  ReleaseTracker,
  resolveK,
} from "./release.ts";

const entry = (index: number, k: number, term = 2) => ({
  index,
  term,
  ship: 0n,
  firstEve: index * 10,
  lastEve: index * 10 + 9,
  k,
});

Deno.test("K: quorum is majority - 1; explicit values are clamped to the replicas there are", () => {
  assert.equal(resolveK(OPTIMISM_QUORUM, 3, 2), 1);
  assert.equal(resolveK(OPTIMISM_QUORUM, 5, 4), 2);
  assert.equal(resolveK(0, 3, 2), 0);
  assert.equal(resolveK(7, 3, 2), 2);
});

Deno.test("optimism: 0 to voters - 1, quorum, or default for a ship; anything else is refused", () => {
  for (const k of [0, 1, 2, OPTIMISM_QUORUM, OPTIMISM_DEFAULT]) {
    assert.equal(optimismProblem(k, 3), undefined, `k ${k}`);
  }
  assert.match(optimismProblem(3, 3)!, /^Optimism 3 is out of range: .* from 0 to 2 .*3 voters/);
  assert.match(optimismProblem(99, 3)!, /from 0 to 2/);
  assert.match(optimismProblem(1, 1)!, /from 0 to 0 \(this cluster has 1 voter\)/);
  assert.match(optimismProblem(-3, 3)!, /out of range/);
  assert.match(optimismProblem(0.5, 3)!, /out of range/);
  assert.equal(optimismProblem(OPTIMISM_QUORUM, 3, { clusterDefault: true }), undefined);
  assert.match(
    optimismProblem(OPTIMISM_DEFAULT, 3, { clusterDefault: true })!,
    /cluster default cannot be 'default'/,
  );
});

Deno.test("an entry is released exactly when the master and K replicas hold it, in order", () => {
  const t = new ReleaseTracker();
  t.planned(entry(5, 1));
  t.planned(entry(6, 2));
  assert.deepEqual(t.update(4, [5, 5], 4), [], "the master itself does not hold 5 yet");
  assert.deepEqual(t.update(6, [4, 4], 4), [], "no replica holds 5");
  assert.deepEqual(t.stalled, { need: 1, have: 0 });
  assert.deepEqual(t.update(6, [5, 4], 5), [{ ship: 0n, eve: 59 }]);
  assert.deepEqual(t.update(6, [6, 5], 5), [], "6 needs two replicas");
  assert.deepEqual(t.stalled, { need: 2, have: 1 });
  assert.deepEqual(t.update(6, [6, 6], 6), [{ ship: 0n, eve: 69 }]);
  assert.equal(t.pendingCount, 0);
  assert.throws(() => t.planned(entry(6, 0)), /does not follow/);
});

Deno.test("K = 0 releases before commit; a failover that erases the entry is reported as a loss", () => {
  const t = new ReleaseTracker();
  t.planned(entry(7, 0, 3));
  t.planned(entry(8, 0, 3));
  assert.deepEqual(t.update(8, [6, 6], 6).map((r) => r.eve), [79, 89]);
  assert.equal(t.uncommittedCount, 2);
  // New leader: entry 7 survived (same term) and committed, entry 8 was replaced by term 4.
  const { lost } = t.audit((i) => (i === 7 ? 3 : i === 8 ? 4 : undefined), 8);
  assert.deepEqual(lost, [{ ship: 0n, firstEve: 80, lastEve: 89, index: 8, term: 3 }]);
  assert.equal(t.uncommittedCount, 0);
});

Deno.test("K = 0: a released entry truncated from the log is saved until a verdict, then forgotten", () => {
  const t = new ReleaseTracker();
  t.planned(entry(7, 0, 3));
  t.planned(entry(8, 0, 3));
  assert.deepEqual(t.update(8, [6, 6], 6).map((r) => r.eve), [79, 89]);
  // The log was cut back to 6: neither entry is reachable; both must be recorded durably.
  let audit = t.audit(() => undefined, 6);
  assert.deepEqual(audit.lost, []);
  assert.deepEqual(audit.save.map((e) => e.index), [7, 8]);
  assert.deepEqual(t.audit(() => undefined, 6).save, [], "saved once");
  // Applied past both: 7 came back as it was (committed), 8 was replaced.
  audit = t.audit((i) => (i === 7 ? 3 : 5), 8);
  assert.deepEqual(audit.lost.map((l) => l.index), [8]);
  assert.deepEqual(audit.forget.map((e) => e.index), [7, 8]);
  assert.equal(t.uncommittedCount, 0);
});

Deno.test("K = 0: applying past a released entry that another term replaced is still a loss", () => {
  const t = new ReleaseTracker();
  t.planned(entry(7, 0, 3));
  assert.deepEqual(t.update(7, [6, 6], 6).map((r) => r.eve), [79]);
  t.abandonPending();
  // Master again in term 5, applied past 7, which now holds a term-4 entry: update must
  // not forget entry 7 before the audit has compared terms.
  t.planned(entry(9, 0, 5));
  t.update(9, [9, 9], 9);
  assert.deepEqual(t.audit((i) => (i === 7 ? 4 : 5), 9).lost.map((l) => l.index), [7]);
});

Deno.test("K = quorum waits for commit and acceptance: a learner's copy never makes a release precede it", () => {
  const t = new ReleaseTracker();
  // 3 voters and a learner: K = 1; the learner (match 9) holds entry 9, no voter does yet.
  t.planned({ ...entry(9, 1), quorum: true });
  assert.deepEqual(t.update(9, [8, 8, 9], 8), [], "one copy, on a learner: not committed");
  assert.equal(t.stalled, undefined, "not stalled on replicas: it waits for commit");
  assert.deepEqual(t.update(9, [9, 8, 9], 9), [], "committed and applied, but not known accepted");
  t.accepted(9, 2);
  assert.deepEqual(t.update(9, [9, 8, 9], 9), [{ ship: 0n, eve: 99 }]);
  assert.equal(t.uncommittedCount, 0, "released and committed coincide");
});

Deno.test("a quorum entry the state machine refused is never released, nor is any later one of its ship", () => {
  const t = new ReleaseTracker();
  t.planned({ ...entry(4, 1), quorum: true });
  t.planned({ ...entry(5, 1), quorum: true });
  t.planned({ ...entry(6, 1), quorum: true, ship: 1n });
  assert.deepEqual(t.refused(4, 2, 0n), [], "nothing was released yet: nothing lost");
  t.accepted(6, 2);
  assert.deepEqual(t.update(6, [6, 6], 6), [{ ship: 1n, eve: 69 }], "only the other ship's entry");
  assert.equal(t.pendingCount, 0);
});

Deno.test("K = 0: an entry released before apply and then refused is reported as a loss", () => {
  const t = new ReleaseTracker();
  t.planned(entry(7, 0, 3));
  assert.deepEqual(t.update(7, [6, 6], 6).map((r) => r.eve), [79]);
  assert.deepEqual(t.refused(7, 3, 0n), [{
    ship: 0n,
    firstEve: 70,
    lastEve: 79,
    index: 7,
    term: 3,
  }]);
  assert.equal(t.uncommittedCount, 0);
});

Deno.test("K = 0: a released entry whose events were applied from another entry is a loss at once", () => {
  const t = new ReleaseTracker();
  t.planned(entry(7, 0, 3));
  t.update(7, [6, 6], 6);
  // The log no longer reaches index 7, but the new master's entry 6 carried event 70.
  const audit = t.audit(
    () => undefined,
    9,
    (_ship, eve) => (eve === 70 ? { index: 6, term: 4 } : undefined),
  );
  assert.deepEqual(audit.lost.map((l) => [l.index, l.firstEve]), [[7, 70]]);
});

Deno.test("K = 0: a released entry compacted away is a loss when the event came from another term's entry at its index", () => {
  const t = new ReleaseTracker();
  t.planned(entry(7, 0, 3));
  t.update(7, [6, 6], 6);
  // The log starts after index 9 (a snapshot); event 70 was applied from entry 7 of term 4.
  const replaced = t.audit(() => undefined, 9, () => ({ index: 7, term: 4 }));
  assert.deepEqual(replaced.lost.map((l) => [l.index, l.term]), [[7, 3]]);
  // Applied from this very entry (index 7, term 3): committed, not lost.
  const kept = new ReleaseTracker();
  kept.planned(entry(7, 0, 3));
  kept.update(7, [6, 6], 6);
  assert.deepEqual(kept.audit(() => undefined, 9, () => ({ index: 7, term: 3 })).lost, []);
});

Deno.test("K = 0: a released entry cut from the log is lost once an entry of a later term commits", () => {
  const t = new ReleaseTracker();
  t.planned(entry(7, 0, 3));
  t.update(7, [6, 6], 6);
  assert.deepEqual(t.audit(() => undefined, 6, () => undefined, 3).lost, [], "no later term yet");
  const audit = t.audit((i) => (i <= 6 ? 4 : undefined), 6, () => undefined, 4);
  assert.deepEqual(audit.lost.map((l) => l.index), [7]);
});
