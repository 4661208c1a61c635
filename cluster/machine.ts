/**
 * The replicated state machine of a cluster: what a committed `normal` entry
 * means. Every node applies the same entries in the same order, so every node
 * ends with the same state.
 *
 * ```
 * command := kind:u8 body
 * kind 1  raw      opaque bytes (test and benchmark writes; no effect)
 * kind 2  address  nodeId:u32 address:text           (where a member listens)
 * kind 3  shipAdd  ship:16 fake:u8 optimism:i32 life:u32
 * kind 4  shipRemove  ship:16
 * kind 5  shipSet  ship:16 optimism:i32
 * kind 6  events   ship:16 firstEve:u64 n:u32 (mug:u32 job:bytes)*n
 * kind 7  defaultOptimism  optimism:i32          (ships whose optimism is -1 use it)
 * kind 8  shipRun  ship:16 run:u8               (1: the master runs its --exec command for it)
 * kind 9  imageChunk  ship:16 epoch:u64 offset:u64 sha256:32 data:bytes   (cluster/images.ts)
 * kind 10 imageDone   ship:16 epoch:u64 size:u64 sha256:32
 * kind 11 chop     ship:16 firstEve:u64     (drops the ship's events before firstEve)
 * kind 12 revoke   serial:text              (a TLS certificate every node refuses from now on)
 * kind 13 shipLayout  ship:16 layout:u8      (the ship's pier layout: 1 log1, 2 epochs1, 3 epochs2;
 *                                              never lowered: vere upgrades piers, never downgrades)
 * ship := 16 bytes, big-endian;  optimism -1 = the cluster default, -2 = a quorum
 * ```
 * Applying is deterministic and idempotent: an event already stored with the
 * same mug and bytes is skipped; a different event at an existing number, or
 * a gap, is refused the same way on every node. Entries re-applied after a
 * restart change nothing.
 *
 * The applied state is written through the store's typed tables
 * (cluster/storage/): ships and events, images, and the machine's own
 * settings table (member addresses, removed members, default optimism, run
 * flags), never through SQL here.
 * @module
 */

import { ByteReader, ByteWriter, sameBytes } from "./codec.ts";
import { shipKey, shipOfKey, type ShipReader } from "./ships.ts";
import { applyImageChunk, applyImageDone, type ImageReader } from "./images.ts";
import type { Store } from "./store.ts";
import { EntryPayloads } from "./storage/entry_payloads.ts";
import type { EntryEvent, ShipTables } from "./storage/ship_tables.ts";
import type { ImageTables } from "./storage/image_tables.ts";
import type { MachineSettings } from "./storage/machine_settings.ts";

/** Kinds of command in a `normal` entry. */
export const CommandKind = {
  raw: 1,
  address: 2,
  shipAdd: 3,
  shipRemove: 4,
  shipSet: 5,
  events: 6,
  defaultOptimism: 7,
  shipRun: 8,
  imageChunk: 9,
  imageDone: 10,
  chop: 11,
  revoke: 12,
  shipLayout: 13,
} as const;

/**
 * The layouts of a pier's log that vere has written (docs/pier-formats.md):
 * `log1` (vere < 3.0, one log, no epochs), `epochs1` (vere 3.x, `epoc.txt`
 * 1, `north.bin`/`south.bin` snapshots), `epochs2` (vere 4.x, `image.bin`).
 * Spelled out here too because cluster/ does not depend on vere/.
 */
export type ShipLayout = "log1" | "epochs1" | "epochs2";

/** Every layout, oldest first; a ship's layout only ever moves right. */
export const SHIP_LAYOUTS: readonly ShipLayout[] = ["log1", "epochs1", "epochs2"];

/**
 * The layout an export writes for a ship whose layout was never recorded (one
 * added by `ship add`, or imported by a Seguro before P12, which wrote only
 * epochs 2).
 */
export const SHIP_LAYOUT_DEFAULT: ShipLayout = "epochs2";

/** One event in an `events` command. */
export interface PlannedEvent {
  /** Mug of the kernel after the event (0 for boot events). */
  mug: number;
  /** The job's jam bytes. */
  job: Uint8Array;
}

