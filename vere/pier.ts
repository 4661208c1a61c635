/**
 * Vere piers on disk (pkg/vere/disk.c, vere 3.x/4.x): reading their
 * metadata and event log, and writing a fresh pier stock vere can boot.
 *
 * ```
 * <pier>/.vere.lock          PID of the running vere (fcntl lock on byte 0)
 * <pier>/.urb/log/           LMDB env: META only
 * <pier>/.urb/log/0i<N>/     one epoch: LMDB env with META and EVENTS (events
 *                            N+1 onward), epoc.txt "2", vere.txt, image.bin
 * ```
 *
 * `EVENTS` maps event number (u64 LE) to a 4-byte LE mug then the jam of the
 * job ({@linkcode encodeEventValue}, {@linkcode decodeEventValue}). `META`
 * holds `version`, `who`, `fake`, `life` as LE integers with trailing zero
 * bytes stripped. Everything here is bytes: no noun is decoded.
 *
 * An LMDB env may be open at most once per process: do not call these
 * functions on an env this process already holds open with {@linkcode Env}.
 *
 * @example
 * ```ts
 *
 * for (const { eve, mug, job } of readEvents("/piers/zod", { from: 100 })) {
 *   console.log(eve, mug.toString(16), job.length);
 * }
 * ```
 * @module
 */

import { join } from "node:path";
import { Env, eventKey, eventOfKey, openLmdb } from "./lmdb.ts";

/** Modes of a pier's directories and files: its log holds the ship's keys. */
const PRIVATE_DIR_MODE = 0o700;
const PRIVATE_FILE_MODE = 0o600;

/** A pier that is malformed, inconsistent, or not in a state for the operation asked. */
export class PierError extends Error {
  /** Creates a pier error. */
  constructor(message: string) {
    super(message);
    this.name = "PierError";
  }
}

/** `U3D_VERLAT`: the log (META `version`) of vere's epoch system. */
export const LOG_VERSION = 3;
/** `U3E_VERLAT`: what `epoc.txt` says (`image.bin` snapshots). */
export const EPOCH_VERSION = 2;
/** Events per LMDB transaction when reading or writing, unless told otherwise. */
export const BATCH_EVENTS_DEFAULT = 1_000;
const BATCH_EVENTS_MAX = 1_000_000;

/** A ship's metadata, as vere's `u3_meta`. */
export interface PierMeta {
  /** Log format version (`U3D_VER*`; 3 since vere 3.0). */
  version: number;
  /** The ship, as an atom (`~zod` is `0n`; at most 128 bits). */
  who: bigint;
  /** True for a fake (development) ship: vere's `fak_o == c3y`, stored empty. */
  fake: boolean;
  /** How many of the first events are boot formulas. */
  life: number;
}

/** One logged event. */
export interface PierEvent {
  /** The event number, from 1. */
  eve: number;
  /** The mug of the job, as stored (u32). */
  mug: number;
  /** The jam of the job (`[now ovum]` or a boot formula). */
  job: Uint8Array;
}

/** Bytes of the mug that precedes the job in an `EVENTS` value. */
export const EVENT_MUG_BYTES = 4;

/**
 * The `EVENTS` value of an event, as vere stores it (`u3_lmdb_save`): the mug
 * as 4 bytes little-endian, then the jam of the job.
 */
export function encodeEventValue(mug: number, job: Uint8Array): Uint8Array {
  if (!Number.isInteger(mug) || mug < 0 || mug > 0xffffffff) {
    throw new PierError(`The mug ${mug} is not a u32; give the mug of the job`);
  }
  const value = new Uint8Array(EVENT_MUG_BYTES + job.length);
  new DataView(value.buffer).setUint32(0, mug, true);
  value.set(job, EVENT_MUG_BYTES);
  return value;
}

/**
 * The mug and job of an `EVENTS` value (the job is a view of `value`, not a
 * copy). A value shorter than its mug is a `PierError` naming event `eve` of `where`.
 */
export function decodeEventValue(
  value: Uint8Array,
  eve: number,
  where: string,
): { mug: number; job: Uint8Array } {
  if (value.length < EVENT_MUG_BYTES) {
    throw new PierError(`Event ${eve} in ${where} is shorter than its 4-byte mug`);
  }
  const mug = new DataView(value.buffer, value.byteOffset, EVENT_MUG_BYTES).getUint32(0, true);
  return { mug, job: value.subarray(EVENT_MUG_BYTES) };
}

