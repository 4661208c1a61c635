/**
 * Standby piers: on every node that runs with `--standby-dir DIR`, each ship
 * on the cluster has a pier `DIR/<ship>/` that stock vere can boot after a
 * failover, in the ship's own layout (docs/pier-formats.md): epochs 2 for
 * vere 4.x, epochs 1 for vere 3.x (log 1, vere < 3.0, is not kept: an alarm
 * says so). It holds one epoch: the newest epoch whose image (the state
 * after its base event: `image.bin`, or `north.bin` and `south.bin`, which
 * vere 3.x also needs in `.urb/chk`) of the ship's layout the cluster holds
 * complete, and every
 * event this node has applied after it, so vere loads the image and replays
 * only those events. A ship with no complete image has epoch `0i0` with its
 * whole log (a chopped ship always has one: its log starts after an image).
 * The cluster's applied state is the source; the pier is written with vere's
 * own LMDB format (vere/pier.ts, vere/lmdb.ts).
 *
 * When a newer image completes (or a chop starts the log after one), the
 * pier moves to that epoch: the image is copied out of the node's store in
 * slices, checked against its SHA-256, and becomes `image.bin` of a new
 * epoch directory that replaces the old one (the old epoch is moved out of
 * `.urb/log` first, so the log never holds two overlapping epochs). A pier
 * written before (all events in `0i0`), or one whose epoch the cluster does
 * not vouch for, is moved or rebuilt the same way.
 *
 * A pier is either a standby (this process writes it from the applied
 * state) or held (a runtime this node started writes it, and this process
 * only reads it: the tail). Invariants:
 * - a standby pier's events base+1..`verified` equal the cluster's, and its
 *   base is 0 or an epoch whose image the cluster holds complete;
 * - events above `verified` are compared before they are trusted: a pier
 *   event that differs from the cluster's, or lies beyond the cluster's log
 *   when the pier is held or released, is discarded with a log line (they are
 *   events a runtime wrote that the cluster never committed);
 * - nothing is written to a held pier.
 *
 * Writing a pier is kept off the consensus path: the node's apply only calls
 * {@linkcode StandbyPiers.schedule}, and the writes run later on the event
 * loop in bounded slices (at most {@linkcode SLICE_EVENTS_MAX} events or
 * {@linkcode SLICE_BYTES_MAX} bytes of jobs or image, one LMDB transaction
 * per pier, and at most one pier opened), each followed by a yield to the
 * event loop, so a long catch-up never delays the node's acknowledgements.
 * @module
 */