/** A decoded command. */
export type Command =
  | { kind: "raw"; data: Uint8Array }
  | { kind: "address"; nodeId: number; address: string }
  | { kind: "shipAdd"; ship: bigint; fake: boolean; optimism: number; life: number }
  | { kind: "shipRemove"; ship: bigint }
  | { kind: "shipSet"; ship: bigint; optimism: number }
  | { kind: "events"; ship: bigint; firstEve: number; events: PlannedEvent[] }
  | { kind: "defaultOptimism"; optimism: number }
  | { kind: "shipRun"; ship: bigint; run: boolean }
  | {
    kind: "imageChunk";
    ship: bigint;
    epoch: number;
    offset: number;
    sha256: Uint8Array;
    data: Uint8Array;
  }
  | { kind: "imageDone"; ship: bigint; epoch: number; size: number; sha256: Uint8Array }
  | { kind: "chop"; ship: bigint; firstEve: number }
  | { kind: "revoke"; serial: string }
  | { kind: "shipLayout"; ship: bigint; layout: ShipLayout };

/** What applying one command did. */
export type ApplyResult =
  | { ok: true; appended: number; skipped: number }
  | { ok: false; reason: string; appended: number; skipped: number };

/** Encodes a raw write (opaque bytes). */
export function encodeRaw(data: Uint8Array): Uint8Array {
  const out = new Uint8Array(1 + data.length);
  out[0] = CommandKind.raw;
  out.set(data, 1);
  return out;
}

/** Encodes a command other than raw. */
export function encodeCommand(c: Exclude<Command, { kind: "raw" }>): Uint8Array {
  switch (c.kind) {
    case "address":
      return new ByteWriter(64).u8(CommandKind.address).u32(c.nodeId).text(c.address).finish();
    case "shipAdd":
      return new ByteWriter(32).u8(CommandKind.shipAdd).raw(shipKey(c.ship)).u8(c.fake ? 1 : 0)
        .u32(c.optimism >>> 0).u32(c.life).finish();
    case "shipRemove":
      return new ByteWriter(17).u8(CommandKind.shipRemove).raw(shipKey(c.ship)).finish();
    case "shipSet":
      return new ByteWriter(21).u8(CommandKind.shipSet).raw(shipKey(c.ship)).u32(c.optimism >>> 0)
        .finish();
    case "defaultOptimism":
      return new ByteWriter(5).u8(CommandKind.defaultOptimism).u32(c.optimism >>> 0).finish();
    case "shipRun":
      return new ByteWriter(18).u8(CommandKind.shipRun).raw(shipKey(c.ship)).u8(c.run ? 1 : 0)
        .finish();
    case "imageChunk":
      return new ByteWriter(69 + c.data.length).u8(CommandKind.imageChunk).raw(shipKey(c.ship))
        .u64(c.epoch).u64(c.offset).raw(c.sha256).bytes(c.data).finish();
    case "imageDone":
      return new ByteWriter(65).u8(CommandKind.imageDone).raw(shipKey(c.ship)).u64(c.epoch)
        .u64(c.size).raw(c.sha256).finish();
    case "chop":
      return new ByteWriter(25).u8(CommandKind.chop).raw(shipKey(c.ship)).u64(c.firstEve).finish();
    case "revoke":
      return new ByteWriter(48).u8(CommandKind.revoke).text(c.serial).finish();
    case "shipLayout":
      return new ByteWriter(18).u8(CommandKind.shipLayout).raw(shipKey(c.ship))
        .u8(SHIP_LAYOUTS.indexOf(c.layout) + 1).finish();
    case "events": {
      const size = 29 + c.events.reduce((n, e) => n + 8 + e.job.length, 0);
      const w = new ByteWriter(size).u8(CommandKind.events).raw(shipKey(c.ship)).u64(c.firstEve)
        .u32(c.events.length);
      for (const e of c.events) w.u32(e.mug).bytes(e.job);
      return w.finish();
    }
  }
}

/** Encodes "node `nodeId` listens at `address`". */
export function encodeAddress(nodeId: number, address: string): Uint8Array {
  return encodeCommand({ kind: "address", nodeId, address });
}