/** One epoch directory of a pier's log. */
export interface Epoch {
  /** Absolute or pier-relative path of `.urb/log/0i<base>`. */
  dir: string;
  /** The `N` of `0i<N>`: the epoch holds events `N + 1` onward. */
  base: number;
  /**
   * Whether the epoch has its snapshot (the state after event `base`):
   * `image.bin` (epochs 2), or `north.bin` and `south.bin` (epochs 1).
   */
  hasImage: boolean;
}

/** A snapshot to write: bytes or a file (an `image.bin`), or north/south files, moved into place. */
export type SnapshotFiles = Uint8Array | { path: string } | { north: string; south: string };

/** The path of a pier's log directory, `.urb/log`. */
export function logDir(pierDir: string): string {
  return join(pierDir, ".urb", "log");
}

const decoder = new TextDecoder();
const encoder = new TextEncoder();

function littleEndian(bytes: Uint8Array, maxBytes: number): bigint {
  let value = 0n;
  for (let i = Math.min(bytes.length, maxBytes) - 1; i >= 0; i--) {
    value = (value << 8n) | BigInt(bytes[i]);
  }
  return value;
}

/** The bytes vere stores for an atom: little-endian, trailing zero bytes stripped. */
export function metaBytes(value: bigint): Uint8Array {
  if (value < 0n) throw new PierError(`The META value ${value} is negative; store an atom`);
  const out: number[] = [];
  for (let rest = value; rest > 0n; rest >>= 8n) out.push(Number(rest & 0xffn));
  return Uint8Array.from(out);
}

/**
 * Reads `META` of an env (a pier's `.urb/log` or an epoch), decoding it as
 * vere's `u3_disk_read_meta` does, and refusing what vere refuses.
 */
export function readMeta(env: Env): PierMeta {
  const raw = env.readTxn((txn) => {
    const meta = txn.openDb("META");
    const value = (key: string) => txn.get(meta, encoder.encode(key));
    return {
      version: value("version"),
      who: value("who"),
      fake: value("fake"),
      life: value("life"),
    };
  });
  for (const [key, value] of Object.entries(raw)) {
    if (value === undefined) {
      throw new PierError(`The META of ${env.dir} has no ${key}; it is not a vere log`);
    }
  }
  const version = raw.version![0] ?? 0;
  if (version > LOG_VERSION) {
    throw new PierError(
      `The log ${env.dir} has version ${version}, newer than ${LOG_VERSION}; update Seguro`,
    );
  }
  const fakeBytes = raw.fake!;
  if (fakeBytes.length > 1 && fakeBytes[0] >> 1 !== 0) {
    throw new PierError(`The META fake bit of ${env.dir} is invalid; the log is damaged`);
  }
  // c3y (0, stored empty) is "yes, fake".
  const fake = fakeBytes.length === 0 || (fakeBytes[0] & 1) === 0;
  const life = Number(littleEndian(raw.life!, 4));
  if (life >= 2 ** 31) {
    throw new PierError(`The META life ${life} of ${env.dir} is not a direct atom; it is damaged`);
  }
  return { version, who: littleEndian(raw.who!, 16), fake, life };
}

/** Throws a PierError unless `pierDir` is a directory holding `.urb/log`. */
function assertPierDir(pierDir: string): void {
  let isDirectory = false;
  try {
    isDirectory = Deno.statSync(pierDir).isDirectory;
  } catch (error) {
    if (error instanceof Deno.errors.NotFound) {
      throw new PierError("no such directory; give the directory of a vere pier");
    }
    if (!(error instanceof Deno.errors.NotADirectory)) throw error;
  }
  if (!isDirectory) {
    throw new PierError(
      "not a directory; a pier is the directory that holds .urb/log (give that directory)",
    );
  }
  if (!exists(logDir(pierDir))) {
    throw new PierError("no .urb/log here, so not a vere pier; give the directory of one");
  }
}

