/**
 * The master's side of the runtime protocol: it takes planned events from a
 * runtime, batches them (many events per Raft entry, many entries per
 * fsync), and tells the runtime when each ship's effects may be released,
 * according to the ship's optimism K (cluster/release.ts).
 *
 * Whoever leads the Raft group is master of every ship (one group for now).
 * @module
 */

import type { Entry, RaftNode } from "../core/mod.ts";
import { type ApplyResult, decodeCommand, encodeCommand, type PlannedEvent } from "./machine.ts";
import type { ShipTables } from "./ships.ts";
import { type Loss, OPTIMISM_DEFAULT, type Release, ReleaseTracker, resolveK } from "./release.ts";

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
}

/** What the master needs from its node. */
export interface MasterHost {
  /** The Raft core. */
  raft: RaftNode;
  /** Applied ship state. */
  ships: ShipTables;
  /** The cluster's default optimism (-1: a quorum). */
  defaultOptimism(): number;
  /** Proposes a command; resolves with its apply result. */
  propose(
    data: Uint8Array,
  ): { index: number; term: number; applied: Promise<ApplyResult> } | string;
}

/** Largest batch of events in one entry. */
const BATCH_BYTES_MAX = 1024 * 1024;

/** Batches plans into entries and turns replication progress into releases. */
export class ShipMaster {
  readonly #host: MasterHost;
  readonly #events: MasterEvents[] = [];
  readonly #tracker = new ReleaseTracker();
  /** Next event number expected per ship, counting plans in flight. */
  #next = new Map<bigint, number>();
  #batches = new Map<bigint, { firstEve: number; events: PlannedEvent[]; bytes: number }>();
  #flushQueued = false;
  #master = false;
  /** Releases announced this process, and events released (for status). */
  released = 0;
  /** Losses found, by this process or recorded by an earlier one (see ClusterNode). */
  losses: Loss[] = [];

  /** Makes the master for a node. */
  constructor(host: MasterHost) {
    this.#host = host;
  }

  /** Listens to releases, refusals and role changes. */
  subscribe(listener: MasterEvents): () => void {
    this.#events.push(listener);
    return () => {
      const i = this.#events.indexOf(listener);
      if (i >= 0) this.#events.splice(i, 1);
    };
  }

  /** True while this node may release. */
  get isMaster(): boolean {
    return this.#master;
  }

  /** Why releases wait, if they do. */
  get stalled(): { need: number; have: number } | undefined {
    return this.#tracker.stalled;
  }

  /** Plans one event (the runtime pipelines many); refusals come back through `refuse`. */
  plan(p: Plan): void {
    if (!this.#master) {
      this.#emit((l) => l.refuse(p.ship, p.eve, "This node is not the master"));
      return;
    }
    // The next expected event is cached per ship: no database read per planned event.
    let next = this.#next.get(p.ship);
    if (next === undefined) {
      const info = this.#host.ships.get(p.ship);
      if (info === undefined) {
        this.#emit((l) =>
          l.refuse(p.ship, p.eve, "The ship is not on this cluster; add it with 'seguro ship add'")
        );
        return;
      }
      next = info.lastEve + 1;
    }
    if (p.eve > next) {
      this.#emit((l) =>
        l.refuse(p.ship, p.eve, `Event ${p.eve} would leave a gap: the next is ${next}`)
      );
      return;
    }
    let batch = this.#batches.get(p.ship);
    if (batch !== undefined && batch.firstEve + batch.events.length !== p.eve) {
      this.#flushShip(p.ship);
      batch = undefined;
    }
    if (batch === undefined) {
      batch = { firstEve: p.eve, events: [], bytes: 0 };
      this.#batches.set(p.ship, batch);
    }
    batch.events.push({ mug: p.mug, job: p.job });
    batch.bytes += p.job.length;
    if (p.eve === next) this.#next.set(p.ship, next + 1);
    if (batch.bytes >= BATCH_BYTES_MAX) this.#flushShip(p.ship);
    else if (!this.#flushQueued) {
      // Plans that arrive together (one socket read) become one entry per ship.
      this.#flushQueued = true;
      queueMicrotask(() => this.#flush());
    }
  }

  #flush(): void {
    this.#flushQueued = false;
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
      this.#next.delete(ship);
      this.#emit((l) => l.refuse(ship, batch.firstEve, result));
      return;
    }
    const info = this.#host.ships.get(ship);
    const conf = this.#host.raft.conf;
    const replicas = conf.voters.length + conf.learners.length - 1;
    const own = info?.optimism ?? OPTIMISM_DEFAULT;
    const setting = own === OPTIMISM_DEFAULT ? this.#host.defaultOptimism() : own;
    const k = resolveK(setting, conf.voters.length, replicas);
    this.#tracker.planned({
      index: result.index,
      term: result.term,
      ship,
      firstEve: batch.firstEve,
      lastEve,
      k,
      quorum: setting < 0,
    });
    result.applied.then((applied) => {
      if (!applied.ok) {
        this.#next.delete(ship);
        this.#emit((l) =>
          l.refuse(ship, batch.firstEve + applied.appended + applied.skipped, applied.reason)
        );
      }
    }, () => {/* leadership lost: the runtime is fenced */});
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

  /** Called by the node after every Ready: releases, role changes, loss audits. */
  afterReady(): void {
    const raft = this.#host.raft;
    const master = raft.role === "leader";
    if (master !== this.#master) {
      this.#master = master;
      this.#next.clear();
      this.#batches.clear();
      if (!master) this.#tracker.abandonPending();
      this.#emit((l) => l.role(master));
    }
    if (master) {
      const conf = raft.conf;
      const matches: number[] = [];
      for (const id of [...conf.voters, ...conf.learners]) {
        if (id === raft.id) continue;
        matches.push(raft.progressOf(id)?.match ?? 0);
      }
      for (const r of this.#tracker.update(raft.persistedIndex, matches, raft.commitIndex)) {
        this.released++;
        this.#emit((l) => l.release(r));
      }
    }
    if (this.#tracker.uncommittedCount > 0) {
      for (const loss of this.#tracker.audit((i) => raft.termAt(i), raft.commitIndex)) {
        // Found again after a restart: already recorded and reported.
        if (this.losses.some((k) => k.index === loss.index && k.ship === loss.ship)) continue;
        this.losses.push(loss);
        this.#emit((l) => l.lost(loss));
      }
    }
  }

  #emit(f: (l: MasterEvents) => void): void {
    for (const l of this.#events) f(l);
  }
}
