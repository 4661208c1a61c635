/**
 * The applied state of ships: one row per ship and one per event, in the
 * node's SQLite database (tables `ship` and `event`, schema version 2). Only
 * the state machine (cluster/machine.ts) writes here, inside
 * `Store.applyTransaction`; everything else reads.
 * @module
 */

import type { DatabaseSync, StatementSync } from "node:sqlite";

/** A ship as the cluster knows it. */
export interface ShipInfo {
  /** The ship (`@p` as a number). */
  ship: bigint;
  /** A fake ship (no real identity on the network). */
  fake: boolean;
  /** Replicas that must hold an event before release; -1 = the cluster default (quorum). */
  optimism: number;
  /** Boot formulas at the start of its log (0 when unknown). */
  life: number;
  /** Number of its last event (0: none yet). */
  lastEve: number;
  /** Mug stored with its last event. */
  lastMug: number;
  /** Bytes of jam stored for it. */
  bytes: number;
  /** Raft index of the entry that added it. */
  addedIndex: number;
}

/** One stored event. */
export interface StoredEvent {
  /** Event number, from 1. */
  eve: number;
  /** Mug of the kernel after the event (0 for boot events). */
  mug: number;
  /** The job's jam bytes. */
  job: Uint8Array;
  /** Raft index of the entry that carried it. */
  entryIndex: number;
}

/** Largest ship: a comet is 128 bits. */
export const SHIP_MAX = (1n << 128n) - 1n;

/** A ship's 16-byte key: big-endian, so keys sort as numbers. */
export function shipKey(ship: bigint): Uint8Array {
  if (ship < 0n || ship > SHIP_MAX) {
    throw new RangeError(`A ship is at most 128 bits (got ${ship})`);
  }
  const out = new Uint8Array(16);
  let v = ship;
  for (let i = 15; i >= 0; i--) {
    out[i] = Number(v & 0xffn);
    v >>= 8n;
  }
  return out;
}

/** The ship a 16-byte key names. */
export function shipOfKey(key: Uint8Array): bigint {
  let v = 0n;
  for (const b of key) v = (v << 8n) | BigInt(b);
  return v;
}

/** Prepared statements over the ship tables of one open database. */
export class ShipTables {
  readonly #get: StatementSync;
  readonly #list: StatementSync;
  readonly #insertShip: StatementSync;
  readonly #deleteShip: StatementSync;
  readonly #deleteEvents: StatementSync;
  readonly #setOptimism: StatementSync;
  readonly #event: StatementSync;
  readonly #events: StatementSync;
  readonly #insertEvent: StatementSync;
  readonly #advance: StatementSync;

  /** Prepares the statements. */
  constructor(db: DatabaseSync) {
    this.#get = db.prepare("SELECT * FROM ship WHERE ship = ?");
    this.#list = db.prepare("SELECT * FROM ship ORDER BY ship");
    this.#insertShip = db.prepare(
      "INSERT INTO ship (ship, fake, optimism, life, last_eve, last_mug, bytes, added_index) VALUES (?, ?, ?, ?, 0, 0, 0, ?)",
    );
    this.#deleteShip = db.prepare("DELETE FROM ship WHERE ship = ?");
    this.#deleteEvents = db.prepare("DELETE FROM event WHERE ship = ?");
    this.#setOptimism = db.prepare("UPDATE ship SET optimism = ? WHERE ship = ?");
    this.#event = db.prepare(
      "SELECT eve, mug, job, entry_index FROM event WHERE ship = ? AND eve = ?",
    );
    this.#events = db.prepare(
      "SELECT eve, mug, job, entry_index FROM event WHERE ship = ? AND eve >= ? ORDER BY eve LIMIT ?",
    );
    this.#insertEvent = db.prepare(
      "INSERT INTO event (ship, eve, mug, job, entry_index) VALUES (?, ?, ?, ?, ?)",
    );
    this.#advance = db.prepare(
      "UPDATE ship SET last_eve = ?, last_mug = ?, bytes = bytes + ? WHERE ship = ?",
    );
  }

  /** One ship, or undefined. */
  get(ship: bigint): ShipInfo | undefined {
    const row = this.#get.get(shipKey(ship));
    return row === undefined ? undefined : toShip(row);
  }

  /** Every ship, in @p order. */
  list(): ShipInfo[] {
    return this.#list.all().map(toShip);
  }

  /** One event, or undefined. */
  event(ship: bigint, eve: number): StoredEvent | undefined {
    const row = this.#event.get(shipKey(ship), eve);
    return row === undefined ? undefined : toEvent(row);
  }

  /** Up to `count` events from `from`, stopping after `bytesMax` bytes (at least one event). */
  events(ship: bigint, from: number, count: number, bytesMax = 4 * 1024 * 1024): StoredEvent[] {
    const out: StoredEvent[] = [];
    let bytes = 0;
    for (const row of this.#events.iterate(shipKey(ship), from, count)) {
      const e = toEvent(row);
      if (out.length > 0 && bytes + e.job.length > bytesMax) break;
      out.push(e);
      bytes += e.job.length;
    }
    return out;
  }

  /** Adds a ship with no events (write; inside an apply transaction). */
  insertShip(info: Pick<ShipInfo, "ship" | "fake" | "optimism" | "life" | "addedIndex">): void {
    this.#insertShip.run(
      shipKey(info.ship),
      info.fake ? 1 : 0,
      info.optimism,
      info.life,
      info.addedIndex,
    );
  }

  /** Removes a ship and all its events (write). */
  deleteShip(ship: bigint): void {
    const key = shipKey(ship);
    this.#deleteEvents.run(key);
    this.#deleteShip.run(key);
  }

  /** Changes a ship's optimism (write). */
  setOptimism(ship: bigint, optimism: number): void {
    this.#setOptimism.run(optimism, shipKey(ship));
  }

  /** Appends the ship's next event (write); the caller has checked it is last_eve + 1. */
  appendEvent(ship: bigint, event: StoredEvent): void {
    const key = shipKey(ship);
    this.#insertEvent.run(key, event.eve, event.mug, event.job, event.entryIndex);
    this.#advance.run(event.eve, event.mug, event.job.length, key);
  }
}

function toShip(row: Record<string, unknown>): ShipInfo {
  return {
    ship: shipOfKey(row.ship as Uint8Array),
    fake: row.fake === 1,
    optimism: Number(row.optimism),
    life: Number(row.life),
    lastEve: Number(row.last_eve),
    lastMug: Number(row.last_mug),
    bytes: Number(row.bytes),
    addedIndex: Number(row.added_index),
  };
}

function toEvent(row: Record<string, unknown>): StoredEvent {
  return {
    eve: Number(row.eve),
    mug: Number(row.mug),
    job: row.job as Uint8Array,
    entryIndex: Number(row.entry_index),
  };
}
