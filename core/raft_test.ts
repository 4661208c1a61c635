import assert from "node:assert/strict";
import { RaftInvariantError, RaftUsageError } from "./errors.ts";
import type { Message } from "./messages.ts";
import { createPrng } from "./prng.ts";
import { RaftNode } from "./raft.ts";
import type { Ready } from "./ready.ts";

const enc = new TextEncoder();

function node(id: number, voters: number[], seed = id): RaftNode {
  const rng = createPrng(seed);
  return new RaftNode(
    { id, groupId: 7, randomInt: (n) => rng.int(n) },
    { snapshot: { index: 0, term: 0, conf: { voters, learners: [] } } },
  );
}

/** Takes a Ready and advances at once (instant disk); returns it. */
function cycle(n: RaftNode): Ready {
  const r = n.ready();
  n.advance();
  return r;
}

function allMessages(r: Ready): Message[] {
  return [...r.messages, ...r.messagesAfterPersist];
}

/** Elects node 1 of [1, 2, 3] with instant disks and delivery. */
function electedTrio(): RaftNode[] {
  const ns = [node(1, [1, 2, 3]), node(2, [1, 2, 3]), node(3, [1, 2, 3])];
  ns[0].campaign();
  for (let round = 0; round < 20; round++) {
    const msgs: Message[] = [];
    for (const n of ns) while (n.hasReady()) msgs.push(...allMessages(cycle(n)));
    if (msgs.length === 0) break;
    for (const m of msgs) ns[m.to - 1].step(m);
  }
  assert.equal(ns[0].role, "leader");
  return ns;
}

Deno.test("a single voter elects itself and commits once its own write is durable", () => {
  const n = node(1, [1]);
  n.campaign();
  assert.equal(n.role, "leader");
  const res = n.propose(enc.encode("a"));
  assert.ok(res.accepted);
  const r = n.ready();
  assert.deepEqual(r.entries.map((e) => e.type), ["noop", "normal"]);
  assert.equal(n.commitIndex, 0, "nothing is committed before the write is durable");
  n.advance();
  assert.equal(n.commitIndex, 2);
  const r2 = cycle(n);
  assert.deepEqual(r2.committedEntries.map((e) => e.index), [1, 2]);
  assert.equal(n.appliedIndex, 2);
});

Deno.test("vote requests and vote grants leave only after the term and vote are durable", () => {
  const a = node(1, [1, 2, 3]);
  const b = node(2, [1, 2, 3]);
  a.campaign(); // PreVote first: no term change yet
  const pre = cycle(a);
  assert.equal(pre.messages.length, 0);
  assert.equal(pre.messagesAfterPersist.length, 2);
  b.step(pre.messagesAfterPersist[0]);
  a.step(cycle(b).messagesAfterPersist[0]); // PreVote granted: a campaigns for real
  const r = a.ready();
  assert.deepEqual(r.hardState, { term: 1, vote: 1, commit: 0 });
  assert.deepEqual(r.messages, []);
  assert.deepEqual(r.messagesAfterPersist.map((m) => m.type), ["vote", "vote"]);
  a.advance();
  b.step(r.messagesAfterPersist.find((m) => m.to === 2)!);
  const rb = b.ready();
  assert.deepEqual(rb.hardState, { term: 1, vote: 1, commit: 0 });
  assert.deepEqual(rb.messages, []);
  assert.deepEqual(rb.messagesAfterPersist.map((m) => m.type), ["voteResp"]);
});

Deno.test("a leader's appends leave at once; a follower's acknowledgements wait for its write", () => {
  const [leader, f2, f3] = electedTrio();
  leader.propose(enc.encode("x"));
  const r = leader.ready();
  assert.equal(r.entries.length, 1);
  const apps = r.messages.filter((m) => m.type === "app");
  assert.equal(apps.length, 2, "sent in parallel with the leader's own fsync");
  for (const m of apps) [f2, f3][m.to - 2].step(m);
  const acks: Message[] = [];
  for (const f of [f2, f3]) {
    const fr = f.ready();
    assert.equal(fr.entries.length, 1);
    assert.ok(fr.messages.every((m) => m.type !== "appResp"));
    acks.push(...fr.messagesAfterPersist.filter((m) => m.type === "appResp"));
    f.advance();
  }
  for (const m of acks) leader.step(m);
  // Both followers hold it durably, but the leader's own write is still in flight:
  // the leader never commits past its own durable index.
  assert.equal(leader.commitIndex, leader.persistedIndex);
  assert.ok(leader.commitIndex < leader.lastIndex);
  leader.advance();
  assert.equal(leader.commitIndex, leader.lastIndex);
});