/** Reads the top-level `META` of a pier (`.urb/log`), opened read-only. */
export function readPierMeta(pierDir: string): PierMeta {
  assertPierDir(pierDir);
  const env = Env.open(logDir(pierDir), { readOnly: true });
  try {
    return readMeta(env);
  } finally {
    env.close();
  }
}

/** Writes `META` into a writable env, as vere's `u3_disk_save_meta` stores it. */
export function writeMeta(env: Env, meta: PierMeta): void {
  if (meta.who < 0n || meta.who >= 1n << 128n) {
    throw new PierError(`The ship ${meta.who} is not a 128-bit atom; give a valid @p`);
  }
  if (!Number.isInteger(meta.life) || meta.life < 0 || meta.life >= 2 ** 31) {
    throw new PierError(`The life ${meta.life} is not a 31-bit count; give the boot formula count`);
  }
  if (!Number.isInteger(meta.version) || meta.version < 1 || meta.version > LOG_VERSION) {
    throw new PierError(`The log version ${meta.version} is unknown; use ${LOG_VERSION}`);
  }
  const entries: [string, Uint8Array][] = [
    ["version", metaBytes(BigInt(meta.version))],
    ["who", metaBytes(meta.who)],
    ["fake", metaBytes(meta.fake ? 0n : 1n)],
    ["life", metaBytes(BigInt(meta.life))],
  ];
  env.writeTxn((txn) => {
    const db = txn.openDb("META", { create: true });
    for (const [key, value] of entries) txn.put(db, encoder.encode(key), value);
  });
}

const EPOCH_NAME = /^0i([0-9]+)$/;

/** The epochs of a pier's log, sorted by base; empty when it has none. */
export function listEpochs(pierDir: string): Epoch[] {
  const log = logDir(pierDir);
  const epochs: Epoch[] = [];
  let entries: Deno.DirEntry[];
  try {
    entries = [...Deno.readDirSync(log)];
  } catch (error) {
    if (error instanceof Deno.errors.NotFound) {
      throw new PierError(`${pierDir} has no .urb/log; give the directory of a vere pier`);
    }
    throw error;
  }
  for (const entry of entries) {
    const match = EPOCH_NAME.exec(entry.name);
    if (!entry.isDirectory || match === null) continue;
    const base = Number(match[1]);
    if (!Number.isSafeInteger(base)) {
      throw new PierError(`The epoch ${entry.name} is beyond 2^53 events; Seguro cannot read it`);
    }
    const dir = join(log, entry.name);
    const hasImage = exists(join(dir, "image.bin")) ||
      (exists(join(dir, "north.bin")) && exists(join(dir, "south.bin")));
    epochs.push({ dir, base, hasImage });
  }
  epochs.sort((a, b) => a.base - b.base);
  for (let i = 1; i < epochs.length; i++) {
    if (epochs[i].base === epochs[i - 1].base) {
      throw new PierError(`${log} has two directories for epoch ${epochs[i].base}; remove one`);
    }
  }
  return epochs;
}

/**
 * Where a pier's events are: its epochs, or for a log-1 pier (vere < 3.0,
 * META `version` 1, no epochs) the one log `.urb/log` itself, as base 0.
 */
export function logSegments(pierDir: string): Epoch[] {
  const epochs = listEpochs(pierDir);
  if (epochs.length > 0) return epochs;
  const env = Env.open(logDir(pierDir), { readOnly: true });
  try {
    if (readMeta(env).version !== 1) return [];
  } finally {
    env.close();
  }
  return [{ dir: logDir(pierDir), base: 0, hasImage: false }];
}

/** Whether `path` exists (any other error than its absence is thrown). */
export function exists(path: string): boolean {
  try {
    Deno.statSync(path);
    return true;
  } catch (error) {
    if (error instanceof Deno.errors.NotFound) return false;
    throw error;
  }
}

/** Options of {@linkcode readEvents}. */
export interface ReadEventsOptions {
  /** First event to yield; default the first event of the oldest epoch. */
  from?: number;
  /** Events read per read transaction (a short one, so a live vere can reuse pages). */
  batchEvents?: number;
}

/**
 * Yields every event of the pier from `from` on, epoch by epoch, opening each
 * epoch read-only. Events must be contiguous within and across epochs (epoch
 * `0i<N>` starts at `N + 1`); the first missing event is a `PierError`. When
 * `from` is older than the oldest epoch (chopped away), that is an error too.
 */
