/**
 * The classic Raft scenarios, driven message by message so a reader can
 * follow each one.
 */

import assert from "node:assert/strict";
import type { RaftInitialState } from "../../core/mod.ts";
import { entriesOfTerms, TestCluster, text } from "./harness.ts";

function logTerms(c: TestCluster, id: number): number[] {
  const r = c.raft(id);
  const out: number[] = [];
  for (let i = r.firstIndex; i <= r.lastIndex; i++) out.push(r.termAt(i)!);
  return out;
}

Deno.test("Figure 7: a new leader brings every follower's log into agreement with its own", () => {
  // The Raft paper's Figure 7: the leader (node 1) and followers a..f (nodes 2..7).
  const logs: Record<number, number[]> = {
    1: [1, 1, 1, 4, 4, 5, 5, 6, 6, 6], // leader
    2: [1, 1, 1, 4, 4, 5, 5, 6, 6], // (a) missing an entry
    3: [1, 1, 1, 4], // (b) missing many
    4: [1, 1, 1, 4, 4, 5, 5, 6, 6, 6, 6], // (c) an extra uncommitted entry
    5: [1, 1, 1, 4, 4, 5, 5, 6, 6, 6, 7, 7], // (d) two extra entries of term 7
    6: [1, 1, 1, 4, 4, 4, 4], // (e) extra term-4 entries
    7: [1, 1, 1, 2, 2, 2, 3, 3, 3, 3, 3], // (f) entries of terms 2 and 3 no one else has
  };
  const ids = [1, 2, 3, 4, 5, 6, 7];
  const initial = new Map<number, RaftInitialState>();
  for (const id of ids) {
    initial.set(id, {
      hardState: { term: 7, vote: 0, commit: 3 },
      snapshot: { index: 0, term: 0, conf: { voters: ids, learners: [] } },
      entries: entriesOfTerms(logs[id]),
    });
  }
  const c = new TestCluster(ids, { initial });

  // Node 1 wins term 8: a, b, e, f have logs no more up to date than its own; c and d refuse.
  const leader = c.elect(1);
  assert.equal(leader.role, "leader");
  assert.equal(leader.term, 8);
  c.tick(3);

  const expected = [1, 1, 1, 4, 4, 5, 5, 6, 6, 6, 8]; // plus the leader's term-8 no-op
  for (const id of ids) assert.deepEqual(logTerms(c, id), expected, `node ${id}'s log`);
  for (const id of ids) assert.equal(c.raft(id).commitIndex, 11, `node ${id}'s commit`);
  // Followers c and d lost only uncommitted entries; everyone applied the same prefix.
  for (const id of ids) assert.deepEqual(c.nodes.get(id)!.applied, c.nodes.get(1)!.applied);
});

Deno.test("Figure 8: an entry of an older term is not committed by counting replicas", () => {
  // S1 led term 2 and wrote index 2 to S1 and S2; S5 led term 3 and wrote its own index 2.
  const ids = [1, 2, 3, 4, 5];
  const logs: Record<number, number[]> = { 1: [1, 2], 2: [1, 2], 3: [1], 4: [1], 5: [1, 3] };
  for (const mutated of [false, true]) {
    const initial = new Map<number, RaftInitialState>();
    for (const id of ids) {
      initial.set(id, {
        hardState: { term: 3, vote: 0, commit: 1 },
        snapshot: { index: 0, term: 0, conf: { voters: ids, learners: [] } },
        entries: entriesOfTerms(logs[id]),
      });
    }
    const c = new TestCluster(ids, {
      initial,
      config: {
        maxSizePerMsgBytes: 1, // one entry per message: index 2 can travel without index 3
        checkQuorum: false, // so S3 and S4 will vote for S5 at once, as in the figure
        testingMutation: mutated ? "commitOldTermByCounting" : undefined,
      },
    });
    // (a) S1 wins term 4 with votes of S2, S3, S4 (S5's log is more up to date than S1's).
    c.raft(1).campaign();
    c.deliverRounds(6, (m) => m.type !== "app");
    const s1 = c.raft(1);
    assert.equal(s1.role, "leader");
    assert.equal(s1.term, 4);
    // (b) S1 brings S2 fully up to date (with its term-4 no-op at index 3) but gets only
    // index 2 of term 2 to S3. Now S1, S2, S3 - a majority - hold index 2.
    c.deliverRounds(8, (m) =>
      [1, 2, 3].includes(m.from) && [1, 2, 3].includes(m.to) &&
      (m.type !== "app" || m.to !== 3 || c.raft(3).lastIndex < 2));
    assert.equal(c.raft(2).lastTerm, 4, "S2 holds S1's term-4 no-op");
    assert.deepEqual([c.raft(3).lastIndex, c.raft(3).lastTerm], [2, 2], "S3 holds 2/2 only");
    assert.equal(s1.progressOf(3)!.match, 2);
    // Correct Raft commits nothing: index 2 is of term 2, not S1's term 4.
    // The broken rule counts three replicas and "commits" it.
    assert.equal(s1.commitIndex, mutated ? 2 : 1);

    // (c) S1 crashes before index 3 reaches S3. S5 wins term 5 with S3 and S4 ...
    c.isolate(1);
    c.isolate(2);
    c.queue = [];
    c.raft(5).campaign();
    c.deliverAll();
    assert.equal(c.raft(5).role, "leader");
    c.tick(3);
    // ... and overwrites index 2 with its own term-3 entry on S3 and S4.
    for (const id of [3, 4, 5]) assert.equal(c.raft(id).termAt(2), 3, `node ${id} index 2`);
    // Index 2 of term 2 is gone from a majority: fine when uncommitted, a lost commit otherwise.
    assert.equal(s1.commitIndex >= 2 && s1.termAt(2) === 2, mutated);
  }
});

