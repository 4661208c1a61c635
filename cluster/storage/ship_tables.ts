/**
 * The SQL of the applied ship state: one row per ship (`ship`) and one per
 * event (`event`). Constructed by the store only (it alone holds the
 * connection); the state machine writes through it inside
 * `Store.applyTransaction`, everything else reads it as a
 * {@linkcode ShipReader}. An event applied from the log keeps its job in the
 * log entry that carried it (cluster/storage/entry_payloads.ts): the row
 * holds where.
 * @module
 */

import type { DatabaseSync, SQLInputValue, StatementSync } from "node:sqlite";
import { type ShipInfo, shipKey, shipOfKey, type ShipReader, type StoredEvent } from "../ships.ts";
import { EntryPayloads, type PayloadRef } from "./entry_payloads.ts";

const NO_BYTES = new Uint8Array(0);

/** Rows {@linkcode ShipTables.events} reads at once (a page of small rows, whatever the count). */
const EVENT_ROWS_PER_READ = 256;

/** Largest answer of {@linkcode ShipTables.events} unless the caller asks for less. */
export const EVENTS_BYTES_MAX_DEFAULT = 4 * 1024 * 1024;

/** Event rows one INSERT writes at most (8 values each). */
const EVENT_ROWS_PER_INSERT = 32;