export function* readEvents(
  pierDir: string,
  options: ReadEventsOptions = {},
): Generator<PierEvent> {
  const batchEvents = options.batchEvents ?? BATCH_EVENTS_DEFAULT;
  checkBatch(batchEvents);
  const epochs = logSegments(pierDir);
  if (epochs.length === 0) return;
  let next = options.from ?? epochs[0].base + 1;
  if (!Number.isSafeInteger(next) || next < 1) {
    throw new PierError(`The first event ${next} is not a positive integer; events start at 1`);
  }
  if (next <= epochs[0].base) {
    throw new PierError(
      `Event ${next} is no longer in ${pierDir}: its oldest epoch starts at ` +
        `${epochs[0].base + 1}; read from there`,
    );
  }
  for (let i = 0; i < epochs.length; i++) {
    const epoch = epochs[i];
    const end = i + 1 < epochs.length ? epochs[i + 1].base : Infinity;
    // The epoch holding `next` is the last with base < next.
    if (next > end) continue;
    if (next <= epoch.base) {
      throw new PierError(
        `Epoch 0i${epoch.base} of ${pierDir} starts after event ${next}, which no epoch holds; ` +
          "the log has a gap",
      );
    }
    const env = Env.open(epoch.dir, { readOnly: true });
    try {
      for (;;) {
        const batch = env.readTxn((txn) => {
          const out: PierEvent[] = [];
          const db = txn.openDb("EVENTS", { integerKey: true });
          for (const [key, value] of txn.entries(db, { from: eventKey(next) })) {
            const eve = eventOfKey(key);
            if (eve !== next + out.length) {
              throw new PierError(
                `Event ${next + out.length} is missing from epoch 0i${epoch.base} of ${pierDir} ` +
                  `(the next is ${eve}); the log has a gap`,
              );
            }
            out.push({ eve, ...decodeEventValue(value, eve, epoch.dir) });
            if (out.length === batchEvents) break;
          }
          return out;
        });
        yield* batch;
        next += batch.length;
        if (batch.length < batchEvents) break;
      }
    } finally {
      env.close();
    }
    if (i + 1 < epochs.length && next > end + 1) {
      throw new PierError(
        `Epoch 0i${epoch.base} of ${pierDir} runs to event ${next - 1}, past the start ` +
          `${end + 1} of epoch 0i${end}; the log overlaps itself`,
      );
    }
    if (i + 1 < epochs.length && next !== end + 1) {
      throw new PierError(
        `Event ${next} is missing from ${pierDir}: epoch 0i${epoch.base} does not hold it ` +
          `and the next epoch is 0i${end}; the log has a gap`,
      );
    }
  }
}

/**
 * Whether a vere process holds the pier: `.vere.lock` names a PID and that
 * process is alive. This cannot test vere's fcntl lock itself (reading it
 * from here would need `F_GETLK`), so a stale file whose PID was reused by
 * another process reads as locked; an absent, empty or corrupt file as not.
 */
export function isPierLocked(pierDir: string): boolean {
  let text: string;
  try {
    text = Deno.readTextFileSync(join(pierDir, ".vere.lock"));
  } catch (error) {
    // NotADirectory: `pierDir` is a file, which readPierMeta then refuses.
    if (error instanceof Deno.errors.NotFound || error instanceof Deno.errors.NotADirectory) {
      return false;
    }
    throw error;
  }
  const match = /^([0-9]+)\n/.exec(text);
  if (match === null) return false;
  const pid = Number(match[1]);
  if (!Number.isSafeInteger(pid) || pid <= 0 || pid >= 2 ** 31) return false;
  return processAlive(pid);
}

function processAlive(pid: number): boolean {
  try {
    // Signal 0 (untyped in Deno's d.ts, accepted at runtime): kill(2) checks
    // existence and permission without sending anything.
    Deno.kill(pid, 0 as unknown as Deno.Signal);
    return true;
  } catch (error) {
    // EPERM: the process exists but belongs to someone else.
    if (error instanceof Deno.errors.PermissionDenied) return true;
    if (error instanceof Deno.errors.NotFound) return false;
    if (error instanceof Error && /ESRCH|No such process/i.test(error.message)) return false;
    throw error;
  }
}