/** Decodes a command; throws WireError or RangeError when malformed. */
export function decodeCommand(data: Uint8Array): Command {
  const r = new ByteReader(data);
  const kind = r.u8("command kind");
  let c: Command;
  switch (kind) {
    case CommandKind.raw:
      return { kind: "raw", data: data.subarray(1) };
    case CommandKind.address:
      c = { kind: "address", nodeId: r.u32("node id"), address: r.text("address") };
      break;
    case CommandKind.shipAdd:
      c = {
        kind: "shipAdd",
        ship: shipOfKey(r.raw(16, "ship")),
        fake: r.u8("fake") === 1,
        optimism: r.u32("optimism") | 0,
        life: r.u32("life"),
      };
      break;
    case CommandKind.shipRemove:
      c = { kind: "shipRemove", ship: shipOfKey(r.raw(16, "ship")) };
      break;
    case CommandKind.shipSet:
      c = { kind: "shipSet", ship: shipOfKey(r.raw(16, "ship")), optimism: r.u32("optimism") | 0 };
      break;
    case CommandKind.events: {
      const ship = shipOfKey(r.raw(16, "ship"));
      const firstEve = r.u64("first event");
      const n = r.u32("event count");
      if (n * 8 > r.remaining) throw new RangeError(`An events command claims ${n} events`);
      const events: PlannedEvent[] = [];
      for (let i = 0; i < n; i++) events.push({ mug: r.u32("mug"), job: r.bytes("job") });
      c = { kind: "events", ship, firstEve, events };
      break;
    }
    case CommandKind.defaultOptimism:
      c = { kind: "defaultOptimism", optimism: r.u32("optimism") | 0 };
      break;
    case CommandKind.imageChunk:
      c = {
        kind: "imageChunk",
        ship: shipOfKey(r.raw(16, "ship")),
        epoch: r.u64("epoch"),
        offset: r.u64("offset"),
        sha256: r.raw(32, "sha256"),
        data: r.bytes("image chunk"),
      };
      break;
    case CommandKind.imageDone:
      c = {
        kind: "imageDone",
        ship: shipOfKey(r.raw(16, "ship")),
        epoch: r.u64("epoch"),
        size: r.u64("size"),
        sha256: r.raw(32, "sha256"),
      };
      break;
    case CommandKind.chop:
      c = { kind: "chop", ship: shipOfKey(r.raw(16, "ship")), firstEve: r.u64("first event") };
      break;
    case CommandKind.revoke: {
      const serial = r.text("serial");
      if (!SERIAL.test(serial)) throw new RangeError(`A revoke command has serial '${serial}'`);
      c = { kind: "revoke", serial };
      break;
    }
    case CommandKind.shipRun: {
      const ship = shipOfKey(r.raw(16, "ship"));
      const run = r.u8("run");
      if (run > 1) throw new RangeError(`A shipRun command has run flag ${run}`);
      c = { kind: "shipRun", ship, run: run === 1 };
      break;
    }
    case CommandKind.shipLayout: {
      const ship = shipOfKey(r.raw(16, "ship"));
      const code = r.u8("layout");
      const layout = SHIP_LAYOUTS[code - 1];
      if (layout === undefined) throw new RangeError(`A shipLayout command has layout ${code}`);
      c = { kind: "shipLayout", ship, layout };
      break;
    }
    default:
      throw new RangeError(`Unknown command kind ${kind} in a committed entry`);
  }
  r.end(`${c.kind} command`);
  return c;
}

/** A certificate serial as `revoke` carries it: lowercase hex, as cluster/certs.ts prints them. */
export const SERIAL: RegExp = /^[0-9a-f]{1,40}$/;

/** Formats a ship for messages; kept here so cluster/ does not depend on vere/. */
export type ShipName = (ship: bigint) => string;

/** The applied state: member addresses and ships' event logs. */
export class Machine {
  readonly #ships: ShipTables;
  readonly #images: ImageTables;
  readonly #settings: MachineSettings;
  readonly #run: Set<bigint>;
  readonly #addresses: Map<number, string>;
  readonly #removed: Set<number>;
  readonly #revoked: Set<string>;
  readonly #name: ShipName;
  #defaultOptimism: number;
  /** Raw writes applied since this process started. */
  rawApplied = 0;
  /** Bytes of raw writes applied since this process started. */
  rawBytesApplied = 0;

  /** Loads the settings already applied. `name` renders ships in refusals. */
  constructor(store: Store, name: ShipName = (s) => `ship ${s}`) {
    this.#name = name;
    this.#ships = store.ships;
    this.#images = store.images;
    this.#settings = store.machineSettings;
    this.#defaultOptimism = -1;
    this.#run = new Set();
    this.#removed = new Set();
    this.#revoked = new Set();
    this.#addresses = new Map();
    this.reload();
  }