Deno.test("a partitioned node rejoins without disturbing the leader: PreVote keeps terms stable", () => {
  const c = new TestCluster([1, 2, 3]);
  const leader = c.elect(1);
  const term = leader.term;
  c.isolate(3);
  c.tick(200); // node 3 times out again and again, but only PreVotes, which never raise its term
  assert.equal(c.raft(3).term, term);
  assert.notEqual(c.raft(3).role, "leader");
  assert.equal(leader.role, "leader");
  c.heal();
  c.tick(20);
  assert.equal(leader.role, "leader", "the leader kept its place");
  assert.equal(leader.term, term, "no term was burned");
  assert.equal(c.raft(3).leaderId, 1);
});

Deno.test("an old leader cut off by a partition steps down (CheckQuorum) and rejoins as follower", () => {
  const c = new TestCluster([1, 2, 3]);
  c.elect(1);
  c.isolate(1);
  c.tick(40);
  assert.notEqual(c.raft(1).role, "leader", "without a quorum it stepped down");
  const newLeader = c.leader()!;
  assert.notEqual(newLeader.id, 1);
  const term = newLeader.term;
  newLeader.propose(text("during the partition"));
  c.tick(2);
  c.heal();
  c.tick(20);
  assert.equal(c.leader()!.id, newLeader.id);
  assert.equal(c.leader()!.term, term);
  assert.deepEqual(c.nodes.get(1)!.applied, ["during the partition"]);
});

Deno.test("a removed node that keeps campaigning cannot disrupt the cluster", () => {
  const c = new TestCluster([1, 2, 3]);
  const leader = c.elect(1);
  c.tick(2);
  c.isolate(3); // node 3 never learns it was removed
  const res = leader.proposeConfChange({ type: "removeNode", nodeId: 3 });
  assert.equal(res.accepted, true);
  c.tick(3);
  assert.deepEqual(leader.conf.voters, [1, 2]);
  const term = leader.term;
  c.heal();
  c.tick(300); // node 3 still thinks it is a voter and keeps timing out
  assert.deepEqual(c.raft(3).conf.voters, [1, 2, 3]);
  assert.equal(leader.role, "leader");
  assert.equal(leader.term, term, "its PreVotes were ignored: no term change");
  assert.notEqual(c.raft(3).role, "leader");
});

Deno.test("a leader refuses a second membership change before the first commits", () => {
  const c = new TestCluster([1, 2, 3]);
  const leader = c.elect(1);
  c.tick(2);
  c.addEmptyNode(4);
  assert.equal(leader.proposeConfChange({ type: "addLearner", nodeId: 4 }).accepted, true);
  const second = leader.proposeConfChange({ type: "removeNode", nodeId: 2 });
  assert.equal(second.accepted, false);
  c.tick(3);
  // Removing two of three voters' liveness is refused too.
  c.isolate(2);
  c.tick(12);
  const r = leader.proposeConfChange({ type: "removeNode", nodeId: 3 });
  assert.equal(r.accepted, false, "only node 1 of {1, 2} would be live");
});

Deno.test("a learner promoted while the leader changes ends up a voter everywhere", () => {
  const c = new TestCluster([1, 2, 3]);
  const leader = c.elect(1);
  c.tick(2);
  c.addEmptyNode(4);
  assert.equal(leader.proposeConfChange({ type: "addLearner", nodeId: 4 }).accepted, true);
  c.tick(5);
  assert.deepEqual(c.raft(4).conf.learners, [4]);
  assert.equal(c.raft(4).commitIndex, leader.commitIndex, "the learner caught up");
  // The promotion is proposed, then the leader is cut off before it commits.
  assert.equal(leader.proposeConfChange({ type: "promoteLearner", nodeId: 4 }).accepted, true);
  c.isolate(1);
  c.tick(60);
  const next = c.leader()!;
  assert.notEqual(next.id, 1);
  // Whatever survived, the new leader finishes the job.
  if (!next.conf.voters.includes(4)) {
    c.tick(2);
    assert.equal(next.proposeConfChange({ type: "promoteLearner", nodeId: 4 }).accepted, true);
  }
  c.heal();
  c.tick(30);
  for (const id of [1, 2, 3, 4]) {
    assert.deepEqual(c.raft(id).conf, { voters: [1, 2, 3, 4], learners: [] }, `node ${id}`);
  }
  // Node 4 now votes: it can become leader.
  assert.equal(c.leader()!.transferLeadership(4).accepted, true);
  c.tick(5);
  assert.equal(c.leader()!.id, 4);
});