/** Options of {@linkcode writeEpoch}. */
export interface WriteEpochOptions {
  /** The ship's metadata, also stored in the epoch as vere's rollover does. */
  meta: PierMeta;
  /** The epoch's events, numbered `base + 1`, `base + 2`, ... */
  events: Iterable<PierEvent>;
  /** The `N` of `0i<N>`. */
  base: number;
  /** Runtime version for `vere.txt`, e.g. `"4.0"`. */
  vereVersion: string;
  /**
   * The snapshot after event `base`; vere needs it when `base > 0`. Bytes or a
   * file for `image.bin` (epoch format 2), or `north.bin`/`south.bin` files
   * (format 1); files must be on the same file system: they are moved.
   */
  image?: SnapshotFiles;
  /** `epoc.txt`: 2 (vere 4.x, the default) or 1 (vere 3.x). */
  epochFormat?: 1 | 2;
  /** Events per write transaction. Default {@linkcode BATCH_EVENTS_DEFAULT}. */
  batchEvents?: number;
}

/** One epoch of a pier being written by {@linkcode writePier}. */
export interface EpochContent {
  /** The `N` of `0i<N>`. */
  base: number;
  /** Its events, numbered `base + 1` onward. */
  events: Iterable<PierEvent>;
  /** Its snapshot; see {@linkcode WriteEpochOptions.image}. */
  image?: SnapshotFiles;
}

/** Options of {@linkcode writePier}. */
export interface WritePierOptions {
  /** The ship's metadata (`version` is normally {@linkcode LOG_VERSION}). */
  meta: PierMeta;
  /** The events, numbered `epochBase + 1` onward (unless `epochs` is given). */
  events?: Iterable<PierEvent>;
  /** The base of the pier's one epoch. Default 0. */
  epochBase?: number;
  /** Runtime version for `vere.txt`, e.g. `"4.0"`. */
  vereVersion: string;
  /** The snapshot after event `epochBase`; see {@linkcode WriteEpochOptions.image}. */
  image?: SnapshotFiles;
  /** Several epochs instead of `events`/`epochBase`/`image`, in ascending base order. */
  epochs?: EpochContent[];
  /**
   * The layout (docs/pier-formats.md): `epochs2` (the default, vere 4.x),
   * `epochs1` (vere 3.x) or `log1` (vere < 3.0: one log from event 1 in
   * `.urb/log` with META `version` 1, its one snapshot, north/south files
   * given as the only epoch's `image`, in `.urb/chk`).
   */
  layout?: "log1" | "epochs1" | "epochs2";
  /** Events per write transaction. Default {@linkcode BATCH_EVENTS_DEFAULT}. */
  batchEvents?: number;
}

/**
 * Writes a new pier that stock vere can boot: `.urb/log` (META) holding one
 * epoch `0i<epochBase>` (META, EVENTS, epoc.txt, vere.txt, image.bin when
 * given), or the `epochs` given. The log is built
 * in a temporary directory, fsynced, renamed into place and the parent
 * fsynced, so a crash leaves either no log or a whole one. `pierDir` may
 * exist but must have no `.urb/log`.
 */
