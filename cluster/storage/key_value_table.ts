/**
 * A `(key TEXT PRIMARY KEY, value TEXT)` table of the store: the statements
 * both settings tables use (local_settings.ts, machine_settings.ts). Who
 * writes in which transaction is the caller's business.
 * @module
 */

import type { DatabaseSync, StatementSync } from "node:sqlite";

/** The key-value tables of the schema. */
export type KeyValueTableName = "local_setting" | "machine_setting";

/** Prepared reads and writes of one key-value table. */
export class KeyValueTable {
  readonly #get: StatementSync;
  readonly #set: StatementSync;
  readonly #delete: StatementSync;
  readonly #withPrefix: StatementSync;

  /** Prepares the statements for `table` in `db`. */
  constructor(db: DatabaseSync, table: KeyValueTableName) {
    this.#get = db.prepare(`SELECT value FROM ${table} WHERE key = ?`);
    this.#set = db.prepare(
      `INSERT INTO ${table} (key, value) VALUES (?, ?) ON CONFLICT (key) DO UPDATE SET value = excluded.value`,
    );
    this.#delete = db.prepare(`DELETE FROM ${table} WHERE key = ?`);
    this.#withPrefix = db.prepare(
      `SELECT key, value FROM ${table} WHERE substr(key, 1, length(?)) = ? ORDER BY key`,
    );
  }

  /** The value of `key`, or undefined. */
  get(key: string): string | undefined {
    const row = this.#get.get(key);
    return row === undefined ? undefined : String(row.value);
  }

  /** Sets `key` to `value`. */
  set(key: string, value: string): void {
    this.#set.run(key, value);
  }

  /** Deletes `key` (nothing if absent). */
  delete(key: string): void {
    this.#delete.run(key);
  }

  /** Every row whose key starts with `prefix`, in key order. */
  withPrefix(prefix: string): { key: string; value: string }[] {
    return this.#withPrefix.all(prefix, prefix).map((row) => ({
      key: String(row.key),
      value: String(row.value),
    }));
  }
}