Deno.test("leadership transfer to a lagging node catches it up first, then hands over", () => {
  const c = new TestCluster([1, 2, 3]);
  const leader = c.elect(1);
  c.isolate(3);
  for (let i = 0; i < 20; i++) leader.propose(text(`e${i}`));
  c.tick(2);
  c.heal();
  assert.ok(c.raft(3).lastIndex < leader.lastIndex, "node 3 lags");
  assert.equal(leader.transferLeadership(3).accepted, true);
  assert.equal(leader.propose(text("refused")).accepted, false, "no proposals during a transfer");
  c.tick(6); // lost appends are retransmitted, then TimeoutNow goes out
  assert.equal(c.raft(3).role, "leader");
  assert.equal(c.raft(3).term, 2);
  assert.equal(leader.role, "follower");
  c.tick(2);
  assert.equal(c.nodes.get(3)!.applied.length, 20);
});

Deno.test("leadership transfer to an unreachable node aborts after an election timeout", () => {
  const c = new TestCluster([1, 2, 3], { config: { electionTimeoutTicks: 10 } });
  const leader = c.elect(1);
  c.isolate(3);
  assert.equal(leader.transferLeadership(3).accepted, true);
  assert.equal(leader.leadTransferee, 3);
  c.tick(10);
  assert.equal(leader.leadTransferee, 0, "the transfer was given up");
  assert.equal(leader.role, "leader");
  assert.equal(leader.propose(text("accepted again")).accepted, true);
});

Deno.test("a follower behind the compaction point catches up from a snapshot", () => {
  const c = new TestCluster([1, 2, 3]);
  const leader = c.elect(1);
  c.isolate(3);
  for (let i = 0; i < 30; i++) leader.propose(text(`e${i}`));
  c.tick(2);
  c.compact(1, 25);
  c.compact(2, 25);
  assert.equal(leader.firstIndex, 26);
  c.heal();
  c.tick(5);
  const node3 = c.nodes.get(3)!;
  assert.ok(node3.readies.some((r) => r.snapshot?.index === 25), "node 3 installed snapshot 25");
  assert.equal(node3.raft.commitIndex, leader.commitIndex);
  assert.deepEqual(node3.applied, c.nodes.get(1)!.applied);
  assert.equal(node3.applied.length, 30);
});

Deno.test("ReadIndex on a follower returns an index covering every earlier commit", () => {
  const c = new TestCluster([1, 2, 3]);
  const leader = c.elect(1);
  leader.propose(text("x"));
  c.tick(2);
  const committed = leader.commitIndex;
  assert.equal(c.raft(2).readIndex(text("q1")).accepted, true);
  c.deliverAll();
  const states = c.nodes.get(2)!.readies.flatMap((r) => r.readStates);
  assert.equal(states.length, 1);
  assert.equal(new TextDecoder().decode(states[0].context), "q1");
  assert.ok(states[0].index >= committed);
});

Deno.test("a leader that cannot reach a quorum never confirms a read", () => {
  const c = new TestCluster([1, 2, 3]);
  const leader = c.elect(1);
  c.tick(2);
  c.isolate(1);
  assert.equal(leader.readIndex(text("q")).accepted, true);
  c.tick(5);
  assert.equal(c.nodes.get(1)!.readies.flatMap((r) => r.readStates).length, 0);
});

Deno.test("lease reads: answered at once while the lease holds, and the lease ends before any rival can win", () => {
  const c = new TestCluster([1, 2, 3], { config: { leaseReads: true, electionTimeoutTicks: 10 } });
  const leader = c.tickUntilLeader();
  c.tick(3);
  const readsOf = (id: number) => c.nodes.get(id)!.readies.flatMap((r) => r.readStates);
  // A majority echoed a recent heartbeat: the read is answered with no message exchange.
  leader.readIndex(text("fast"));
  c.flush();
  assert.deepEqual(readsOf(leader.id).map((r) => new TextDecoder().decode(r.context)), ["fast"]);

  c.isolate(leader.id);
  c.tick(9); // past the lease (election timeout 10 minus a 2-tick margin)
  assert.equal(leader.role, "leader", "it still believes it leads");
  assert.ok(
    [1, 2, 3].every((id) => id === leader.id || c.raft(id).role !== "leader"),
    "no rival has been elected yet",
  );
  leader.readIndex(text("late"));
  c.tick(2);
  assert.deepEqual(
    readsOf(leader.id).map((r) => new TextDecoder().decode(r.context)),
    ["fast"],
    "without a lease or a quorum, the late read is never answered",
  );
});
