/**
 * The master's side of the runtime protocol: it takes planned events from a
 * runtime, batches them (many events per Raft entry, many entries per
 * fsync), and tells the runtime when each ship's effects may be released,
 * according to the ship's optimism K (cluster/release.ts).
 *
 * Whoever leads the Raft group is master of every ship (one group for now),
 * but only once its applied state is the true tail of the log.
 *
 * Invariants (docs/durability.md, "What %done means"):
 * - M1 (ready): `isMaster` only while this node leads term T and has applied
 *   an entry of T. Entries are applied in order and every entry of an earlier
 *   term precedes T's first entry in the leader's log, so the applied state
 *   then holds every earlier-term entry: no committed-but-unapplied event of
 *   an old master can collide with a new plan.
 * - M2 (tail): per ship, `tail` = the applied last event plus the events this
 *   master has accepted into entries of T and not yet applied. While this
 *   master plans a ship, nothing else writes its events (admin writes claim
 *   the ship, see {@linkcode ShipMaster.claim}).
 * - M3 (accept): a plan goes into an entry only at `tail + 1`, so the state
 *   machine accepts every entry the master proposes; should it refuse one
 *   anyway, that entry and every later one of the ship are never released,
 *   and any already released (K below a quorum) is reported as a loss.
 * - M4 (release): a release covers only entries of T durable here and on K
 *   others; with K a quorum, only entries committed and accepted.
 * @module
 */

import type { Entry, Role } from "../core/mod.ts";
import { type ApplyResult, decodeCommand, encodeCommand, type PlannedEvent } from "./machine.ts";
import type { ShipReader } from "./ships.ts";
import {
  type Loss,
  OPTIMISM_DEFAULT,
  type PlannedEntry,
  type Release,
  ReleaseTracker,
  resolveK,
} from "./release.ts";
import { sameBytes } from "./codec.ts";

/** One planned event from a runtime. */
export interface Plan {
  /** The ship. */
  ship: bigint;
  /** Event number. */
  eve: number;
  /** Mug after the event. */
  mug: number;
  /** The job's jam bytes. */
  job: Uint8Array;
}

/** What the master tells runtimes. */
export interface MasterEvents {
  /** Effects of `ship` up to `eve` may be released. */
  release(r: Release): void;
  /** A plan was refused; the runtime must re-sync. */
  refuse(ship: bigint, eve: number, why: string): void;
  /** This node became (true) or stopped being (false) master. */
  role(master: boolean): void;
  /** Events released before commit were erased by a failover. */
  lost(loss: Loss): void;
  /** The leader this node knows changed (id, 0 when none), or this node learned its address. */
  leader?(id: number): void;
}

/**
 * What the driver publishes after each Ready (and after a tick that changed
 * the role): the master reads this, never the Raft core itself.
 */
export interface NodeView {
  /** This node's id. */
  readonly id: number;
  /** Its role. */
  readonly role: Role;
  /** Current term. */
  readonly term: number;
  /** The leader this node knows (0: none). */
  readonly leaderId: number;
  /** Its address as this node's applied state knows it ('' when unknown). */
  readonly leaderAddress: string;
  /** Last index durable on this node. */
  readonly persisted: number;
  /** Commit index. */
  readonly committed: number;
  /** Applied index. */
  readonly applied: number;
  /** Term of the entry at `applied` (0 when nothing is applied). */
  readonly appliedTerm: number;
  /** Voters. */
  readonly voters: readonly number[];
  /** Learners. */
  readonly learners: readonly number[];
  /** Leader only: the durable (match) index of every other member. */
  readonly matches: readonly number[];
}

/** What the master needs from its node. */
export interface MasterHost {
  /** The latest published view. */
  view(): NodeView;
  /** Term of the log entry at `index` (undefined if the log does not reach it). */
  termAt(index: number): number | undefined;
  /** Applied ship state. */
  ships: ShipReader;
  /** The cluster's default optimism (-2, or -1 when never set: a quorum). */
  defaultOptimism(): number;
  /** Proposes a command; the apply result comes back through {@linkcode ShipMaster.applied}. */
  propose(data: Uint8Array): { index: number; term: number } | string;
  /** Plans are waiting to be flushed: run the Ready loop soon. */
  wake(): void;
  /**
   * Durable records of released entries the log no longer reaches (see
   * `PlannedEntry.saved`): written before the verdict, removed after it.
   */
  suspects: { save(e: PlannedEntry): void; forget(e: PlannedEntry): void };
}