export function writePier(pierDir: string, options: WritePierOptions): void {
  const { meta, epochBase = 0 } = options;
  const urb = join(pierDir, ".urb");
  const log = join(urb, "log");
  if (isPierLocked(pierDir)) {
    throw new PierError(`${pierDir} is in use by a running vere; stop it before writing its log`);
  }
  if (exists(log)) {
    throw new PierError(`${pierDir} already has a log; write the pier into a new directory`);
  }
  Deno.mkdirSync(join(urb, "chk"), { recursive: true, mode: PRIVATE_DIR_MODE });
  // The log holds the ship's keys: the pier is its owner's alone, however it was created.
  Deno.chmodSync(pierDir, PRIVATE_DIR_MODE);
  Deno.chmodSync(urb, PRIVATE_DIR_MODE);
  const tmp = join(urb, `tmp-log-${Deno.pid}`);
  removeStale(tmp);
  Deno.mkdirSync(tmp, { mode: PRIVATE_DIR_MODE });
  const layout = options.layout ?? "epochs2";
  const epochs = options.epochs ??
    [{ base: epochBase, events: options.events ?? [], image: options.image }];
  try {
    const env = Env.open(tmp);
    try {
      if (layout === "log1") {
        if (epochs.length !== 1 || epochs[0].base !== 0) {
          throw new PierError(
            `A log-1 pier (vere < 3.0) has one log from event 1, not epochs at ${
              epochs.map((e) => e.base).join(", ")
            }`,
          );
        }
        writeMeta(env, { ...meta, version: 1 });
        writeEvents(env, epochs[0].events, 1, options.batchEvents ?? BATCH_EVENTS_DEFAULT);
      } else writeMeta(env, meta);
    } finally {
      env.close();
    }
    fsyncFile(join(tmp, "data.mdb"));
    if (layout !== "log1") {
      const epochFormat = layout === "epochs1" ? 1 : 2;
      for (const epoch of epochs) buildEpoch(tmp, { ...options, ...epoch, epochFormat });
    }
    // vere 3.x and < 3.0 load their snapshot from .urb/chk; 3.x boots an epoch from there.
    const newest = epochs.at(-1)?.image;
    if (layout === "log1" && newest !== undefined) placeSnapshot(join(urb, "chk"), newest);
    if (layout === "epochs1" && newest !== undefined && epochs.at(-1)!.base > 0) {
      copySnapshot(join(tmp, `0i${epochs.at(-1)!.base}`), join(urb, "chk"));
    }
    fsyncDir(tmp);
    Deno.renameSync(tmp, log);
  } catch (error) {
    Deno.removeSync(tmp, { recursive: true });
    throw error;
  }
  fsyncDir(urb);
  fsyncDir(pierDir);
}

/**
 * Adds epoch `0i<base>` to a pier that is not running, built in a temporary
 * directory, fsynced and renamed into place. Its events must start at
 * `base + 1`; whether they follow the previous epoch is not checked here
 * ({@linkcode readEvents} checks it).
 */
export function writeEpoch(pierDir: string, options: WriteEpochOptions): void {
  if (isPierLocked(pierDir)) {
    throw new PierError(`${pierDir} is in use by a running vere; stop it before writing its log`);
  }
  const log = logDir(pierDir);
  if (!exists(log)) throw new PierError(`${pierDir} has no .urb/log; write the pier first`);
  buildEpoch(log, options);
  fsyncDir(log);
}

function buildEpoch(log: string, options: WriteEpochOptions): void {
  const { meta, events, base, vereVersion, image, epochFormat = EPOCH_VERSION } = options;
  const batchEvents = options.batchEvents ?? BATCH_EVENTS_DEFAULT;
  checkBatch(batchEvents);
  if (!Number.isSafeInteger(base) || base < 0) {
    throw new PierError(`The epoch base ${base} is not a non-negative integer`);
  }
  if (!/^[0-9A-Za-z.+-]{1,100}$/.test(vereVersion)) {
    throw new PierError(`The vere version ${JSON.stringify(vereVersion)} is not like "4.0"`);
  }
  const name = `0i${base}`;
  const dir = join(log, name);
  if (exists(dir)) throw new PierError(`The epoch ${dir} exists already; choose another base`);
  // Not named 0i...: vere would take a half-written "0i<N>.tmp" for an epoch.
  const tmp = join(log, `tmp-${name}-${Deno.pid}`);
  removeStale(tmp);
  Deno.mkdirSync(tmp, { mode: PRIVATE_DIR_MODE });
  try {
    const env = Env.open(tmp);
    try {
      writeMeta(env, meta);
      writeEvents(env, events, base + 1, batchEvents);
    } finally {
      env.close();
    }
    fsyncFile(join(tmp, "data.mdb"));
    writeFileSynced(join(tmp, "epoc.txt"), encoder.encode(String(epochFormat)));
    writeFileSynced(join(tmp, "vere.txt"), encoder.encode(vereVersion));
    if (image !== undefined) {
      const northSouth = !(image instanceof Uint8Array) && "north" in image;
      if (northSouth !== (epochFormat === 1)) {
        throw new PierError(
          `Epoch format ${epochFormat} keeps its snapshot as ${
            epochFormat === 1 ? "north.bin and south.bin" : "image.bin"
          }; the snapshot given for epoch ${base} is the other kind`,
        );
      }
      placeSnapshot(tmp, image);
    }
    fsyncDir(tmp);
    Deno.renameSync(tmp, dir);
  } catch (error) {
    Deno.removeSync(tmp, { recursive: true });
    throw error;
  }
}