import type { LogSink } from "../cluster/log_event.ts";
import { createHash, type Hash } from "node:crypto";
import { basename, join } from "node:path";
import { sameBytes } from "../cluster/codec.ts";
import type { ImageReader } from "../cluster/images.ts";
import { makePrivateDir } from "../cluster/private_files.ts";
import type { ShipInfo, ShipReader } from "../cluster/ships.ts";
import { renderShip } from "../vere/event.ts";
import { type Alarms, describeFailure } from "./alarms.ts";
import {
  type Db,
  Env,
  eventKey,
  eventOfKey,
  LmdbError,
  MDB_NOTFOUND,
  type Txn,
} from "../vere/lmdb.ts";
import type { ShipLayout } from "../cluster/machine.ts";
import {
  checkpointDir,
  northSouthIn,
  SNAPSHOT_HEADER_BYTES,
  snapshotLayout,
  splitSnapshot,
} from "../vere/pier_layout.ts";
import {
  copySnapshot,
  decodeEventValue,
  encodeEventValue,
  type Epoch,
  exists,
  listEpochs,
  LOG_VERSION,
  logDir,
  type PierEvent,
  type PierMeta,
  readPierMeta,
  writeEpoch,
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

/** Runtime version a standby pier's epochs record in `vere.txt`, by layout. */
const VERE_VERSION: Readonly<Record<"epochs1" | "epochs2", string>> = {
  epochs1: "3.0",
  epochs2: "4.0",
};

/** Names this module gives its scratch files in a pier's `.urb` (removed when found on open). */
const SCRATCH_PREFIX = "seguro-standby-";

/** An epoch image being copied out of the store, for a move of the pier to its epoch. */
interface ImageCopy {
  /** The epoch (its base). */
  epoch: number;
  /** Its size and SHA-256 (hex) as the cluster holds it, complete. */
  size: number;
  sha256: string;
  /** The file it is copied to, in the pier's `.urb`. */
  path: string;
  file: Deno.FsFile;
  /** Bytes copied so far. */
  offset: number;
  hash: Hash;
}

interface Standby {
  pier: string;
  /** The base of the pier's one epoch: 0, or an epoch whose image the cluster holds. */
  base: number;
  /** That epoch's directory: `.urb/log/0i<base>`. */
  epoch: string;
  env: Env;
  /** The pier's last event (its events are base+1..last). */
  last: number;
  /** Events base+1..verified equal the cluster's. */
  verified: number;
  held: boolean;
  /** The epoch directory the pier was at when it was held (its runtime may roll a newer one). */
  heldEpoch: string | undefined;
  /** Whether this process has logged the pier's progress yet. */
  reported: boolean;
  /** The image being copied for a move to a newer epoch, if any. */
  copy: ImageCopy | undefined;
  /** The runtime's `play` running on the pier (a warm-up), if any: sync leaves the pier alone. */
  playing: Promise<void> | undefined;
  /** The last event of the pier when its last warm-up `play` began (its snapshot is there). */
  playedTo: number;
}

/** Options of {@linkcode StandbyPiers} besides its sources. */
export interface StandbyOptions {
  /** The clock for retries and warm-up plays (milliseconds); `performance.now` by default. */
  now?: () => number;
  /**
   * What new epochs record in `vere.txt`: the version of the runtime `--exec`
   * runs (`urbit -R`), so that it does not roll an epoch of its own on every
   * start. Default `3.0` for epochs 1 and `4.0` for epochs 2.
   */
  vereVersion?: string;
  /**
   * Warm standby: every `everyMs`, the runtime's own `play` (`argv(pier)`)
   * runs on one standby pier that grew since its last play, so that its
   * snapshot in `.urb/chk` is recent and a failover replays few events. Never
   * on a held pier, never beside a sync of the pier, one at a time.
   */
  play?: { argv: (pier: string) => string[]; everyMs: number };
}

/** What standby piers read: the applied ships and events, and the epoch images. */
export interface StandbySource {
  /** The applied ships and their events. */
  ships: ShipReader;
  /** The ships' epoch images. */
  images: ImageReader;
  /** The layout of a ship's pier, as its import recorded it (epochs 2 when none did). */
  layout(ship: bigint): ShipLayout | undefined;
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
  readonly #images: ImageReader;
  readonly #layout: (ship: bigint) => ShipLayout | undefined;
  /** The layout of each complete image seen, by `ship/epoch/sha256` (read from its first chunk). */
  readonly #imageLayouts = new Map<string, ShipLayout>();
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
  readonly #vereVersion: string | undefined;
  readonly #play: StandbyOptions["play"];
  #playTimer: ReturnType<typeof setInterval> | undefined;
  /** The warm-up play running, if any (one at a time), and its process. */
  #player: { ship: bigint; child: Deno.ChildProcess } | undefined;
  /** Ships whose piers are not to be played: this node is about to run, or runs, their runtime. */
  readonly #noPlay = new Set<bigint>();

  /**
   * Standby piers under `dir` for the ships of `source` (and their images).
   * A pier that cannot be written raises an alarm in `alarms` and is retried
   * later; it never throws into the node. `now` is the clock for retries
   * (milliseconds).
   */
  constructor(
    dir: string,
    source: StandbySource,
    log: LogSink,
    alarms: Alarms,
    options: StandbyOptions = {},
  ) {
    this.#now = options.now ?? (() => performance.now());
    this.#vereVersion = options.vereVersion;
    this.#play = options.play;
    if (this.#play !== undefined) {
      this.#playTimer = setInterval(() => this.#playOne(), this.#play.everyMs);
      Deno.unrefTimer(this.#playTimer);
    }
    this.#dir = dir;
    this.#ships = source.ships;
    this.#images = source.images;
    this.#layout = (ship) => source.layout(ship);
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
        const s = known ?? this.#openPier(info);
        // A pier being played is left alone; the play's end schedules a slice.
        const free = !s.held && s.playing === undefined;
        if (free) this.#syncOne(info, s, budget);
        if (free && !this.#current(info, s)) done = false;
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
        this.#forget(ship, s);
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

  /**
   * The epoch a standby pier of `info` is at: the newest complete image
   * between the log's start and its last event, else its start (0, or the
   * epoch a chop started the log after).
   */
  #targetBase(info: ShipInfo): number {
    const layout = this.#layoutOf(info.ship);
    let base = info.firstEve - 1;
    for (const image of this.#images.list(info.ship)) {
      if (
        image.sha256 !== undefined && image.epoch > base && image.epoch <= info.lastEve &&
        this.#imageLayout(info.ship, image.epoch, image.size, image.sha256) === layout
      ) {
        base = image.epoch;
      }
    }
    return base;
  }

  /** The layout the pier of `ship` is kept in; log 1 (vere < 3.0) is refused, naming why. */
  #layoutOf(ship: bigint): "epochs1" | "epochs2" {
    const layout = this.#layout(ship) ?? "epochs2";
    if (layout === "log1") {
      throw new Error(
        "its pier is log 1 (vere before 3.0 keeps one log), which standby piers do not keep; start it once with vere 3.x and import that pier",
      );
    }
    return layout;
  }

  /** The layout of a complete image: a north/south container's, else epochs 2. */
  #imageLayout(ship: bigint, epoch: number, size: number, sha256: string): ShipLayout {
    const key = `${ship}/${epoch}/${sha256}`;
    let layout = this.#imageLayouts.get(key);
    if (layout === undefined) {
      layout = snapshotLayout(this.#images.chunk(ship, epoch, 0) ?? new Uint8Array(0), size);
      this.#imageLayouts.set(key, layout);
    }
    return layout;
  }

  /** Whether the pier is at its epoch and holds every applied event. */
  #current(info: ShipInfo, s: Standby): boolean {
    return s.base === this.#targetBase(info) && s.verified >= info.lastEve;
  }

  /**
   * Brings the pier toward `info` within `budget` (which it spends): first
   * its move to a newer epoch, if one is due, then its events after
   * `verified`, checked or written.
   */
  #syncOne(info: ShipInfo, s: Standby, budget: Budget): void {
    const target = this.#targetBase(info);
    if (target < s.base) {
      // Only a pier opened before its ship was removed and added again gets here.
      throw new Error(
        `its pier is at epoch ${s.base}, past the newest complete image (${target}); it is rebuilt at the next try`,
      );
    }
    if (target > s.base && !this.#copyStep(info, s, target, budget)) return;
    this.#eventsStep(info.ship, s, info.lastEve, budget);
  }

  /**
   * Copies the next chunks of epoch `target`'s image into the pier, within
   * `budget`; once whole and checked, moves the pier to that epoch. Returns
   * true when the pier is at `target`.
   */
  #copyStep(info: ShipInfo, s: Standby, target: number, budget: Budget): boolean {
    const ship = info.ship;
    let copy = s.copy;
    if (copy?.epoch !== target) {
      this.#dropCopy(s);
      const image = this.#images.get(ship, target);
      if (image?.sha256 === undefined) {
        throw new Error(`the node holds no complete image of epoch ${target}`);
      }
      const path = join(s.pier, ".urb", `${SCRATCH_PREFIX}image-${target}`);
      const file = Deno.openSync(path, { write: true, create: true, truncate: true, mode: 0o600 });
      copy = {
        epoch: target,
        size: image.size,
        sha256: image.sha256,
        path,
        file,
        offset: 0,
        hash: createHash("sha256"),
      };
      s.copy = copy;
    }
    while (copy.offset < copy.size && !spent(budget)) {
      const data = this.#images.chunk(ship, target, copy.offset);
      if (data === undefined || data.length === 0) {
        throw new Error(
          `the node's image of epoch ${target} has no chunk at offset ${copy.offset}`,
        );
      }
      for (let written = 0; written < data.length;) {
        written += copy.file.writeSync(data.subarray(written));
      }
      copy.hash.update(data);
      copy.offset += data.length;
      budget.bytes -= data.length;
    }
    if (copy.offset < copy.size) return false;
    copy.file.close();
    s.copy = undefined;
    const digest = copy.hash.digest("hex");
    if (copy.offset !== copy.size || digest !== copy.sha256) {
      removeIfThere(copy.path);
      throw new Error(
        `the node's image of epoch ${target} does not match its SHA-256 (${
          digest.slice(0, 16)
        }..., recorded ${copy.sha256.slice(0, 16)}...); check it with 'seguro doctor'`,
      );
    }
    this.#moveTo(info, s, target, copy.path);
    return true;
  }

  /**
   * Replaces the pier's epoch with epoch `base`, whose image is the file
   * `image` (moved into it) and which has no events yet. The old epoch is
   * moved out of the log first: a crash leaves a log with the old epoch, or
   * none (rebuilt on open), or the new one, never two that overlap.
   */
  #moveTo(info: ShipInfo, s: Standby, base: number, image: string): void {
    const name = renderShip(info.ship);
    const aside = join(s.pier, ".urb", `${SCRATCH_PREFIX}old-${basename(s.epoch)}`);
    const layout = this.#layoutOf(info.ship);
    const split = `${image}.d`;
    try {
      s.env.close();
      removeIfThere(aside);
      let snapshot: { path: string } | { north: string; south: string } = { path: image };
      if (layout === "epochs1") {
        removeIfThere(split);
        Deno.mkdirSync(split, { mode: 0o700 });
        snapshot = splitSnapshot(image, split);
      }
      Deno.renameSync(s.epoch, aside);
      writeEpoch(s.pier, {
        meta: metaOf(info),
        events: [],
        base,
        vereVersion: this.#vereVersion ?? VERE_VERSION[layout],
        epochFormat: layout === "epochs1" ? 1 : 2,
        image: snapshot,
      });
    } catch (e) {
      // The pier is not what `s` says any more: open it again at the next try.
      this.#forget(info.ship, s);
      removeIfThere(image);
      removeIfThere(split);
      throw e;
    }
    removeIfThere(aside);
    removeIfThere(split);
    s.base = base;
    s.epoch = join(logDir(s.pier), `0i${base}`);
    s.env = Env.open(s.epoch);
    s.last = s.verified = base;
    s.reported = false; // its next write says how far the moved pier is
    // A runtime snapshot may be older than the new epoch, whose events are not in the log.
    const chk = checkpointDir(s.pier);
    if (removeContents(chk)) {
      this.#log(
        `standby pier of ${name}: removed its .urb/chk snapshot (the epoch's image replaces it)`,
      );
    }
    // vere 3.x loads the state from .urb/chk, never from the epoch: put the epoch's there.
    if (layout === "epochs1") copySnapshot(s.epoch, chk);
    this.#log(
      `standby pier of ${name} moved to epoch ${base}: its image and the events after it (vere replays from event ${
        base + 1
      })`,
      { event: "standby_epoch", ship: name, epoch: base },
    );
  }

  /** Checks or writes the pier's next events after `verified`, within `budget` (which it spends). */
  #eventsStep(ship: bigint, s: Standby, lastEve: number, budget: Budget): void {
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
    if (keep < s.base) {
      throw new Error(
        `invariant: pier of ${renderShip(ship)} cut to event ${keep}, below its epoch ${s.base}`,
      );
    }
    for (let eve = s.last; eve > keep; eve--) txn.del(db, eventKey(eve));
    this.#log(
      `standby pier of ${renderShip(ship)}: discarded events ${keep + 1}-${s.last}, which ${why}`,
    );
    s.last = keep;
    s.verified = Math.min(s.verified, keep);
    // A runtime snapshot taken past the discarded events no longer matches the log:
    // set it aside so vere replays from the log.
    const chk = checkpointDir(s.pier);
    if (exists(chk)) {
      // Only the newest is kept: a real one is the size of the loom (tens of MB) per failover.
      const urb = join(s.pier, ".urb");
      for (const entry of Deno.readDirSync(urb)) {
        if (entry.name.startsWith("chk.discarded-")) removeIfThere(join(urb, entry.name));
      }
      const aside = `${chk}.discarded-${Date.now()}`;
      Deno.renameSync(chk, aside);
      this.#log(`standby pier of ${renderShip(ship)}: set its .urb/chk snapshot aside (${aside})`);
    }
    s.playedTo = Math.min(s.playedTo, keep);
    // vere 3.x boots an epoch after 0 only from .urb/chk: the epoch's own snapshot goes there.
    if (s.base > 0 && northSouthIn(s.epoch) !== undefined) copySnapshot(s.epoch, chk);
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
    const s = this.#open.get(ship) ?? this.#openPier(info);
    if (s.playing !== undefined) {
      throw new Error(`invariant: hold of ${renderShip(ship)} while its pier is played`);
    }
    // Whatever the slices have not done yet, a move to a newer epoch included.
    while (!this.#current(info, s)) this.#syncOne(info, s, fullBudget());
    s.env.writeTxn((txn) => {
      this.#truncate(txn, eventsDb(txn), ship, s, info.lastEve, "the cluster never committed");
    });
    if (s.verified !== info.lastEve || s.last !== info.lastEve || s.copy !== undefined) {
      throw new Error(
        `hold: pier of ${renderShip(ship)} at ${s.verified}/${s.last}, cluster at ${info.lastEve}`,
      );
    }
    s.held = true;
    s.heldEpoch = s.epoch;
    return { pier: s.pier, last: s.last, dataFile: join(s.epoch, "data.mdb") };
  }

  /**
   * Reads a held pier's events after `after` (at most `maxBytes` of jobs,
   * at least one event when there is one): what its runtime has written.
   * When its runtime rolled a new epoch (vere 3.x and 4.x do at start when
   * `vere.txt` names another version) and the current one is read to its
   * end, the reads go on in the new one.
   */
  readHeld(ship: bigint, after: number, maxBytes: number): PierEvent[] {
    const s = this.#open.get(ship);
    if (s === undefined || !s.held) throw new Error(`readHeld: ${renderShip(ship)} is not held`);
    const out = this.#readEpoch(s, ship, after, maxBytes);
    if (out.length > 0) return out;
    const newest = listEpochs(s.pier).at(-1);
    if (newest === undefined || newest.dir === s.epoch || newest.base > after) return out;
    // vere makes the directory, then its files, then the LMDB env last: not before that.
    if (!exists(join(newest.dir, "data.mdb"))) return out;
    s.env.close();
    s.base = newest.base;
    s.epoch = newest.dir;
    s.env = Env.open(newest.dir);
    this.#log(
      `${renderShip(ship)}: its runtime rolled epoch ${newest.base}; the tail reads it from event ${
        after + 1
      }`,
    );
    return this.#readEpoch(s, ship, after, maxBytes);
  }

  #readEpoch(s: Standby, ship: bigint, after: number, maxBytes: number): PierEvent[] {
    const out: PierEvent[] = [];
    let bytes = 0;
    s.env.readTxn((txn) => {
      let db: Db;
      try {
        db = eventsDb(txn);
      } catch (e) {
        // A freshly rolled epoch has no EVENTS until vere writes its first event.
        if (e instanceof LmdbError && e.code === MDB_NOTFOUND) return;
        throw e;
      }
      for (const [key, value] of txn.entries(db, { from: eventKey(after + 1) })) {
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
    const newest = listEpochs(s.pier).at(-1);
    if (newest?.dir !== s.heldEpoch) {
      // Its runtime started an epoch of its own (vere rolls one over on an upgrade):
      // open the pier again, which checks that epoch or writes a new log.
      this.#forget(ship, s);
      this.#log(
        `standby pier of ${renderShip(ship)}: its runtime left epoch ${
          newest?.base ?? "none"
        }; the pier is checked again`,
      );
      this.schedule();
      return;
    }
    s.env.readTxn((txn) => {
      s.last = s.base + txn.stat(eventsDb(txn)).entries;
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

  /**
   * Opens `info`'s pier, writing a new one (epoch 0, no events) when there is
   * none. Leftovers of a move cut short are removed; a pier whose epoch the
   * cluster does not vouch for gets a new log; epochs older than its newest
   * are removed (the newest one's image stands for them).
   */
  #openPier(info: ShipInfo): Standby {
    const ship = info.ship;
    const name = renderShip(ship);
    const pier = this.pierOf(ship);
    makePrivateDir(this.#dir); // piers hold their ships' keys
    try {
      readPierMeta(pier);
    } catch {
      // No pier yet: write one with no events, then append as events apply.
      this.#writeLog(info, pier);
      this.#log(`standby pier of ${name} created at ${pier}`, {
        event: "standby_created",
        ship: name,
        pier,
      });
    }
    removeScratch(pier);
    let epochs = listEpochs(pier);
    const newest = epochs.at(-1);
    const distrust = newest === undefined ? "its log has no epoch" : this.#distrust(info, newest);
    if (distrust !== undefined) {
      const log = logDir(pier);
      const aside = join(pier, ".urb", `${SCRATCH_PREFIX}old-log`);
      Deno.renameSync(log, aside);
      this.#writeLog(info, pier);
      removeIfThere(aside);
      this.#log(`standby pier of ${name}: wrote a new log (${distrust})`);
      epochs = listEpochs(pier);
    }
    const current = epochs[epochs.length - 1];
    for (const older of epochs.slice(0, -1)) {
      const aside = join(pier, ".urb", `${SCRATCH_PREFIX}old-${basename(older.dir)}`);
      Deno.renameSync(older.dir, aside);
      removeIfThere(aside);
    }
    const base = current.base;
    const env = Env.open(current.dir);
    let last = base;
    let verified = base;
    env.readTxn((txn) => {
      const db = eventsDb(txn);
      last = base + txn.stat(db).entries;
      // Trust the prefix when its last shared event matches; otherwise sync compares from base+1.
      const top = Math.min(last, info.lastEve);
      const mine = top > base ? txn.get(db, eventKey(top)) : undefined;
      const theirs = top > base ? this.#ships.event(ship, top) : undefined;
      if (mine !== undefined && theirs !== undefined) {
        if (sameBytes(mine, encodeEventValue(theirs.mug, theirs.job))) verified = top;
      }
    });
    const s: Standby = {
      pier,
      base,
      epoch: current.dir,
      env,
      last,
      verified,
      held: false,
      heldEpoch: undefined,
      reported: false,
      copy: undefined,
      playing: undefined,
      playedTo: last,
    };
    this.#open.set(ship, s);
    // Events past this node's applied log can only be a runtime's that this node ran as
    // master and the cluster may never commit; if it does, sync writes them again.
    if (last > info.lastEve) {
      env.writeTxn((txn) => {
        this.#truncate(txn, eventsDb(txn), ship, s, info.lastEve, "this node has not applied");
      });
    }
    return s;
  }

  /** Writes a new log with no events (epoch 0) into `pier`, in the ship's layout. */
  #writeLog(info: ShipInfo, pier: string): void {
    const layout = this.#layoutOf(info.ship);
    const vereVersion = this.#vereVersion ?? VERE_VERSION[layout];
    writePier(pier, { meta: metaOf(info), events: [], vereVersion, layout });
  }

  /**
   * Why the pier's epoch `epoch` cannot be trusted for `info`, or undefined:
   * epoch 0 always can (its events are compared); a later one only when the
   * cluster holds its image complete, with the size of the pier's image.bin,
   * and the log starts at or before it and reaches it.
   */
  #distrust(info: ShipInfo, epoch: Epoch): string | undefined {
    const layout = this.#layoutOf(info.ship);
    let format = "";
    try {
      format = Deno.readTextFileSync(join(epoch.dir, "epoc.txt")).trim();
    } catch (e) {
      if (!(e instanceof Deno.errors.NotFound)) throw e;
    }
    const want = layout === "epochs1" ? "1" : "2";
    if (format !== want) {
      return `its epoch ${epoch.base} has format '${format}', and the ship's pier is ${layout} (format ${want})`;
    }
    if (epoch.base === 0) return undefined;
    const image = this.#images.get(info.ship, epoch.base);
    if (image?.sha256 === undefined) {
      return `its epoch ${epoch.base} has no complete image on the cluster`;
    }
    if (epoch.base < info.firstEve - 1 || epoch.base > info.lastEve) {
      return `its epoch ${epoch.base} is outside the log, events ${info.firstEve}-${info.lastEve}`;
    }
    if (this.#imageLayout(info.ship, epoch.base, image.size, image.sha256) !== layout) {
      return `the cluster's image of its epoch ${epoch.base} is not ${layout}`;
    }
    const files = layout === "epochs1" ? ["north.bin", "south.bin"] : ["image.bin"];
    let size = layout === "epochs1" ? SNAPSHOT_HEADER_BYTES : 0;
    for (const file of files) {
      try {
        size += Deno.statSync(join(epoch.dir, file)).size;
      } catch (e) {
        if (!(e instanceof Deno.errors.NotFound)) throw e;
        size = -1;
        break;
      }
    }
    if (size !== image.size) {
      return `its epoch ${epoch.base}'s ${files.join(" and ")} are not the cluster's image`;
    }
    return undefined;
  }

  /** Stops tracking a pier (its ship was removed, or it must be opened again). */
  #forget(ship: bigint, s: Standby): void {
    this.#dropCopy(s);
    s.env.close();
    if (this.#open.get(ship) === s) this.#open.delete(ship);
  }

  /** Abandons an image copy in progress. */
  #dropCopy(s: Standby): void {
    if (s.copy === undefined) return;
    try {
      s.copy.file.close();
    } catch { /* closed already */ }
    removeIfThere(s.copy.path);
    s.copy = undefined;
  }

  /**
   * Stops any warm-up play of `ship`'s pier and keeps new ones off it until
   * {@linkcode allowPlay}: its runtime is about to start on it. Resolves once
   * no play runs.
   */
  async stopPlay(ship: bigint): Promise<void> {
    this.#noPlay.add(ship);
    const s = this.#open.get(ship);
    if (this.#player?.ship === ship) this.#killPlay();
    await s?.playing;
  }

  /** Lets warm-up plays of `ship`'s pier run again (this node runs no runtime of it now). */
  allowPlay(ship: bigint): void {
    this.#noPlay.delete(ship);
  }

  #killPlay(): void {
    try {
      this.#player?.child.kill("SIGKILL");
    } catch {
      // exited already
    }
  }

  /** Starts the runtime's `play` on the next pier that grew since its last play, if none runs. */
  #playOne(): void {
    if (this.#player !== undefined || this.#closed || this.#play === undefined) return;
    for (const [ship, s] of this.#open) {
      const info = this.#ships.get(ship);
      if (
        info === undefined || s.held || s.copy !== undefined || this.#noPlay.has(ship) ||
        s.base !== this.#targetBase(info) || s.last <= s.playedTo ||
        // Without a snapshot vere would replay from event 1 (a boot, minutes), and hold the
        // one play slot all that time: a pier is warmed only from a snapshot.
        !(exists(join(checkpointDir(s.pier), "north.bin")) ||
          exists(join(checkpointDir(s.pier), "image.bin")))
      ) continue;
      this.#startPlay(ship, s);
      return;
    }
  }

  #startPlay(ship: bigint, s: Standby): void {
    const name = renderShip(ship);
    const [cmd, ...args] = this.#play!.argv(s.pier);
    const to = s.last;
    const started = this.#now();
    let child: Deno.ChildProcess;
    try {
      child = new Deno.Command(cmd, { args, stdin: "null", stdout: "piped", stderr: "piped" })
        .spawn();
    } catch (e) {
      this.#log(`standby pier of ${name}: cannot run its warm-up play: ${describeFailure(e)}`);
      s.playedTo = to; // not again until it grows
      return;
    }
    this.#player = { ship, child };
    s.playing = child.output().then((out) => {
      this.#player = undefined;
      s.playing = undefined;
      const seconds = ((this.#now() - started) / 1000).toFixed(1);
      if (out.success) {
        s.playedTo = to;
        this.#log(
          `standby pier of ${name}: warm-up play to event ${to} in ${seconds} s (its snapshot is there)`,
          { event: "standby_play", ship: name, eve: to },
        );
      } else {
        const said = new TextDecoder().decode(out.stderr).trim().split("\n").slice(-3).join(" / ");
        this.#log(
          `standby pier of ${name}: warm-up play stopped (exit ${out.code}) after ${seconds} s: ${said}`,
        );
        if (out.signal === null) s.playedTo = to; // a failure, not a stop: not again until it grows
      }
      this.schedule();
    }).catch((e) => {
      this.#player = undefined;
      s.playing = undefined;
      this.#log(`standby pier of ${name}: warm-up play failed: ${describeFailure(e)}`);
    });
  }

  /** Cancels any pending slice and closes the piers' environments. */
  close(): void {
    this.#closed = true;
    clearTimeout(this.#timer);
    this.#timer = undefined;
    clearInterval(this.#playTimer);
    this.#killPlay();
    for (const resolve of this.#idle.splice(0)) resolve();
    for (const [ship, s] of [...this.#open]) this.#forget(ship, s);
    this.#open.clear();
  }
}

/** The META of `info`'s pier. */
function metaOf(info: ShipInfo): PierMeta {
  return { version: LOG_VERSION, who: info.ship, fake: info.fake, life: info.life };
}

/** Removes a file or directory tree; one already gone is fine. */
function removeIfThere(path: string): void {
  try {
    Deno.removeSync(path, { recursive: true });
  } catch (e) {
    if (!(e instanceof Deno.errors.NotFound)) throw e;
  }
}

/** Empties a directory; returns whether it held anything. */
function removeContents(dir: string): boolean {
  let entries: Deno.DirEntry[];
  try {
    entries = [...Deno.readDirSync(dir)];
  } catch (e) {
    if (e instanceof Deno.errors.NotFound) return false;
    throw e;
  }
  for (const entry of entries) removeIfThere(join(dir, entry.name));
  return entries.length > 0;
}

/** Removes what a move cut short left in a pier: scratch files in `.urb`, half-built epochs. */
function removeScratch(pier: string): void {
  const urb = join(pier, ".urb");
  for (const entry of Deno.readDirSync(urb)) {
    if (entry.name.startsWith(SCRATCH_PREFIX)) removeIfThere(join(urb, entry.name));
  }
  // vere/pier.ts builds an epoch in `tmp-0i<N>-<pid>` and renames it; a crash leaves it.
  for (const entry of Deno.readDirSync(logDir(pier))) {
    if (/^tmp-0i[0-9]+-[0-9]+$/.test(entry.name)) removeIfThere(join(logDir(pier), entry.name));
  }
}