/** Largest batch of events in one entry. */
const BATCH_BYTES_MAX = 1024 * 1024;

interface Tail {
  eve: number;
  mug: number;
}

interface Batch {
  firstEve: number;
  /** The tail before this batch, to restore if it cannot be proposed. */
  before: Tail;
  events: PlannedEvent[];
  bytes: number;
}

interface InFlight {
  term: number;
  ship: bigint;
  firstEve: number;
}

/**
 * Mutations for the whole-node simulator's mutation test: `staleLead`
 * restores the bug fixed by P7 (master as soon as leader, so %lead and %head
 * come from a stale applied state; quorum releases at commit whatever the
 * state machine then says); `releaseEarly` releases every entry once the
 * master alone holds it, whatever the ship's optimism. Never set in production.
 */
export type ShipMasterMutation = "staleLead" | "releaseEarly";

/** The master is not master (not leader, or leader not yet caught up). */
const NOT_MASTER = "This node is not the master; wait for [%lead] or follow [%away]";

/** Batches plans into entries and turns replication progress into releases. */
export class ShipMaster {
  readonly #host: MasterHost;
  readonly #events: MasterEvents[] = [];
  readonly #tracker = new ReleaseTracker();
  /** Per ship: last event accepted (applied, or in an entry of this term). */
  #tails = new Map<bigint, Tail>();
  #batches = new Map<bigint, Batch>();
  /** This master's entries not yet applied, by index. */
  #inFlight = new Map<number, InFlight>();
  /** Ships an admin write holds (import, attach, exec tail), with a count. */
  #claims = new Map<bigint, number>();
  #master = false;
  #leaderId = 0;
  #leaderAddress = "";
  readonly #mutation: ShipMasterMutation | undefined;
  /** Releases announced this process, and events released (for status). */
  released = 0;
  /** Losses found, by this process or recorded by an earlier one (see NodeDriver). */
  losses: Loss[] = [];

  /** Makes the master for a node. */
  constructor(host: MasterHost, mutation?: ShipMasterMutation) {
    this.#host = host;
    this.#mutation = mutation;
  }

  /** Listens to releases, refusals and role changes. */
  subscribe(listener: MasterEvents): () => void {
    this.#events.push(listener);
    return () => {
      const i = this.#events.indexOf(listener);
      if (i >= 0) this.#events.splice(i, 1);
    };
  }

  /** True while this node may release (M1). */
  get isMaster(): boolean {
    return this.#master;
  }

  /** True while this node leads but has not yet applied an entry of its term. */
  get becomingMaster(): boolean {
    return !this.#master && this.#host.view().role === "leader";
  }

  /** True while plans wait in batches for {@linkcode flush}. */
  get hasBatches(): boolean {
    return this.#batches.size > 0;
  }

  /** Why releases wait, if they do. */
  get stalled(): { need: number; have: number } | undefined {
    return this.#tracker.stalled;
  }

  /**
   * The ship's last event as the master will log it: applied events plus
   * plans accepted into entries of this term (M2). Undefined for a ship the
   * cluster does not have. Off the master, the applied state alone.
   */
  head(ship: bigint): Tail | undefined {
    if (this.#master) {
      const tail = this.#tails.get(ship);
      if (tail !== undefined) return { ...tail };
    }
    const info = this.#host.ships.get(ship);
    return info === undefined ? undefined : { eve: info.lastEve, mug: info.lastMug };
  }

