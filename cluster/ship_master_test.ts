/**
 * The ship master alone: a hand-set {@linkcode NodeView}, a real state
 * machine on an in-memory store, and proposals the test applies itself.
 */

import assert from "node:assert/strict";
import { type ApplyResult, encodeCommand, Machine } from "./machine.ts";
import { type NodeView, ShipMaster } from "./ship_master.ts";
import { Store } from "./store.ts";

const ZOD = 0n;
const job = (n: number) => new Uint8Array([n, 1]);

class Harness {
  readonly store = Store.inMemory("ship-master-test", {
    identity: { clusterId: "ab".repeat(16), nodeId: 1, groupId: 1 },
    secret: new Uint8Array(32).fill(1),
    conf: { voters: [1, 2, 3], learners: [] },
  });
  readonly machine = new Machine(this.store);
  view: NodeView = {
    id: 1,
    role: "follower",
    term: 1,
    leaderId: 2,
    leaderAddress: "",
    persisted: 0,
    committed: 0,
    applied: 0,
    appliedTerm: 0,
    voters: [1, 2, 3],
    learners: [],
    matches: [],
  };
  readonly log: { index: number; term: number; data: Uint8Array }[] = [];
  readonly heard: string[] = [];
  readonly master: ShipMaster;

  constructor() {
    this.master = new ShipMaster({
      view: () => this.view,
      termAt: (i) => this.log[i - 1]?.term,
      ships: this.machine.ships,
      defaultOptimism: () => -1,
      propose: (data) => {
        if (this.view.role !== "leader") return "not leader";
        this.log.push({ index: this.log.length + 1, term: this.view.term, data });
        return { index: this.log.length, term: this.view.term };
      },
      wake: () => {},
      suspects: { save: () => {}, forget: () => {} },
    });
    this.master.subscribe({
      release: (r) => this.heard.push(`done ${r.eve}`),
      refuse: (_s, eve, why) => this.heard.push(`nope ${eve}: ${why}`),
      role: (m) => this.heard.push(m ? "lead" : "fence"),
      lost: (l) => this.heard.push(`lost ${l.firstEve}-${l.lastEve}`),
    });
  }

  /** Appends `term` entries to the log (as another master would have). */
  append(term: number, data: Uint8Array): void {
    this.log.push({ index: this.log.length + 1, term, data });
  }

  /** Persists, commits and applies the log up to `to`, telling the master each result. */
  apply(to: number): ApplyResult[] {
    const from = this.view.applied + 1;
    const entries = this.log.slice(from - 1, to);
    this.store.persist({
      entries: entries.map((e) => ({ ...e, type: "normal" as const })),
      hardState: { term: this.view.term, vote: 0, commit: to },
    });
    const results: ApplyResult[] = [];
    this.store.applyTransaction(to, () => {
      for (const e of entries) results.push(this.machine.apply(e.data, e.index, e.term));
    });
    entries.forEach((e, i) => this.master.applied(e.index, e.term, results[i]));
    this.view = {
      ...this.view,
      persisted: Math.max(this.view.persisted, to),
      committed: to,
      applied: to,
      appliedTerm: this.log[to - 1].term,
    };
    return results;
  }

  /** A Ready went by: the master reads the view. */
  ready(matches: number[] = this.view.matches as number[]): void {
    this.view = { ...this.view, matches };
    this.master.afterReady();
  }

  plan(eve: number, mug = eve): void {
    this.master.plan({ ship: ZOD, eve, mug, job: job(eve) });
  }

  events(firstEve: number, n: number, mug = (e: number) => e): Uint8Array {
    const events = Array.from({ length: n }, (_, i) => ({
      mug: mug(firstEve + i),
      job: job(firstEve + i),
    }));
    return encodeCommand({ kind: "events", ship: ZOD, firstEve, events });
  }
}

/** A harness whose log holds ~zod with events 1-3 from term 1, all applied. */
function started(): Harness {
  const h = new Harness();
  h.append(1, encodeCommand({ kind: "shipAdd", ship: ZOD, fake: true, optimism: -1, life: 0 }));
  h.append(1, h.events(1, 3));
  h.apply(2);
  return h;
}

/** A started harness whose node leads term 2 and has applied that term's first entry. */
function master(): Harness {
  const h = started();
  h.view = { ...h.view, role: "leader", term: 2, leaderId: 1 };
  h.append(2, new Uint8Array([1]));
  h.apply(3);
  h.ready();
  return h;
}

Deno.test("a new leader is not master until it has applied an entry of its own term (the P7 bug)", () => {
  const h = started();
  // Term 1's master got events 4-5 committed, but this node has not applied them yet.
  h.append(1, h.events(4, 2));
  h.view = { ...h.view, role: "leader", term: 2, leaderId: 1 };
  h.append(2, new Uint8Array([1])); // the new leader's first entry (a raw write)
  h.ready();
  assert.equal(h.master.isMaster, false);
  assert.equal(h.master.becomingMaster, true);
  assert.deepEqual(h.master.head(ZOD), { eve: 3, mug: 3 }, "off the master: the applied state");
  h.plan(4, 99);
  assert.match(h.heard.at(-1)!, /^nope 4: This node is not the master/);
  h.apply(3); // the old term's entry applied, the own-term one not yet
  h.ready();
  assert.equal(h.master.isMaster, false);
  h.apply(4);
  h.ready();
  assert.equal(h.master.isMaster, true);
  assert.equal(h.heard.at(-1), "lead");
  assert.deepEqual(h.master.head(ZOD), { eve: 5, mug: 5 }, "the true tail, with term 1's events");
});