  /** Reads again the settings it caches (after a snapshot replaced the applied state). */
  reload(): void {
    this.#defaultOptimism = this.#settings.defaultOptimism() ?? -1;
    refill(this.#run, this.#settings.runShips());
    refill(this.#removed, this.#settings.removed());
    refill(this.#revoked, this.#settings.revoked());
    this.#addresses.clear();
    for (const [id, address] of this.#settings.addresses()) this.#addresses.set(id, address);
  }

  /** The ship tables, read only (only the machine writes). */
  get ships(): ShipReader {
    return this.#ships;
  }

  /** The ships' epoch snapshots, read only (only the machine writes). */
  get images(): ImageReader {
    return this.#images;
  }

  /**
   * The cluster's default optimism for ships that have none: -2 (or -1,
   * when never set) means a quorum.
   */
  get defaultOptimism(): number {
    return this.#defaultOptimism;
  }

  /** True when the master runs its `--exec` command for `ship` (`seguro ship run`). */
  runs(ship: bigint): boolean {
    return this.#run.has(ship);
  }

  /** The ships the master runs its `--exec` command for. */
  runShips(): bigint[] {
    return [...this.#run];
  }

  /** The layout of `ship`'s pier (`shipLayout`), undefined when none was recorded. */
  layout(ship: bigint): ShipLayout | undefined {
    const recorded = this.#settings.layout(ship);
    return SHIP_LAYOUTS.find((l) => l === recorded);
  }

  #setRun(ship: bigint, run: boolean): void {
    this.#settings.setRun(ship, run);
    if (run) this.#run.add(ship);
    else this.#run.delete(ship);
  }

  /** Every member address known, by node id. */
  get addresses(): ReadonlyMap<number, string> {
    return this.#addresses;
  }

  /** Serials (lowercase hex) of the TLS certificates revoked by committed `revoke` commands. */
  get revoked(): ReadonlySet<string> {
    return this.#revoked;
  }

  /** Nodes removed from the cluster by committed membership changes (ids are never reused). */
  get removed(): ReadonlySet<number> {
    return this.#removed;
  }

  /** Records that a committed membership change removed `nodeId` (inside an apply transaction). */
  recordRemoved(nodeId: number): void {
    if (this.#removed.has(nodeId)) return;
    this.#removed.add(nodeId);
    this.#settings.setRemoved(this.#removed);
  }

  /** Records an address (inside an apply transaction). */
  setAddress(nodeId: number, address: string): void {
    if (this.#addresses.get(nodeId) === address) return;
    this.#addresses.set(nodeId, address);
    this.#settings.setAddress(nodeId, address, [...this.#addresses.keys()]);
  }

  /** Applies one committed `normal` entry, at `entryIndex` of `entryTerm` (inside an apply transaction). */
  apply(data: Uint8Array, entryIndex: number, entryTerm: number): ApplyResult {
    const c = decodeCommand(data);
    const done: ApplyResult = { ok: true, appended: 0, skipped: 0 };
    switch (c.kind) {
      case "raw":
        this.rawApplied++;
        this.rawBytesApplied += c.data.length;
        return done;
      case "address":
        this.setAddress(c.nodeId, c.address);
        return done;
      case "shipAdd":
        if (this.#ships.get(c.ship) !== undefined) {
          return {
            ok: false,
            reason: `${this.#name(c.ship)} is already on this cluster`,
            appended: 0,
            skipped: 0,
          };
        }
        this.#ships.insertShip({ ...c, addedIndex: entryIndex });
        return done;
      case "shipRemove":
        if (this.#ships.get(c.ship) === undefined) return this.#unknown(c.ship);
        this.#ships.deleteShip(c.ship);
        this.#images.deleteShip(c.ship);
        this.#setRun(c.ship, false);
        this.#settings.setLayout(c.ship, undefined);
        return done;
      case "shipSet":
        if (this.#ships.get(c.ship) === undefined) return this.#unknown(c.ship);
        this.#ships.setOptimism(c.ship, c.optimism);
        return done;
      case "events":
        return this.#appendEvents(c.ship, c.firstEve, c.events, entryIndex, entryTerm, data);
      case "defaultOptimism":
        this.#settings.setDefaultOptimism(c.optimism);
        this.#defaultOptimism = c.optimism;
        return done;
      case "imageChunk":
      case "imageDone": {
        if (this.#ships.get(c.ship) === undefined) return this.#unknown(c.ship);
        const refused = c.kind === "imageChunk"
          ? applyImageChunk(this.#images, c.ship, c, EntryPayloads.locate(entryIndex, data, c.data))
          : applyImageDone(this.#images, c.ship, c);
        if (refused === undefined) return done;
        return { ok: false, reason: `${this.#name(c.ship)}: ${refused}`, appended: 0, skipped: 0 };
      }
      case "shipRun":
        if (this.#ships.get(c.ship) === undefined) return this.#unknown(c.ship);
        this.#setRun(c.ship, c.run);
        return done;
      case "chop":
        return this.#chop(c.ship, c.firstEve);
      case "revoke":
        this.#settings.revoke(c.serial);
        this.#revoked.add(c.serial);
        return done;
      case "shipLayout":
        if (this.#ships.get(c.ship) === undefined) return this.#unknown(c.ship);
        // -1 when none was recorded: any layout is news.
        if (SHIP_LAYOUTS.indexOf(c.layout) > SHIP_LAYOUTS.indexOf(this.layout(c.ship)!)) {
          this.#settings.setLayout(c.ship, c.layout);
        }
        return done;
    }
  }

  /**
   * Starts `ship`'s log at `firstEve`: deletes its earlier events and the
   * images of earlier epochs. Refused, the same way on every node, unless the
   * ship is here, the log would start later than it does, the image of epoch
   * `firstEve - 1` is complete here, and that epoch is not past the last event.
   */
  #chop(ship: bigint, firstEve: number): ApplyResult {
    const info = this.#ships.get(ship);
    if (info === undefined) return this.#unknown(ship);
    const base = firstEve - 1;
    const refuse = (why: string): ApplyResult => ({
      ok: false,
      reason: `${this.#name(ship)}: ${why}`,
      appended: 0,
      skipped: 0,
    });
    if (firstEve <= info.firstEve) {
      return refuse(
        `its log starts at event ${info.firstEve} already; a chop must start it later, not at ${firstEve}`,
      );
    }
    if (base > info.lastEve) {
      return refuse(
        `its last event is ${info.lastEve}; its log cannot start after epoch ${base}, which is past it`,
      );
    }
    if (this.#images.get(ship, base)?.sha256 === undefined) {
      return refuse(
        `this node holds no complete image of epoch ${base}; the log can only start after a complete epoch image`,
      );
    }
    this.#ships.chop(ship, firstEve);
    this.#images.deleteBefore(ship, base);
    return { ok: true, appended: 0, skipped: 0 };
  }

  #unknown(ship: bigint): ApplyResult {
    return {
      ok: false,
      reason: `${this.#name(ship)} is not on this cluster; add it with 'seguro ship add'`,
      appended: 0,
      skipped: 0,
    };
  }

  #appendEvents(
    ship: bigint,
    firstEve: number,
    events: readonly PlannedEvent[],
    entryIndex: number,
    entryTerm: number,
    entry: Uint8Array,
  ): ApplyResult {
    const info = this.#ships.get(ship);
    if (info === undefined) return this.#unknown(ship);
    let last = info.lastEve;
    let skipped = 0;
    // Written together, also before a refusal: the events before it are applied.
    const rows: EntryEvent[] = [];
    const result = (reason?: string): ApplyResult => {
      this.#ships.appendEntryEvents(ship, rows, entryIndex, entryTerm);
      const appended = rows.length;
      return reason === undefined
        ? { ok: true, appended, skipped }
        : { ok: false, reason, appended, skipped };
    };
    for (let i = 0; i < events.length; i++) {
      const eve = firstEve + i;
      const e = events[i];
      if (eve < info.firstEve) {
        return result(
          `${
            this.#name(ship)
          }'s events before ${info.firstEve} were chopped; send events from ${info.firstEve}`,
        );
      }
      if (eve <= last) {
        const stored = this.#ships.event(ship, eve);
        if (stored !== undefined && stored.mug === e.mug && sameBytes(stored.job, e.job)) {
          skipped++;
          continue;
        }
        return result(
          `${this.#name(ship)} already has a different event ${eve}; re-sync from event ${
            last + 1
          }`,
        );
      }
      if (eve !== last + 1) {
        return result(
          `${this.#name(ship)}'s last event is ${last}; event ${eve} would leave a gap`,
        );
      }
      // Stored once: the job stays in the entry's bytes (the log keeps the entry).
      const from = EntryPayloads.locate(entryIndex, entry, e.job);
      rows.push({ eve, mug: e.mug, at: from.at, length: from.length });
      last = eve;
    }
    return result();
  }
}

function refill<T>(set: Set<T>, values: Iterable<T>): void {
  set.clear();
  for (const v of values) set.add(v);
}
