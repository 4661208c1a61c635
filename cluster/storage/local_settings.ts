/**
 * This node's own settings, never replicated, in `local_setting` (the
 * `setting` table of schema versions 1 to 3, renamed in version 4 once the
 * state machine's rows moved to `machine_setting`). Each write is its own
 * transaction, flushed at once (durable within one flush). Every key is here:
 *
 * | key                                | value                                             |
 * | ---------------------------------- | ------------------------------------------------- |
 * | `listen`, `advertise`              | where this node listens and is reached            |
 * | `raft.election.timeout.ms`         | the base election timeout given at init, join or run |
 * | `node.removed`                     | who said this node was removed (0: its own log)   |
 * | `raft.led.terms`                   | the last terms this node led, comma-separated     |
 * | `loss.<index>.<term>.<ship>`       | a released-but-lost finding (JSON, with the time) |
 * | `release.suspect.<index>.<term>`   | a released entry awaiting its verdict (JSON)      |
 *
 * The last three are the release bookkeeping of cluster/release.ts
 * (docs/durability.md): what lets a restarted node still report a loss.
 * Constructed by the store only.
 * @module
 */

import type { DatabaseSync } from "node:sqlite";
import { KeyValueTable } from "./key_value_table.ts";
import type { Loss, PlannedEntry } from "../release.ts";

const LISTEN = "listen";
const ADVERTISE = "advertise";
const ELECTION_TIMEOUT_MS = "raft.election.timeout.ms";
const REMOVED_BY = "node.removed";
const LED_TERMS = "raft.led.terms";
const LOSS_PREFIX = "loss.";
const SUSPECT_PREFIX = "release.suspect.";

/** How many of the terms this node led are kept. */
export const LED_TERMS_KEPT = 16;

/** What a new store starts with. */
export interface LocalSettingsInit {
  /** Where the node listens. */
  listen?: string;
  /** Where other nodes reach it. */
  advertise?: string;
}

/** Typed reads and durable writes of this node's settings. */
export class LocalSettings {
  readonly #table: KeyValueTable;
  readonly #write: (body: () => void) => void;

  /**
   * Prepares the statements (the store calls this once per open); `write`
   * runs its body in one durable transaction of the store.
   */
  constructor(db: DatabaseSync, write: (body: () => void) => void) {
    this.#table = new KeyValueTable(db, "local_setting");
    this.#write = write;
  }

  /** Writes the settings of a new store (inside the creating transaction). */
  static initialize(db: DatabaseSync, init: LocalSettingsInit): void {
    const set = db.prepare("INSERT INTO local_setting (key, value) VALUES (?, ?)");
    if (init.listen !== undefined) set.run(LISTEN, init.listen);
    if (init.advertise !== undefined) set.run(ADVERTISE, init.advertise);
  }

  /** Where this node listens, as recorded when it was created. */
  listen(): string | undefined {
    return this.#value(LISTEN);
  }

  /** Where other nodes reach this node, as recorded when it was created. */
  advertise(): string | undefined {
    return this.#value(ADVERTISE);
  }

  /** The base election timeout last given (ms), or undefined. */
  electionTimeoutMs(): number | undefined {
    const value = this.#value(ELECTION_TIMEOUT_MS);
    return value === undefined ? undefined : Number(value);
  }

  /** Keeps the base election timeout for later runs (durable). */
  setElectionTimeoutMs(ms: number): void {
    this.#setValue(ELECTION_TIMEOUT_MS, String(ms));
  }

  /** Who said this node was removed from its cluster (0: its own log), or undefined. */
  removedBy(): number | undefined {
    const value = this.#value(REMOVED_BY);
    return value === undefined ? undefined : Number(value);
  }

  /** Records that this node was removed, and who said so (durable). */
  setRemovedBy(by: number): void {
    this.#setValue(REMOVED_BY, String(by));
  }

  /** The terms this node led (at most {@linkcode LED_TERMS_KEPT}, oldest first). */
  ledTerms(): number[] {
    const listed = this.#value(LED_TERMS);
    return listed ? listed.split(",").map(Number) : [];
  }

  /** Keeps the last {@linkcode LED_TERMS_KEPT} of `terms` (durable). */
  setLedTerms(terms: readonly number[]): void {
    this.#setValue(LED_TERMS, terms.slice(-LED_TERMS_KEPT).join(","));
  }

  /** Every loss recorded, by this run or an earlier one, in key order. */
  losses(): Loss[] {
    return this.#table.withPrefix(LOSS_PREFIX).map((row) => {
      const l = JSON.parse(row.value);
      return {
        ship: BigInt(l.ship),
        firstEve: l.firstEve,
        lastEve: l.lastEve,
        index: l.index,
        term: l.term,
      };
    });
  }

  /** Records a loss found at `atMs` (wall clock; durable). */
  recordLoss(loss: Loss, atMs: number): void {
    this.#setValue(
      `${LOSS_PREFIX}${loss.index}.${loss.term}.${loss.ship}`,
      JSON.stringify({ ...loss, ship: String(loss.ship), at: new Date(atMs).toISOString() }),
    );
  }

  /** Released entries recorded while they awaited their verdict, in key order. */
  suspects(): PlannedEntry[] {
    return this.#table.withPrefix(SUSPECT_PREFIX).map((row) => {
      const e = JSON.parse(row.value);
      return { ...e, ship: BigInt(e.ship) };
    });
  }

  /** Records a released entry the log no longer reaches (durable). */
  saveSuspect(e: PlannedEntry): void {
    this.#setValue(
      `${SUSPECT_PREFIX}${e.index}.${e.term}`,
      JSON.stringify({ ...e, ship: String(e.ship) }),
    );
  }

  /** Forgets a recorded entry once it has its verdict (durable). */
  forgetSuspect(e: PlannedEntry): void {
    this.#write(() => this.#table.delete(`${SUSPECT_PREFIX}${e.index}.${e.term}`));
  }

  #value(key: string): string | undefined {
    return this.#table.get(key);
  }

  #setValue(key: string, value: string): void {
    this.#write(() => this.#table.set(key, value));
  }
}
