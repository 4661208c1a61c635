/**
 * What a ship is to the cluster: its record, its stored events, its 16-byte
 * key, and the read-only view of the applied ship state that everything but
 * the state machine uses. The tables themselves (`ship`, `event`) are in
 * cluster/storage/ship_tables.ts; only the state machine (cluster/machine.ts)
 * writes them, inside `Store.applyTransaction`.
 * @module
 */

/** A ship as the cluster knows it. */
export interface ShipInfo {
  /** The ship (`@p` as a number). */
  ship: bigint;
  /** A fake ship (no real identity on the network). */
  fake: boolean;
  /** Replicas that must hold an event before release; -1: the cluster default, -2: a quorum. */
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
  /** Its first event held: 1, or the one after the epoch its log was chopped at. */
  firstEve: number;
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
  /** Term of that entry (0 when stored before schema 5): with the index, which entry it was. */
  entryTerm: number;
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

/**
 * The applied ship state, read only: what the ship master, the admin
 * service, standby piers and metrics see.
 */
export interface ShipReader {
  /** One ship, or undefined. */
  get(ship: bigint): ShipInfo | undefined;
  /** Every ship, in @p order. */
  list(): ShipInfo[];
  /** One event, or undefined. */
  event(ship: bigint, eve: number): StoredEvent | undefined;
  /** Up to `count` events from `from`, stopping after `bytesMax` bytes (at least one event). */
  events(ship: bigint, from: number, count: number, bytesMax?: number): StoredEvent[];
}