Deno.test("a leader that hears AppendEntries from another leader of its term throws", () => {
  const [leader] = electedTrio();
  const forged: Message = {
    type: "app",
    groupId: 7,
    from: 2,
    to: 1,
    term: leader.term,
    index: 0,
    logTerm: 0,
    commit: 0,
    entries: [],
  };
  assert.throws(() => leader.step(forged), RaftInvariantError);
  assert.throws(() => leader.step(forged), /leader 1 of term 1 received app from 2/);
});

Deno.test("a vote already cast in a term is never given to another candidate", () => {
  const [, f2] = electedTrio();
  const term = f2.term;
  f2.step({
    type: "vote",
    groupId: 7,
    from: 3,
    to: 2,
    term,
    index: 100,
    logTerm: term,
    transfer: true,
  });
  const r = cycle(f2);
  const resp = r.messagesAfterPersist.find((m) => m.type === "voteResp");
  assert.ok(resp !== undefined && resp.type === "voteResp" && resp.reject);
  assert.equal(f2.vote, 1);
});

Deno.test("misuse is refused with a sentence", () => {
  const n = node(1, [1]);
  n.campaign();
  n.ready();
  assert.throws(() => n.ready(), RaftUsageError);
  n.advance();
  assert.throws(() => n.advance(), /advance\(\) was called without a Ready/);
  assert.throws(
    () => n.step({ type: "timeoutNow", groupId: 8, from: 2, to: 1, term: 9 }),
    /Message of group 8 was stepped into node 1 of group 7/,
  );
});

Deno.test("a restarted node resumes from its durable state", () => {
  const n = node(1, [1]);
  n.campaign();
  n.propose(enc.encode("a"));
  const r = n.ready();
  n.advance();
  cycle(n);
  const restarted = new RaftNode(
    { id: 1, groupId: 7, randomInt: () => 0 },
    {
      hardState: { term: n.term, vote: n.vote, commit: n.commitIndex },
      snapshot: { index: 0, term: 0, conf: { voters: [1], learners: [] } },
      entries: r.entries,
    },
  );
  assert.equal(restarted.role, "follower");
  assert.equal(restarted.commitIndex, 2);
  assert.deepEqual(cycle(restarted).committedEntries.map((e) => e.index), [1, 2]);
});

Deno.test("a follower proposal is refused so cluster/ can redirect it", () => {
  const [, f2] = electedTrio();
  const res = f2.propose(enc.encode("x"));
  assert.deepEqual(res, { accepted: false, reason: "This node is not the leader" });
});

Deno.test("acknowledgements of an old term are dropped when a newer leader truncates the log", () => {
  // Regression found by the simulator's durability check: node 3 acked entries to the
  // term-1 leader, then in the same batch a term-2 leader overwrote them. The stale
  // ack must not leave, or the old leader would count entries node 3 no longer holds.
  const n = node(3, [1, 2, 3]);
  const entry = (index: number, term: number) => ({
    index,
    term,
    type: "normal" as const,
    data: enc.encode(`${index}/${term}`),
  });
  n.step({
    type: "app",
    groupId: 7,
    from: 1,
    to: 3,
    term: 1,
    index: 0,
    logTerm: 0,
    commit: 0,
    entries: [entry(1, 1), entry(2, 1)],
  });
  n.step({
    type: "app",
    groupId: 7,
    from: 2,
    to: 3,
    term: 2,
    index: 0,
    logTerm: 0,
    commit: 0,
    entries: [entry(1, 2)],
  });
  const r = n.ready();
  assert.deepEqual(r.entries.map((e) => [e.index, e.term]), [[1, 2]]);
  const acks = r.messagesAfterPersist.filter((m) => m.type === "appResp");
  assert.deepEqual(acks.map((m) => [m.to, m.term, m.type === "appResp" && m.index]), [[2, 2, 1]]);
});

Deno.test("a duplicate older snapshot never rolls back a newer one still being written", () => {
  // Regression found by the 100,000-seed run: snapshot 88 was being written, snapshot 97
  // arrived, then a duplicate of 88 re-installed 88 under an acknowledgement of 97.
  const n = node(3, [1, 2, 3]);
  const snap = (index: number): Message => ({
    type: "snap",
    groupId: 7,
    from: 1,
    to: 3,
    term: 1,
    snapshot: { index, term: 1, conf: { voters: [1, 2, 3], learners: [] } },
  });
  n.step(snap(88));
  assert.equal(n.ready().snapshot?.index, 88); // being written
  n.step(snap(97));
  n.step(snap(88)); // duplicate, delayed
  n.advance();
  const r = n.ready();
  assert.equal(r.snapshot?.index, 97);
  assert.equal(n.snapshot.index, 97);
  n.advance();
  assert.equal(n.commitIndex, 97);
});