/** An event whose job is `length` bytes at `at` in its entry's data. */
export interface EntryEvent {
  readonly eve: number;
  readonly mug: number;
  readonly at: number;
  readonly length: number;
}

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
  readonly #ownJob: StatementSync;
  readonly #insertEvent: StatementSync;
  readonly #advance: StatementSync;
  readonly #putShip: StatementSync;
  readonly #chop: StatementSync;
  readonly #chopEvents: StatementSync;
  readonly #entriesOf: StatementSync;
  readonly #entriesBelow: StatementSync;
  readonly #payloads: EntryPayloads;
  readonly #db: DatabaseSync;
  /** INSERTs of n event rows, prepared on first use. */
  readonly #insertEvents = new Map<number, StatementSync>();

  /** Prepares the statements (the store calls this once per open). */
  constructor(db: DatabaseSync, payloads: EntryPayloads) {
    this.#payloads = payloads;
    this.#db = db;
    this.#get = db.prepare("SELECT * FROM ship WHERE ship = ?");
    this.#list = db.prepare("SELECT * FROM ship ORDER BY ship");
    this.#insertShip = db.prepare(
      "INSERT INTO ship (ship, fake, optimism, life, last_eve, last_mug, bytes, added_index) VALUES (?, ?, ?, ?, 0, 0, 0, ?)",
    );
    this.#putShip = db.prepare(
      "INSERT OR REPLACE INTO ship (ship, fake, optimism, life, last_eve, last_mug, bytes, added_index, first_eve) VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?)",
    );
    this.#chop = db.prepare(
      "UPDATE ship SET first_eve = ?, bytes = bytes - coalesce((SELECT sum(max(length(job), job_len)) FROM event WHERE ship = ?2 AND eve < ?1), 0) WHERE ship = ?2",
    );
    this.#chopEvents = db.prepare("DELETE FROM event WHERE ship = ? AND eve < ?");
    this.#entriesOf = db.prepare(
      "SELECT DISTINCT entry_index FROM event WHERE ship = ? AND job_at >= 0",
    );
    this.#entriesBelow = db.prepare(
      "SELECT DISTINCT entry_index FROM event WHERE ship = ? AND eve < ? AND job_at >= 0 AND entry_index < ?",
    );
    this.#deleteShip = db.prepare("DELETE FROM ship WHERE ship = ?");
    this.#deleteEvents = db.prepare("DELETE FROM event WHERE ship = ?");
    this.#setOptimism = db.prepare("UPDATE ship SET optimism = ? WHERE ship = ?");
    this.#event = db.prepare(
      "SELECT eve, mug, job, entry_index, entry_term, job_at, job_len FROM event WHERE ship = ?1 AND eve = ?2 AND eve <= (SELECT last_eve FROM ship WHERE ship = ?1)",
    );
    // Without the bytes a row holds itself (a snapshot's: up to a whole job each), so that a
    // page of rows is read at once (all() costs half of iterate() per row) and a row's own bytes
    // only once it is inside the byte budget.
    this.#events = db.prepare(
      "SELECT eve, mug, entry_index, entry_term, job_at, iif(job_at < 0, length(job), job_len) AS job_len FROM event WHERE ship = ?1 AND eve >= ?2 AND eve <= (SELECT last_eve FROM ship WHERE ship = ?1) ORDER BY eve LIMIT ?3",
    );
    this.#ownJob = db.prepare("SELECT job FROM event WHERE ship = ? AND eve = ?");
    this.#insertEvent = db.prepare(
      "INSERT OR REPLACE INTO event (ship, eve, mug, job, entry_index, entry_term, job_at, job_len) VALUES (?, ?, ?, ?, ?, ?, ?, ?)",
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
    return row === undefined ? undefined : this.#toEvent(row);
  }

  /** Up to `count` events from `from`, stopping after `bytesMax` bytes (at least one event). */
  events(
    ship: bigint,
    from: number,
    count: number,
    bytesMax = EVENTS_BYTES_MAX_DEFAULT,
  ): StoredEvent[] {
    const out: StoredEvent[] = [];
    const key = shipKey(ship);
    let bytes = 0;
    for (let next = from, left = count; left > 0;) {
      const page = Math.min(left, EVENT_ROWS_PER_READ);
      const rows = this.#events.all(key, next, page);
      for (const row of rows) {
        const length = Number(row.job_len);
        if (out.length > 0 && bytes + length > bytesMax) return out;
        if (Number(row.job_at) < 0) row.job = this.#ownJob.get(key, row.eve)!.job;
        out.push(this.#toEvent(row));
        bytes += length;
      }
      if (rows.length < page) break;
      left -= page;
      next = out[out.length - 1].eve + 1;
    }
    return out;
  }

  /** Adds a ship with no events (write; inside an apply transaction). */
  insertShip(info: Pick<ShipInfo, "ship" | "fake" | "optimism" | "life" | "addedIndex">): void {
    // Rows a snapshot staged under this name and never installed are not this ship's.
    this.#deleteEvents.run(shipKey(info.ship));
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
      info.firstEve,
    );
  }

  /** Removes a ship and all its events (write). */
  deleteShip(ship: bigint): void {
    const key = shipKey(ship);
    this.#payloads.release(this.#entryIndexes(this.#entriesOf.all(key)));
    this.#deleteEvents.run(key);
    this.#deleteShip.run(key);
  }

  /** Changes a ship's optimism (write). */
  setOptimism(ship: bigint, optimism: number): void {
    this.#setOptimism.run(optimism, shipKey(ship));
  }

  /**
   * Appends the ship's next event (write); the caller has checked it is
   * last_eve + 1. With `from`, the job stays in the log entry it points
   * into (which is kept through compaction); without, the row holds it.
   */
  /**
   * Appends events whose jobs stay in entry `entryIndex`'s bytes (write;
   * inside an apply transaction): their rows, EVENT_ROWS_PER_INSERT per
   * statement, and the ship's row once.
   */
  appendEntryEvents(
    ship: bigint,
    events: readonly EntryEvent[],
    entryIndex: number,
    entryTerm: number,
  ): void {
    if (events.length === 0) return;
    const key = shipKey(ship);
    this.#payloads.keep(entryIndex);
    let bytes = 0;
    for (let i = 0; i < events.length; i += EVENT_ROWS_PER_INSERT) {
      const n = Math.min(EVENT_ROWS_PER_INSERT, events.length - i);
      const values: SQLInputValue[] = new Array(8 * n);
      for (let j = 0, v = 0; j < n; j++) {
        const e = events[i + j];
        values[v++] = key;
        values[v++] = e.eve;
        values[v++] = e.mug;
        values[v++] = NO_BYTES;
        values[v++] = entryIndex;
        values[v++] = entryTerm;
        values[v++] = e.at;
        values[v++] = e.length;
        bytes += e.length;
      }
      this.#insertEventRows(n).run(...values);
    }
    const last = events[events.length - 1];
    this.#advance.run(last.eve, last.mug, bytes, key);
  }

  #insertEventRows(n: number): StatementSync {
    let st = this.#insertEvents.get(n);
    if (st === undefined) {
      st = this.#db.prepare(
        "INSERT OR REPLACE INTO event (ship, eve, mug, job, entry_index, entry_term, job_at, job_len) VALUES " +
          Array(n).fill("(?, ?, ?, ?, ?, ?, ?, ?)").join(", "),
      );
      this.#insertEvents.set(n, st);
    }
    return st;
  }

  appendEvent(ship: bigint, event: StoredEvent, from?: PayloadRef): void {
    const key = shipKey(ship);
    const e = event;
    if (from === undefined) {
      this.#insertEvent.run(key, e.eve, e.mug, e.job, e.entryIndex, e.entryTerm, -1, 0);
    } else {
      this.#payloads.keep(from.entryIndex);
      this.#insertEvent.run(
        key,
        e.eve,
        e.mug,
        NO_BYTES,
        from.entryIndex,
        e.entryTerm,
        from.at,
        from.length,
      );
    }
    this.#advance.run(e.eve, e.mug, e.job.length, key);
  }

  /**
   * Stages an event of a snapshot being received (write): past the ship's
   * last event, where no reader sees it until the install counts it
   * (cluster/storage/snapshot_stage.ts); the row holds its job.
   */
  stageEvent(ship: bigint, e: StoredEvent): void {
    this.#insertEvent.run(shipKey(ship), e.eve, e.mug, e.job, e.entryIndex, e.entryTerm, -1, 0);
  }

  /**
   * Drops the ship's events before `firstEve` and the log entries only they
   * pointed into (write; `seguro ship chop`). The entry that also carries
   * `firstEve` stays.
   */
  chop(ship: bigint, firstEve: number): void {
    const key = shipKey(ship);
    const keepFrom = this.event(ship, firstEve)?.entryIndex ?? Number.MAX_SAFE_INTEGER;
    this.#payloads.release(this.#entryIndexes(this.#entriesBelow.all(key, firstEve, keepFrom)));
    this.#chop.run(firstEve, key);
    this.#chopEvents.run(key, firstEve);
  }

  #entryIndexes(rows: Record<string, unknown>[]): number[] {
    return rows.map((r) => Number(r.entry_index));
  }

  #toEvent(row: Record<string, unknown>): StoredEvent {
    const at = Number(row.job_at);
    const entryIndex = Number(row.entry_index);
    return {
      eve: Number(row.eve),
      mug: Number(row.mug),
      job: at < 0
        ? row.job as Uint8Array
        : this.#payloads.read({ entryIndex, at, length: Number(row.job_len) }),
      entryIndex,
      entryTerm: Number(row.entry_term),
    };
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
    firstEve: Number(row.first_eve),
  };
}