  /** Plans one event (the runtime pipelines many); refusals come back through `refuse`. */
  plan(p: Plan): void {
    if (!this.#master) return this.#refuse(p.ship, p.eve, NOT_MASTER);
    if (this.#claims.has(p.ship)) {
      return this.#refuse(
        p.ship,
        p.eve,
        "An import or a pier tail is writing this ship's events; plan again after it ends",
      );
    }
    let tail = this.#tails.get(p.ship);
    if (tail === undefined) {
      const info = this.#host.ships.get(p.ship);
      if (info === undefined) {
        return this.#refuse(
          p.ship,
          p.eve,
          "The ship is not on this cluster; add it with 'seguro ship add'",
        );
      }
      tail = { eve: info.lastEve, mug: info.lastMug };
      this.#tails.set(p.ship, tail);
    }
    if (p.eve > tail.eve + 1) {
      return this.#refuse(
        p.ship,
        p.eve,
        `Event ${p.eve} would leave a gap: the next is ${tail.eve + 1}; re-sync with [%head]`,
      );
    }
    if (p.eve <= tail.eve) return this.#replanned(p);
    let batch = this.#batches.get(p.ship);
    if (batch === undefined) {
      batch = { firstEve: p.eve, before: { ...tail }, events: [], bytes: 0 };
      this.#batches.set(p.ship, batch);
    }
    batch.events.push({ mug: p.mug, job: p.job });
    batch.bytes += p.job.length;
    tail.eve = p.eve;
    tail.mug = p.mug;
    if (batch.bytes >= BATCH_BYTES_MAX) this.#flushShip(p.ship);
    else this.#host.wake();
  }

  /** A plan of an event already accepted: skipped if it is the logged one, else refused. */
  #replanned(p: Plan): void {
    const applied = this.#host.ships.get(p.ship)?.lastEve ?? 0;
    if (p.eve > applied) {
      return this.#refuse(
        p.ship,
        p.eve,
        `Event ${p.eve} was already planned and is not logged yet; re-sync with [%head]`,
      );
    }
    const stored = this.#host.ships.event(p.ship, p.eve);
    if (stored !== undefined && stored.mug === p.mug && sameBytes(stored.job, p.job)) {
      // Already logged and applied (so committed): releasing it again is safe for every K.
      this.released++;
      this.#emit((l) => l.release({ ship: p.ship, eve: p.eve }));
      return;
    }
    this.#refuse(
      p.ship,
      p.eve,
      `${p.eve} is already logged as a different event; re-sync with [%head] and [%read]`,
    );
  }

  #refuse(ship: bigint, eve: number, why: string): void {
    this.#emit((l) => l.refuse(ship, eve, why));
  }

  /**
   * Claims `ship` for an admin write of its events (import, attach, the exec
   * tail), so that runtime plans and admin writes never interleave (M2).
   * Returns a reason when a runtime's plans are in flight, else the release.
   */
  claim(ship: bigint): string | (() => void) {
    const busy = this.#batches.has(ship) ||
      [...this.#inFlight.values()].some((f) => f.ship === ship);
    if (busy) {
      return "A runtime is planning this ship's events on the master; stop it before importing or tailing a pier";
    }
    this.#claims.set(ship, (this.#claims.get(ship) ?? 0) + 1);
    let done = false;
    return () => {
      if (done) return;
      done = true;
      const n = (this.#claims.get(ship) ?? 1) - 1;
      if (n > 0) this.#claims.set(ship, n);
      else this.#claims.delete(ship);
      this.#tails.delete(ship); // read it again from the applied state
    };
  }

  /** Proposes every batch gathered since the last call (the driver calls it before a Ready). */
  flush(): void {
    for (const ship of [...this.#batches.keys()]) this.#flushShip(ship);
  }

  #flushShip(ship: bigint): void {
    const batch = this.#batches.get(ship);
    if (batch === undefined) return;
    this.#batches.delete(ship);
    const lastEve = batch.firstEve + batch.events.length - 1;
    const result = this.#host.propose(
      encodeCommand({ kind: "events", ship, firstEve: batch.firstEve, events: batch.events }),
    );
    if (typeof result === "string") {
      // Not in the log: the tail goes back to before this batch.
      this.#tails.set(ship, batch.before);
      return this.#refuse(ship, batch.firstEve, result);
    }
    const view = this.#host.view();
    const info = this.#host.ships.get(ship);
    const replicas = view.voters.length + view.learners.length - 1;
    const own = info?.optimism ?? OPTIMISM_DEFAULT;
    const setting = own === OPTIMISM_DEFAULT ? this.#host.defaultOptimism() : own;
    const early = this.#mutation === "releaseEarly";
    const k = early ? 0 : resolveK(setting, view.voters.length, replicas);
    this.#inFlight.set(result.index, { term: result.term, ship, firstEve: batch.firstEve });
    this.#tracker.planned({
      index: result.index,
      term: result.term,
      ship,
      firstEve: batch.firstEve,
      lastEve,
      k,
      quorum: setting < 0 && !early,
    });
  }

  /**
   * The driver applied the entry at `index` of `term` with `result`. For this
   * master's own entries: acceptance lets quorum releases through; a refusal
   * (M3 broken, e.g. by a ship removed meanwhile) stops every later release
   * of the ship and reports any already made as a loss.
   */
  applied(index: number, term: number, result: ApplyResult): void {
    const mine = this.#inFlight.get(index);
    if (mine === undefined) return;
    this.#inFlight.delete(index);
    if (mine.term !== term) return; // replaced by another term's entry: the audit handles it
    if (result.ok || this.#mutation === "staleLead") {
      this.#tracker.accepted(index, term);
      if (!result.ok) this.#refuse(mine.ship, mine.firstEve, result.reason);
      return;
    }
    this.#tails.delete(mine.ship);
    this.#refuse(mine.ship, mine.firstEve + result.appended + result.skipped, result.reason);
    for (const loss of this.#tracker.refused(index, term, mine.ship)) this.#reportLoss(loss);
  }

  /**
   * After a restart: the durable, not-known-committed `entries` of terms in
   * which this node was master may have been released before the crash;
   * they are audited like released ones, so a crash cannot hide a loss.
   */
  rememberPossiblyReleased(
    entries: readonly Entry[],
    ledTerms: ReadonlySet<number>,
    commit: number,
  ): void {
    const suspects = [];
    for (const e of entries) {
      if (e.index <= commit || e.type !== "normal" || !ledTerms.has(e.term)) continue;
      let c;
      try {
        c = decodeCommand(e.data);
      } catch {
        continue;
      }
      if (c.kind !== "events" || c.events.length === 0) continue;
      suspects.push({
        index: e.index,
        term: e.term,
        ship: c.ship,
        firstEve: c.firstEve,
        lastEve: c.firstEve + c.events.length - 1,
        k: 0,
      });
    }
    this.#tracker.rememberPossiblyReleased(suspects);
  }

  /** After a restart: released entries recorded as out of the log's reach (`suspects.save`). */
  rememberSaved(entries: readonly PlannedEntry[]): void {
    this.#tracker.rememberPossiblyReleased(entries.map((e) => ({ ...e, saved: true })));
  }

  /** Called by the driver after every Ready: role changes, releases, loss audits. */
  afterReady(): void {
    const view = this.#host.view();
    const caughtUp = view.applied > 0 && view.appliedTerm === view.term;
    const master = view.role === "leader" && (caughtUp || this.#mutation === "staleLead");
    if (master !== this.#master) {
      this.#master = master;
      this.#tails.clear();
      this.#batches.clear();
      this.#inFlight.clear();
      this.#claims.clear();
      if (!master) this.#tracker.abandonPending();
      this.#emit((l) => l.role(master));
    }
    // A node behind learns a new leader's address only when it applies (or installs) it.
    if (view.leaderId !== this.#leaderId || view.leaderAddress !== this.#leaderAddress) {
      this.#leaderId = view.leaderId;
      this.#leaderAddress = view.leaderAddress;
      this.#emit((l) => l.leader?.(view.leaderId));
    }
    if (master) {
      for (const r of this.#tracker.update(view.persisted, view.matches, view.applied)) {
        this.released++;
        this.#emit((l) => l.release(r));
      }
    }
    if (this.#tracker.uncommittedCount > 0) {
      const audit = this.#tracker.audit(
        (i) => this.#host.termAt(i),
        view.applied,
        (ship, eve) => {
          const e = this.#host.ships.event(ship, eve);
          return e === undefined ? undefined : { index: e.entryIndex, term: e.entryTerm };
        },
        view.appliedTerm,
      );
      for (const e of audit.save) this.#host.suspects.save(e);
      for (const loss of audit.lost) this.#reportLoss(loss);
      for (const e of audit.forget) this.#host.suspects.forget(e);
    }
  }

  #reportLoss(loss: Loss): void {
    // Found again after a restart: already recorded and reported. The same index can
    // lose events more than once, in different terms: the term is part of the identity.
    const known = (k: Loss) =>
      k.index === loss.index && k.term === loss.term && k.ship === loss.ship;
    if (this.losses.some(known)) return;
    this.losses.push(loss);
    this.#emit((l) => l.lost(loss));
  }

  #emit(f: (l: MasterEvents) => void): void {
    for (const l of this.#events) f(l);
  }
}