Deno.test("an append that starts inside a snapshot being written is answered with the snapshot index", () => {
  const n = node(3, [1, 2, 3]);
  n.step({
    type: "snap",
    groupId: 7,
    from: 1,
    to: 3,
    term: 1,
    snapshot: { index: 50, term: 1, conf: { voters: [1, 2, 3], learners: [] } },
  });
  n.ready(); // the snapshot is being written
  n.step({
    type: "app",
    groupId: 7,
    from: 1,
    to: 3,
    term: 1,
    index: 40,
    logTerm: 1,
    commit: 50,
    entries: [],
  });
  n.advance();
  const acks = n.ready().messagesAfterPersist.filter((m) => m.type === "appResp");
  assert.deepEqual(acks.map((m) => m.type === "appResp" && [m.index, m.reject]), [[50, false]]);
});

Deno.test("a leader replicates while its own write is in flight and counts itself only once durable", () => {
  const [a, b] = electedTrio();
  const before = a.persistedIndex;
  a.propose(enc.encode("x"));
  const r1 = a.ready();
  const last = r1.entries[r1.entries.length - 1].index;
  const mark1 = a.advanceBeforeDurable();
  // A second proposal goes out while the first write is still in flight.
  a.propose(enc.encode("y"));
  assert.ok(a.hasReady(), "the next Ready is available before the first write is durable");
  const r2 = a.ready();
  const mark2 = a.advanceBeforeDurable();
  assert.ok(r2.messages.some((m) => m.type === "app"), "appends leave before the leader's fsync");
  // One follower acknowledges both: a majority by count, but the leader's disk is not in it yet.
  for (const m of [...r1.messages, ...r2.messages].filter((m) => m.to === 2)) b.step(m);
  const rb = cycle(b);
  for (const m of rb.messagesAfterPersist) a.step(m);
  const tail = r2.entries[r2.entries.length - 1].index;
  assert.equal(a.persistedIndex, before, "nothing new is durable yet");
  assert.ok(a.commitIndex < last, `commit ${a.commitIndex} passed the leader's durable log`);
  a.durable(mark1);
  assert.equal(a.commitIndex, last, "the first write counts once durable");
  a.durable(mark2);
  assert.equal(a.commitIndex, tail);
});

Deno.test("durable marks out of order are a broken invariant", () => {
  const [a] = electedTrio();
  a.propose(enc.encode("x"));
  a.ready();
  const m1 = a.advanceBeforeDurable();
  a.propose(enc.encode("y"));
  a.ready();
  const m2 = a.advanceBeforeDurable();
  assert.throws(() => a.durable(m2), RaftInvariantError);
  a.durable(m1);
  a.durable(m2);
  assert.throws(() => a.durable(m2), RaftInvariantError);
});

Deno.test("a durable mark for entries a newer leader overwrote makes nothing durable", () => {
  const f = node(2, [1, 2, 3]);
  const app = (term: number, prevIndex: number, prevTerm: number, n: number): Message => ({
    type: "app",
    groupId: 7,
    from: term === 1 ? 1 : 3,
    to: 2,
    term,
    index: prevIndex,
    logTerm: prevTerm,
    entries: Array.from({ length: n }, (_, i) => ({
      index: prevIndex + 1 + i,
      term,
      type: "normal" as const,
      data: enc.encode(`t${term}`),
    })),
    commit: 0,
  });
  f.step(app(1, 0, 0, 3));
  f.ready();
  const old = f.advanceBeforeDurable(); // entries 1-3 of term 1, not durable yet
  f.step(app(2, 1, 1, 1)); // a leader of term 2 overwrites 2-3 with its entry 2
  const r = f.ready();
  assert.deepEqual(r.entries.map((e) => [e.index, e.term]), [[2, 2]]);
  const fresh = f.advanceBeforeDurable();
  f.durable(old);
  assert.ok(f.persistedIndex <= 1, `persisted ${f.persistedIndex} counts an overwritten entry`);
  f.durable(fresh);
  assert.equal(f.persistedIndex, 2);
});
