/**
 * Standby piers: on every node that runs with `--standby-dir DIR`, each ship
 * on the cluster has a pier `DIR/<ship>/` whose event log holds every event
 * this node has applied, so stock vere can boot from it after a failover.
 * The cluster's applied state is the source; the pier is written with vere's
 * own LMDB format (vere/pier.ts, vere/lmdb.ts).
 *
 * A pier is either a standby (this process writes it from the applied
 * state) or held (a runtime this node started writes it, and this process
 * only reads it: the tail). Invariants:
 * - a standby pier's events 1..`verified` equal the cluster's;
 * - events above `verified` are compared before they are trusted: a pier
 *   event that differs from the cluster's, or lies beyond the cluster's log
 *   when the pier is held or released, is discarded with a log line (they are
 *   events a runtime wrote that the cluster never committed);
 * - nothing is written to a held pier.
 *
 * Writing a pier is kept off the consensus path: the node's apply only calls
 * {@linkcode StandbyPiers.schedule}, and the writes run later on the event
 * loop in bounded slices (at most {@linkcode SLICE_EVENTS_MAX} events or
 * {@linkcode SLICE_BYTES_MAX} bytes of jobs, one LMDB transaction per pier,
 * and at most one pier opened), each followed by a yield to the event loop,
 * so a long catch-up never delays the node's acknowledgements.
 * @module
 */

import type { LogSink } from "../cluster/log_event.ts";
import { join } from "node:path";
import { sameBytes } from "../cluster/codec.ts";
import type { ShipReader } from "../cluster/ships.ts";
import { renderShip } from "../vere/event.ts";
import { type Alarms, describeFailure } from "./alarms.ts";
import { type Db, Env, eventKey, eventOfKey, type Txn } from "../vere/lmdb.ts";
import {
  decodeEventValue,
  encodeEventValue,
  LOG_VERSION,
  type PierEvent,
  readPierMeta,
  writePier,
} from "../vere/pier.ts";

/** Events one sync slice checks or writes, over every pier, before it yields. */
export const SLICE_EVENTS_MAX = 1_000;

/** Bytes of jobs one sync slice checks or writes before it yields (at least one event). */
export const SLICE_BYTES_MAX = 4 * 1024 * 1024;

/** How long a pier that failed is left alone before the next try. */
const RETRY_MS = 5_000;

/** A pier's progress is logged when this process first writes it, then every this many events. */
const PROGRESS_EVENTS = 10_000;

interface Standby {
  pier: string;
  /** The epoch the pier's events are in: `.urb/log/0i0`. */
  epoch: string;
  env: Env;
  /** The pier's last event (its events are 1..last). */
  last: number;
  /** Events 1..verified equal the cluster's. */
  verified: number;
  held: boolean;
  /** Whether this process has logged the pier's progress yet. */
  reported: boolean;
}

/** What is left of a slice's work. */
interface Budget {
  events: number;
  bytes: number;
}

function fullBudget(): Budget {
  return { events: SLICE_EVENTS_MAX, bytes: SLICE_BYTES_MAX };
}

function spent(b: Budget): boolean {
  return b.events <= 0 || b.bytes <= 0;
}

function eventsDb(txn: Txn): Db {
  return txn.openDb("EVENTS", { integerKey: true });
}

/** Keeps one standby pier per ship up to date with the applied state. */
export class StandbyPiers {
  readonly #dir: string;
  readonly #ships: ShipReader;
  readonly #log: LogSink;
  readonly #alarms: Alarms;
  readonly #open = new Map<bigint, Standby>();
  /** Ships whose pier failed, and when to try it again (performance.now() ms). */
  readonly #retryAt = new Map<bigint, number>();
  readonly #now: () => number;
  /** Where the next slice starts in the ship list (round robin, so no ship starves). */
  #cursor = 0;
  /** The pending slice, if one is scheduled. */
  #timer: ReturnType<typeof setTimeout> | undefined;
  /** Waiting for no slice to be pending. */
  #idle: (() => void)[] = [];
  #closed = false;

