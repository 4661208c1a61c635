/**
 * The replicated settings of the state machine, in its own table
 * `machine_setting` (schema version 4; before, they shared `setting` with the
 * node's local settings). Every node writes the same rows in the same order,
 * inside `Store.applyTransaction`, because they are applied from committed
 * entries. Every key the state machine uses is here:
 *
 * | key                      | value                                         |
 * | ------------------------ | --------------------------------------------- |
 * | `member.ids`             | ids with a known address, comma-separated     |
 * | `member.address.<id>`    | where member `id` listens                     |
 * | `member.removed`         | ids whose removal was applied, comma-separated |
 * | `member.revoked.<serial>` | `1`: the TLS certificate with this serial (hex) is revoked |
 * | `ship.optimism.default`  | the cluster's default optimism                |
 * | `ship.run.<decimal @p>`  | `1`: the master runs its `--exec` command for the ship |
 * | `ship.layout.<decimal @p>` | the layout of the ship's pier (`log1`, `epochs1`, `epochs2`) |
 *
 * Constructed by the store only.
 * @module
 */

import type { DatabaseSync } from "node:sqlite";
import { KeyValueTable } from "./key_value_table.ts";

const IDS = "member.ids";
const ADDRESS_PREFIX = "member.address.";
const REMOVED = "member.removed";
const DEFAULT_OPTIMISM = "ship.optimism.default";
const RUN_PREFIX = "ship.run.";
const REVOKED_PREFIX = "member.revoked.";
const LAYOUT_PREFIX = "ship.layout.";

/** Key prefixes of the settings that moved from `setting` to `machine_setting` in version 4. */
export const MACHINE_SETTING_PREFIXES: readonly string[] = ["member.", "ship."];

/** Typed reads and writes of the state machine's settings. */
export class MachineSettings {
  readonly #table: KeyValueTable;

  /** Prepares the statements (the store calls this once per open). */
  constructor(db: DatabaseSync) {
    this.#table = new KeyValueTable(db, "machine_setting");
  }

  /**
   * Writes the founding member addresses of a new store (inside the
   * creating transaction): the simulator's nodes start knowing each other.
   */
  static initialize(db: DatabaseSync, addresses: ReadonlyMap<number, string>): void {
    const settings = new MachineSettings(db);
    for (const [id, address] of addresses) settings.setAddress(id, address, [...addresses.keys()]);
  }

  /** Every member address applied, by node id. */
  addresses(): Map<number, string> {
    const out = new Map<number, string>();
    for (const id of this.#ids(IDS)) {
      const address = this.#table.get(ADDRESS_PREFIX + id);
      if (address !== undefined) out.set(id, address);
    }
    return out;
  }

  /** Records where `nodeId` listens; `ids` are every id with an address now (write). */
  setAddress(nodeId: number, address: string, ids: readonly number[]): void {
    this.#table.set(ADDRESS_PREFIX + nodeId, address);
    this.#table.set(IDS, ids.join(","));
  }

  /** The nodes whose removal from the cluster was applied. */
  removed(): Set<number> {
    return new Set(this.#ids(REMOVED));
  }

  /** Records every node removed so far (write). */
  setRemoved(ids: Iterable<number>): void {
    this.#table.set(REMOVED, [...ids].join(","));
  }

  /** The cluster's default optimism, or undefined when never set. */
  defaultOptimism(): number | undefined {
    const value = this.#table.get(DEFAULT_OPTIMISM);
    return value === undefined ? undefined : Number(value);
  }

  /** Sets the cluster's default optimism (write). */
  setDefaultOptimism(optimism: number): void {
    this.#table.set(DEFAULT_OPTIMISM, String(optimism));
  }

  /** The ships the master runs its `--exec` command for. */
  runShips(): bigint[] {
    return this.#table.withPrefix(RUN_PREFIX).map((row) =>
      BigInt(row.key.slice(RUN_PREFIX.length))
    );
  }

  /** Turns the run flag of `ship` on or off (write). */
  setRun(ship: bigint, run: boolean): void {
    if (run) this.#table.set(RUN_PREFIX + ship, "1");
    else this.#table.delete(RUN_PREFIX + ship);
  }

  /** The recorded layout of `ship`'s pier, undefined when none was. */
  layout(ship: bigint): string | undefined {
    return this.#table.get(LAYOUT_PREFIX + ship);
  }

  /** Records the layout of `ship`'s pier, or forgets it with undefined (write). */
  setLayout(ship: bigint, layout: string | undefined): void {
    if (layout === undefined) this.#table.delete(LAYOUT_PREFIX + ship);
    else this.#table.set(LAYOUT_PREFIX + ship, layout);
  }

  /** Serials (lowercase hex) of the certificates revoked. */
  revoked(): string[] {
    return this.#table.withPrefix(REVOKED_PREFIX).map((row) =>
      row.key.slice(REVOKED_PREFIX.length)
    );
  }

  /** Revokes the certificate with `serial` (write). */
  revoke(serial: string): void {
    this.#table.set(REVOKED_PREFIX + serial, "1");
  }

  #ids(key: string): number[] {
    const listed = this.#table.get(key);
    return listed ? listed.split(",").map(Number) : [];
  }
}
