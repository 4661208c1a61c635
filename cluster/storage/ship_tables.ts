/**
 * The SQL of the applied ship state: one row per ship (`ship`) and one per
 * event (`event`), schema version 2. Constructed by the store only (it alone
 * holds the connection); the state machine writes through it inside
 * `Store.applyTransaction`, everything else reads it as a
 * {@linkcode ShipReader}.
 * @module
 */

import type { DatabaseSync, StatementSync } from "node:sqlite";
import { type ShipInfo, shipKey, shipOfKey, type ShipReader, type StoredEvent } from "../ships.ts";

/** Largest answer of {@linkcode ShipTables.events} unless the caller asks for less. */
export const EVENTS_BYTES_MAX_DEFAULT = 4 * 1024 * 1024;

/** Prepared statements over the ship tables of one open database. */
export class ShipTables implements ShipReader {
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
  readonly #putShip: StatementSync;

  /** Prepares the statements (the store calls this once per open). */
  constructor(db: DatabaseSync) {
    this.#get = db.prepare("SELECT * FROM ship WHERE ship = ?");
    this.#list = db.prepare("SELECT * FROM ship ORDER BY ship");
    this.#insertShip = db.prepare(
      "INSERT INTO ship (ship, fake, optimism, life, last_eve, last_mug, bytes, added_index) VALUES (?, ?, ?, ?, 0, 0, 0, ?)",
    );
    this.#putShip = db.prepare(
      "INSERT OR REPLACE INTO ship (ship, fake, optimism, life, last_eve, last_mug, bytes, added_index) VALUES (?, ?, ?, ?, ?, ?, ?, ?)",
    );
    this.#deleteShip = db.prepare("DELETE FROM ship WHERE ship = ?");
    this.#deleteEvents = db.prepare("DELETE FROM event WHERE ship = ?");
    this.#setOptimism = db.prepare("UPDATE ship SET optimism = ? WHERE ship = ?");
    this.#event = db.prepare(
      "SELECT eve, mug, job, entry_index, entry_term FROM event WHERE ship = ? AND eve = ?",
    );
    this.#events = db.prepare(
      "SELECT eve, mug, job, entry_index, entry_term FROM event WHERE ship = ? AND eve >= ? ORDER BY eve LIMIT ?",
    );
    this.#insertEvent = db.prepare(
      "INSERT INTO event (ship, eve, mug, job, entry_index, entry_term) VALUES (?, ?, ?, ?, ?, ?)",
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
  events(
    ship: bigint,
    from: number,
    count: number,
    bytesMax = EVENTS_BYTES_MAX_DEFAULT,
  ): StoredEvent[] {
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

  /** Writes a ship's whole row (a snapshot's install; its events are written apart). */
  putShip(info: ShipInfo): void {
    this.#putShip.run(
      shipKey(info.ship),
      info.fake ? 1 : 0,
      info.optimism,
      info.life,
      info.lastEve,
      info.lastMug,
      info.bytes,
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
    this.#insertEvent.run(key, event.eve, event.mug, event.job, event.entryIndex, event.entryTerm);
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
    entryTerm: Number(row.entry_term),
  };
}
