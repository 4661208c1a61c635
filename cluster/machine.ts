/**
 * The replicated state machine of a cluster: what a committed `normal` entry
 * means. Every node applies the same entries in the same order, so every node
 * ends with the same state.
 *
 * ```
 * command := kind:u8 body
 * kind 1  raw      body: opaque bytes (test and benchmark writes; no effect)
 * kind 2  address  body: nodeId:u32 address:text   (where a member listens)
 * ```
 * Applying is idempotent, so entries re-applied after a restart (those after
 * the last persisted applied index) change nothing.
 * @module
 */

import { ByteReader, ByteWriter } from "./codec.ts";

/** Kinds of command in a `normal` entry. */
export const CommandKind = { raw: 1, address: 2 } as const;

/** A decoded command. */
export type Command =
  | { kind: "raw"; data: Uint8Array }
  | { kind: "address"; nodeId: number; address: string };

/** Encodes a raw write (opaque bytes). */
export function encodeRaw(data: Uint8Array): Uint8Array {
  const out = new Uint8Array(1 + data.length);
  out[0] = CommandKind.raw;
  out.set(data, 1);
  return out;
}

/** Encodes "node `nodeId` listens at `address`". */
export function encodeAddress(nodeId: number, address: string): Uint8Array {
  return new ByteWriter(64).u8(CommandKind.address).u32(nodeId).text(address).finish();
}

/** Decodes a command; throws WireError when malformed. */
export function decodeCommand(data: Uint8Array): Command {
  const r = new ByteReader(data);
  const kind = r.u8("command kind");
  if (kind === CommandKind.raw) return { kind: "raw", data: data.subarray(1) };
  if (kind === CommandKind.address) {
    const nodeId = r.u32("node id");
    const address = r.text("address");
    r.end("address command");
    return { kind: "address", nodeId, address };
  }
  throw new RangeError(`Unknown command kind ${kind} in a committed entry`);
}

/** Where the machine keeps what must survive a restart. */
export interface MachineStore {
  /** Reads a setting. */
  getSetting(key: string): string | undefined;
  /** Writes a setting durably. */
  setSetting(key: string, value: string): void;
}

const ADDRESS_PREFIX = "member.address.";

/** The applied state: member addresses, and counters of raw writes. */
export class Machine {
  readonly #store: MachineStore;
  readonly #addresses = new Map<number, string>();
  /** Raw writes applied since this process started. */
  rawApplied = 0;
  /** Bytes of raw writes applied since this process started. */
  rawBytesApplied = 0;

  /** Loads the addresses already applied. */
  constructor(store: MachineStore) {
    this.#store = store;
    const listed = store.getSetting("member.ids");
    for (const id of listed ? listed.split(",").map(Number) : []) {
      const address = store.getSetting(ADDRESS_PREFIX + id);
      if (address !== undefined) this.#addresses.set(id, address);
    }
  }

  /** Every member address known, by node id. */
  get addresses(): ReadonlyMap<number, string> {
    return this.#addresses;
  }

  /** Records an address durably (used when applying, and when seeding a static cluster). */
  setAddress(nodeId: number, address: string): void {
    if (this.#addresses.get(nodeId) === address) return;
    this.#addresses.set(nodeId, address);
    this.#store.setSetting(ADDRESS_PREFIX + nodeId, address);
    this.#store.setSetting("member.ids", [...this.#addresses.keys()].join(","));
  }

  /** Applies one committed `normal` entry's data. */
  apply(data: Uint8Array): Command {
    const command = decodeCommand(data);
    if (command.kind === "raw") {
      this.rawApplied++;
      this.rawBytesApplied += command.data.length;
    } else {
      this.setAddress(command.nodeId, command.address);
    }
    return command;
  }
}