  /**
   * Standby piers under `dir` for the ships in `ships`. A pier that cannot be
   * written raises an alarm in `alarms` and is retried later; it never throws
   * into the node. `now` is the clock for retries (milliseconds).
   */
  constructor(
    dir: string,
    ships: ShipReader,
    log: LogSink,
    alarms: Alarms,
    now: () => number = () => performance.now(),
  ) {
    this.#now = now;
    this.#dir = dir;
    this.#ships = ships;
    this.#log = log;
    this.#alarms = alarms;
  }

  /** The pier directory of `ship`. */
  pierOf(ship: bigint): string {
    return join(this.#dir, renderShip(ship));
  }

  /**
   * Asks for the piers to be brought up to the applied events soon, off the
   * caller's stack: slices of {@linkcode sync} then run on the event loop, one
   * per turn, until every pier is up to date. Cheap, and coalesced: a call
   * while a slice is pending adds nothing. The node calls it after each apply.
   */
  schedule(): void {
    if (this.#timer !== undefined || this.#closed) return;
    this.#timer = setTimeout(() => this.#slice(), 0);
  }

  /** Resolves once no slice is pending (at once when none is). */
  idle(): Promise<void> {
    if (this.#timer === undefined) return Promise.resolve();
    return new Promise((resolve) => this.#idle.push(resolve));
  }

  #slice(): void {
    this.#timer = undefined;
    let done = true;
    try {
      done = this.sync();
      this.#alarms.clear("standby");
    } catch (e) {
      // Off the node's stack now: a failure here must not become an uncaught error.
      this.#alarms.raise("standby", `sync failed: ${describeFailure(e)}`);
    } finally {
      // Yield between slices: Readies, acknowledgements and the network go first.
      if (!done && !this.#closed) this.#timer = setTimeout(() => this.#slice(), 0);
      else for (const resolve of this.#idle.splice(0)) resolve();
    }
  }

  /**
   * Runs one bounded slice: brings the piers toward their ships' applied
   * events, at most {@linkcode SLICE_EVENTS_MAX} events and
   * {@linkcode SLICE_BYTES_MAX} bytes of jobs in all, opening at most one pier.
   * Returns true when every pier it may write is up to date. A ship whose pier
   * fails gets an alarm and is skipped for {@linkcode RETRY_MS}; the others go on.
   */
  sync(): boolean {
    const now = this.#now();
    const ships = this.#ships.list();
    const budget = fullBudget();
    let done = true;
    let opened = false;
    for (let i = 0; i < ships.length; i++) {
      const at = (this.#cursor + i) % ships.length;
      const info = ships[at];
      if ((this.#retryAt.get(info.ship) ?? 0) > now) continue;
      const known = this.#open.get(info.ship);
      if (spent(budget) || (known === undefined && opened)) {
        // Out of budget: the next slice starts here.
        this.#cursor = at;
        done = false;
        break;
      }
      const key = `standby ${renderShip(info.ship)}`;
      try {
        opened ||= known === undefined;
        const s = known ?? this.#openPier(info.ship, info.fake, info.life);
        if (!s.held) this.#syncOne(info.ship, s, info.lastEve, budget);
        if (!s.held && s.verified < info.lastEve) done = false;
        if (this.#retryAt.delete(info.ship)) this.#alarms.clear(key);
      } catch (e) {
        this.#retryAt.set(info.ship, now + RETRY_MS);
        this.#alarms.raise(
          key,
          `cannot write its standby pier in ${this.#dir} (retrying every ${RETRY_MS / 1000} s): ${
            describeFailure(e)
          }`,
        );
      }
    }
    for (const [ship, s] of this.#open) {
      if (this.#ships.get(ship) === undefined) {
        s.env.close();
        this.#open.delete(ship);
        this.#log(`standby pier of ${renderShip(ship)} left in place: the ship was removed`);
      }
    }
    for (const ship of this.#retryAt.keys()) {
      if (this.#ships.get(ship) === undefined) {
        this.#retryAt.delete(ship);
        this.#alarms.clear(`standby ${renderShip(ship)}`);
      }
    }
    return done;
  }

  /** Checks or writes the pier's next events after `verified`, within `budget` (which it spends). */
  #syncOne(ship: bigint, s: Standby, lastEve: number, budget: Budget): void {
    if (s.verified >= lastEve || spent(budget)) return;
    const events = this.#ships.events(
      ship,
      s.verified + 1,
      Math.min(lastEve - s.verified, budget.events),
      budget.bytes,
    );
    // No progress would loop (a slice again and again, or hold() forever): a missing
    // event is a failure of this pier, retried later like any other.
    if (events[0]?.eve !== s.verified + 1) {
      throw new Error(
        `the node's log of ${renderShip(ship)} has no event ${s.verified + 1} (its applied ` +
          `events end at ${lastEve}); check it with 'seguro log verify ${renderShip(ship)}'`,
      );
    }
    const before = s.last;
    let wrote = false;
    s.env.writeTxn((txn) => {
      const db = eventsDb(txn);
      for (const e of events) {
        if (spent(budget)) break;
        budget.events--;
        budget.bytes -= e.job.length;
        const value = encodeEventValue(e.mug, e.job);
        if (e.eve <= s.last) {
          const stored = txn.get(db, eventKey(e.eve));
          if (stored !== undefined && sameBytes(stored, value)) {
            s.verified = e.eve;
            continue;
          }
          this.#truncate(txn, db, ship, s, e.eve - 1, "differ from the cluster's");
        }
        txn.put(db, eventKey(e.eve), value, { noOverwrite: true });
        s.last = s.verified = e.eve;
        wrote = true;
      }
    });
    // Once, then every PROGRESS_EVENTS: an operator (or a test) sees the pier follow,
    // without a line per applied batch.
    const crossed = Math.floor(s.last / PROGRESS_EVENTS) > Math.floor(before / PROGRESS_EVENTS);
    if (wrote && (!s.reported || crossed)) {
      s.reported = true;
      this.#log(`standby pier of ${renderShip(ship)} at event ${s.last}`, {
        event: "standby",
        ship: renderShip(ship),
        eve: s.last,
      });
    }
  }

  /** Deletes the pier's events above `keep`; the caller holds a write transaction. */
  #truncate(txn: Txn, db: Db, ship: bigint, s: Standby, keep: number, why: string): void {
    if (s.last <= keep) return;
    for (let eve = s.last; eve > keep; eve--) txn.del(db, eventKey(eve));
    this.#log(
      `standby pier of ${renderShip(ship)}: discarded events ${keep + 1}-${s.last}, which ${why}`,
    );
    s.last = keep;
    s.verified = Math.min(s.verified, keep);
    // A runtime snapshot taken past the discarded events no longer matches the log:
    // set it aside so vere replays from the log.
    const chk = join(s.pier, ".urb", "chk");
    try {
      Deno.renameSync(chk, `${chk}.discarded-${Date.now()}`);
      this.#log(`standby pier of ${renderShip(ship)}: set its .urb/chk snapshot aside`);
    } catch (e) {
      if (!(e instanceof Deno.errors.NotFound)) throw e;
    }
  }

  /**
   * Makes `ship`'s pier match the applied state exactly, then holds it:
   * sync leaves it alone until {@linkcode release}. Synchronous, whatever is
   * pending: the pier it returns matches the applied state when it returns.
   * Returns its directory, its last event, and the LMDB data file its
   * runtime's writes change (to watch for them).
   */
  hold(ship: bigint): { pier: string; last: number; dataFile: string } {
    const info = this.#ships.get(ship);
    if (info === undefined) throw new Error(`hold: ${renderShip(ship)} is not on the cluster`);
    const s = this.#open.get(ship) ?? this.#openPier(ship, info.fake, info.life);
    while (s.verified < info.lastEve) this.#syncOne(ship, s, info.lastEve, fullBudget());
    s.env.writeTxn((txn) => {
      this.#truncate(txn, eventsDb(txn), ship, s, info.lastEve, "the cluster never committed");
    });
    if (s.verified !== info.lastEve || s.last !== info.lastEve) {
      throw new Error(
        `hold: pier of ${renderShip(ship)} at ${s.verified}/${s.last}, cluster at ${info.lastEve}`,
      );
    }
    s.held = true;
    return { pier: s.pier, last: s.last, dataFile: join(s.epoch, "data.mdb") };
  }

  /**
   * Reads a held pier's events after `after` (at most `maxBytes` of jobs,
   * at least one event when there is one): what its runtime has written.
   */
  readHeld(ship: bigint, after: number, maxBytes: number): PierEvent[] {
    const s = this.#open.get(ship);
    if (s === undefined || !s.held) throw new Error(`readHeld: ${renderShip(ship)} is not held`);
    const out: PierEvent[] = [];
    let bytes = 0;
    s.env.readTxn((txn) => {
      for (const [key, value] of txn.entries(eventsDb(txn), { from: eventKey(after + 1) })) {
        const eve = eventOfKey(key);
        if (eve !== after + 1 + out.length) {
          throw new Error(
            `pier of ${renderShip(ship)} skips from event ${after + out.length} to ${eve}`,
          );
        }
        const { mug, job } = decodeEventValue(value, eve, s.epoch);
        out.push({ eve, mug, job });
        bytes += job.length;
        if (bytes >= maxBytes) break;
      }
    });
    return out;
  }

  /**
   * Gives a held pier back to sync once its runtime has stopped. Events its
   * runtime wrote after `committed` are checked against the cluster on the
   * next syncs (one is scheduled); those the cluster does not hold are discarded.
   */
  release(ship: bigint, committed: number): void {
    const s = this.#open.get(ship);
    if (s === undefined || !s.held) return;
    s.held = false;
    s.env.readTxn((txn) => {
      s.last = txn.stat(eventsDb(txn)).entries;
    });
    s.verified = Math.min(committed, s.last);
    const info = this.#ships.get(ship);
    if (info !== undefined && info.lastEve < s.last) {
      s.env.writeTxn((txn) => {
        this.#truncate(txn, eventsDb(txn), ship, s, info.lastEve, "the cluster never committed");
      });
    }
    this.schedule();
  }

  #openPier(ship: bigint, fake: boolean, life: number): Standby {
    const pier = this.pierOf(ship);
    Deno.mkdirSync(this.#dir, { recursive: true });
    try {
      readPierMeta(pier);
    } catch {
      // No pier yet: write one with no events, then append as events apply.
      writePier(pier, {
        meta: { version: LOG_VERSION, who: ship, fake, life },
        events: [],
        vereVersion: "4.0",
      });
      this.#log(`standby pier of ${renderShip(ship)} created at ${pier}`, {
        event: "standby_created",
        ship: renderShip(ship),
        pier,
      });
    }
    const epoch = join(pier, ".urb", "log", "0i0");
    const env = Env.open(epoch);
    let last = 0;
    let verified = 0;
    env.readTxn((txn) => {
      const db = eventsDb(txn);
      last = txn.stat(db).entries;
      // Trust the prefix when its last shared event matches; otherwise sync compares from 1.
      const top = Math.min(last, this.#ships.get(ship)?.lastEve ?? 0);
      const mine = top > 0 ? txn.get(db, eventKey(top)) : undefined;
      const theirs = top > 0 ? this.#ships.event(ship, top) : undefined;
      if (mine !== undefined && theirs !== undefined) {
        if (sameBytes(mine, encodeEventValue(theirs.mug, theirs.job))) verified = top;
      }
    });
    const s: Standby = { pier, epoch, env, last, verified, held: false, reported: false };
    this.#open.set(ship, s);
    // Events past this node's applied log can only be a runtime's that this node ran as
    // master and the cluster may never commit; if it does, sync writes them again.
    const applied = this.#ships.get(ship)?.lastEve ?? 0;
    if (last > applied) {
      env.writeTxn((txn) => {
        this.#truncate(txn, eventsDb(txn), ship, s, applied, "this node has not applied");
      });
    }
    return s;
  }

  /** Cancels any pending slice and closes the piers' environments. */
  close(): void {
    this.#closed = true;
    clearTimeout(this.#timer);
    this.#timer = undefined;
    for (const resolve of this.#idle.splice(0)) resolve();
    for (const s of this.#open.values()) s.env.close();
    this.#open.clear();
  }
}