/** Moves (or writes) a snapshot into `dir`, fsynced. */
function placeSnapshot(dir: string, image: SnapshotFiles): void {
  if (image instanceof Uint8Array) writeFileSynced(join(dir, "image.bin"), image);
  else if ("path" in image) {
    fsyncFile(image.path);
    Deno.renameSync(image.path, join(dir, "image.bin"));
  } else {
    for (const [name, path] of [["north.bin", image.north], ["south.bin", image.south]]) {
      fsyncFile(path);
      Deno.renameSync(path, join(dir, name));
    }
  }
  fsyncDir(dir);
}

/**
 * Copies the north/south snapshot of the epoch directory `from` into `to`
 * (`.urb/chk`, made if absent), fsynced: vere 3.x loads its state from there.
 */
export function copySnapshot(from: string, to: string): void {
  Deno.mkdirSync(to, { recursive: true, mode: PRIVATE_DIR_MODE });
  for (const name of ["north.bin", "south.bin"]) {
    const target = join(to, name);
    removeStale(target);
    Deno.copyFileSync(join(from, name), target);
    Deno.chmodSync(target, PRIVATE_FILE_MODE);
    fsyncFile(target);
  }
  fsyncDir(to);
}

// As u3_lmdb_save: NOOVERWRITE puts into EVENTS (INTEGERKEY), batchEvents a txn.
function writeEvents(env: Env, events: Iterable<PierEvent>, first: number, batch: number): void {
  const iterator = events[Symbol.iterator]();
  let next = first;
  let done = false;
  while (!done) {
    env.writeTxn((txn) => {
      const db = txn.openDb("EVENTS", { create: true, integerKey: true });
      for (let n = 0; n < batch; n++) {
        const step = iterator.next();
        if (step.done) {
          done = true;
          return;
        }
        const { eve, mug, job } = step.value;
        if (eve !== next) {
          throw new PierError(`Event ${eve} was given where ${next} belongs; number them in order`);
        }
        if (!Number.isInteger(mug) || mug < 0 || mug > 0xffffffff) {
          throw new PierError(`The mug ${mug} of event ${eve} is not a u32`);
        }
        txn.put(db, eventKey(eve), encodeEventValue(mug, job), { noOverwrite: true });
        next++;
      }
    });
  }
}

// A temporary directory left by a crashed earlier run with the same PID.
function removeStale(tmp: string): void {
  try {
    Deno.removeSync(tmp, { recursive: true });
  } catch (error) {
    if (!(error instanceof Deno.errors.NotFound)) throw error;
  }
}

function checkBatch(batchEvents: number): void {
  if (!Number.isInteger(batchEvents) || batchEvents < 1 || batchEvents > BATCH_EVENTS_MAX) {
    throw new PierError(`The batch of ${batchEvents} events is not within 1..${BATCH_EVENTS_MAX}`);
  }
}

function writeFileSynced(path: string, bytes: Uint8Array): void {
  const file = Deno.openSync(path, { write: true, createNew: true, mode: PRIVATE_FILE_MODE });
  try {
    let written = 0;
    while (written < bytes.length) written += file.writeSync(bytes.subarray(written));
    file.syncSync();
  } finally {
    file.close();
  }
}

function fsyncFile(path: string): void {
  const file = Deno.openSync(path, { read: true, write: true });
  try {
    file.syncSync();
  } finally {
    file.close();
  }
}

function fsyncDir(path: string): void {
  const dir = Deno.openSync(path, { read: true });
  try {
    dir.syncSync();
  } finally {
    dir.close();
  }
}

/** Loads liblmdb now, so a missing library is reported before any pier is touched. */
export function checkLiblmdb(options: { libraryPath?: string } = {}): string {
  return openLmdb(options).version;
}

/** The text of an epoch's `vere.txt` or `epoc.txt` (`name` is `"vere"` or `"epoc"`). */
export function readEpochText(epoch: Epoch, name: "vere" | "epoc"): string {
  return decoder.decode(Deno.readFileSync(join(epoch.dir, `${name}.txt`)));
}