Deno.test("the master plans only at its tail, and %head counts plans it accepted", () => {
  const h = master();
  assert.equal(h.master.isMaster, true);
  h.plan(4);
  h.plan(5);
  assert.deepEqual(h.master.head(ZOD), { eve: 5, mug: 5 });
  h.plan(7);
  assert.match(h.heard.at(-1)!, /^nope 7: Event 7 would leave a gap: the next is 6/);
  h.plan(5, 42);
  assert.match(h.heard.at(-1)!, /^nope 5: Event 5 was already planned/);
  h.plan(2, 42);
  assert.match(h.heard.at(-1)!, /^nope 2: 2 is already logged as a different event/);
  h.plan(3);
  assert.equal(h.heard.at(-1), "done 3", "an identical re-plan of an applied event is released");
  h.master.flush();
  assert.equal(h.log.length, 4, "one entry for the batch 4-5");
});

Deno.test("at a quorum, release waits for commit and acceptance; a refused entry is never released", () => {
  const h = master();
  h.plan(4);
  h.master.flush();
  h.view = { ...h.view, persisted: 4 };
  h.ready([4, 0]);
  assert.equal(h.heard.at(-1), "lead", "durable on a majority, but not applied: no release");
  h.apply(4);
  h.ready([4, 0]);
  assert.equal(h.heard.at(-1), "done 4");
  // Another writer slips event 5 in (the claim below is what prevents this in the node).
  h.append(2, h.events(5, 1, () => 7));
  h.plan(5);
  h.master.flush();
  h.apply(6);
  h.view = { ...h.view, persisted: 6 };
  h.ready([6, 6]);
  assert.match(h.heard.at(-1)!, /^nope 5: ship 0 already has a different event 5/);
  assert.ok(!h.heard.includes("done 5"), "the refused plan was not released");
});

Deno.test("an import claim and runtime plans of one ship exclude each other", () => {
  const h = master();
  h.plan(4);
  assert.match(String(h.master.claim(ZOD)), /A runtime is planning this ship/);
  h.master.flush();
  h.apply(4);
  h.ready();
  const release = h.master.claim(ZOD);
  assert.equal(typeof release, "function");
  h.plan(5);
  assert.match(h.heard.at(-1)!, /^nope 5: An import or a pier tail is writing/);
  (release as () => void)();
  const heard = h.heard.length;
  h.plan(5);
  assert.equal(h.heard.length, heard, "accepted: nothing to say yet");
  assert.deepEqual(h.master.head(ZOD), { eve: 5, mug: 5 });
});

Deno.test("losing leadership fences at once and drops what was not released", () => {
  const h = master();
  h.plan(4);
  h.master.flush();
  h.view = { ...h.view, role: "follower", term: 3, leaderId: 2, persisted: 4 };
  h.ready([4, 4]);
  assert.equal(h.heard.at(-1), "fence");
  assert.equal(h.master.isMaster, false);
  assert.ok(!h.heard.some((l) => l.startsWith("done 4")));
});

Deno.test("K = 0: the same index losing released events in two terms is reported twice", () => {
  const h = started();
  h.append(1, encodeCommand({ kind: "shipSet", ship: ZOD, optimism: 0 }));
  h.apply(3);
  const lead = (term: number) => {
    h.view = { ...h.view, role: "leader", term, leaderId: 1 };
    h.append(term, new Uint8Array([1]));
    h.apply(h.log.length);
    h.ready();
    assert.equal(h.master.isMaster, true);
  };
  /** Plans events 4.. one entry each, released on the master's own fsync (K = 0). */
  const release = (n: number) => {
    for (let eve = 4; eve < 4 + n; eve++) {
      h.plan(eve, h.view.term);
      h.master.flush();
    }
    h.view = { ...h.view, persisted: h.log.length };
    h.ready([0, 0]);
    assert.equal(h.heard.at(-1), `done ${3 + n}`);
  };
  /** Deposed: a later term's leader writes another entry after `keep`. */
  const depose = (term: number, keep: number) => {
    h.view = { ...h.view, role: "follower", term, leaderId: 2 };
    h.log.length = keep;
    h.append(term, new Uint8Array([2]));
    h.ready([]);
    h.log.length = keep; // that entry never committed either
  };
  lead(2); // noop at 4
  release(3); // entries 5, 6, 7 of term 2
  depose(3, 4);
  lead(4); // noop at 5: entries 6 and 7 of term 2 can never commit now
  release(1); // entry 6 of term 4
  depose(5, 5);
  const lost = h.master.losses.map((l) => `${l.index}/${l.term}`).sort();
  assert.deepEqual(lost, ["5/2", "6/2", "6/4", "7/2"]);
});

Deno.test("the leader is announced again once its address is learned (a node behind installs it later)", () => {
  const h = new Harness();
  const heard: string[] = [];
  h.master.subscribe({
    release: () => {},
    refuse: () => {},
    role: () => {},
    lost: () => {},
    leader: (id) => heard.push(`leader ${id} at '${h.view.leaderAddress}'`),
  });
  h.master.afterReady();
  assert.deepEqual(heard, ["leader 2 at ''"]);
  h.master.afterReady();
  assert.deepEqual(heard, ["leader 2 at ''"], "nothing changed");
  h.view = { ...h.view, leaderAddress: "node-2:7700" };
  h.master.afterReady();
  assert.deepEqual(heard, ["leader 2 at ''", "leader 2 at 'node-2:7700'"]);
});
