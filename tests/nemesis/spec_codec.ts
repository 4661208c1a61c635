/**
 * The runtime protocol's bytes, written from docs/runtime-protocol.md alone
 * (not from vere/newt.ts or vere/runtime_protocol.ts), so that the nemesis
 * checks the node against the specification rather than against its own
 * code: newt framing (section 1), the nouns of every message and their field rules
 * (section 2, section 3). Only `jam`, `cue` and the cell constructor come from
 * vere/noun.ts, a pure codec.
 *
 * ```ts ignore
 * const frame = encodeRuntimeFrame({ tag: "head", ship: 0n });
 * // 00 06 00 00 00 01 1f ad 2c 8c 2c
 * ```
 * @module
 */

import { Cell, cell, cue, isCell, jam, type Noun } from "../../vere/noun.ts";
import { FRAME_BYTES_MAX } from "./limits.ts";

/** The only protocol version (section 4 rule 1). */
export const PROTOCOL_VERSION = 1;

/** Largest eve, count or version: 2^53 - 1. */
const UD_MAX = Number.MAX_SAFE_INTEGER;
/** Largest ship: a 128-bit atom. */
const SHIP_LIMIT = 1n << 128n;
/** Largest mug. */
const MUG_MAX = 0xffff_ffff;

/** A frame or message that breaks the specification; the message says which rule. */
export class SpecError extends Error {
  /** Creates the error; `message` is a complete sentence without a trailing period. */
  constructor(message: string) {
    super(message);
    this.name = "SpecError";
  }
}

/** One logged event as `%logs` carries it. */
export interface WireEvent {
  /** Event number. */
  eve: number;
  /** Mug after the event. */
  mug: number;
  /** The event's jam bytes. */
  job: Uint8Array;
}

/** A message a runtime sends (section 3, runtime -> node). */
export type RuntimeMessage =
  | { tag: "hail"; version: number }
  | { tag: "plan"; ship: bigint; eve: number; mug: number; job: Uint8Array }
  | { tag: "read"; ship: bigint; from: number; count: number }
  | { tag: "head"; ship: bigint };

/** A message a node sends (section 3, node -> runtime). */
export type NodeMessage =
  | { tag: "hail"; version: number; node: number }
  | { tag: "done"; ship: bigint; eve: number }
  | { tag: "nope"; ship: bigint; eve: number; why: string }
  | { tag: "away"; ship: bigint; master: string }
  | { tag: "logs"; ship: bigint; from: number; events: WireEvent[] }
  | { tag: "head"; ship: bigint; eve: number; mug: number }
  | { tag: "lead"; ship: bigint }
  | { tag: "fence"; ship: bigint }
  | { tag: "oops"; why: string };

// ------------------------------------------------------------ atoms and text

/** The atom whose bytes, least significant first, are `bytes` (section 2: `u3i_bytes`). */
export function atomOfBytes(bytes: Uint8Array): bigint {
  let hex = "";
  for (let i = bytes.length - 1; i >= 0; i--) hex += bytes[i].toString(16).padStart(2, "0");
  return hex === "" ? 0n : BigInt("0x" + hex);
}

/** The minimal little-endian bytes of an atom (0 has none). */
export function bytesOfAtom(atom: bigint): Uint8Array {
  if (atom === 0n) return new Uint8Array(0);
  let hex = atom.toString(16);
  if (hex.length % 2 === 1) hex = "0" + hex;
  const out = new Uint8Array(hex.length / 2);
  for (let i = 0; i < out.length; i++) {
    out[i] = parseInt(hex.slice(hex.length - 2 * i - 2, hex.length - 2 * i), 16);
  }
  return out;
}

const utf8 = new TextEncoder();
const utf8Strict = new TextDecoder("utf-8", { fatal: true });

/** A cord: the UTF-8 bytes of `text` read little-endian. */
export function cordOf(text: string): bigint {
  return atomOfBytes(utf8.encode(text));
}

function textOf(noun: Noun, what: string): string {
  const bytes = bytesOfAtom(atomOf(noun, what));
  try {
    return utf8Strict.decode(bytes);
  } catch {
    throw new SpecError(`The ${what} is not UTF-8 text`);
  }
}

// ------------------------------------------------------------ framing (section 1)

/** A newt frame: `0x00`, the body's length as a u32 little-endian, the body. */
export function encodeFrame(body: Uint8Array): Uint8Array {
  if (body.length < 1) throw new SpecError("A frame body has at least one byte");
  const out = new Uint8Array(5 + body.length);
  out[0] = 0;
  new DataView(out.buffer).setUint32(1, body.length, true);
  out.set(body, 5);
  return out;
}

/** Cuts a byte stream into frame bodies; broken framing throws (the stream is lost). */
export class FrameReader {
  #buf = new Uint8Array(64 * 1024);
  #start = 0;
  #end = 0;

  /** Appends bytes read from the stream. */
  push(bytes: Uint8Array): void {
    if (this.#end + bytes.length > this.#buf.length) {
      const kept = this.#end - this.#start;
      const size = Math.max(this.#buf.length, 2 * (kept + bytes.length));
      const next = kept + bytes.length <= this.#buf.length ? this.#buf : new Uint8Array(size);
      next.set(this.#buf.subarray(this.#start, this.#end), 0);
      this.#buf = next;
      this.#end = kept;
      this.#start = 0;
    }
    this.#buf.set(bytes, this.#end);
    this.#end += bytes.length;
  }

  /** The next whole body, or undefined until more bytes arrive. */
  next(): Uint8Array | undefined {
    const have = this.#end - this.#start;
    if (have < 1) return undefined;
    if (this.#buf[this.#start] !== 0) {
      throw new SpecError(
        `A frame starts with version tag 0x00, not 0x${this.#buf[this.#start].toString(16)}`,
      );
    }
    if (have < 5) return undefined;
    const length = new DataView(this.#buf.buffer, this.#start + 1, 4).getUint32(0, true);
    if (length === 0) throw new SpecError("A frame body has at least one byte (got length 0)");
    if (length > FRAME_BYTES_MAX) {
      throw new SpecError(`A frame of ${length} bytes is above the ${FRAME_BYTES_MAX} limit`);
    }
    if (have < 5 + length) return undefined;
    const body = this.#buf.slice(this.#start + 5, this.#start + 5 + length);
    this.#start += 5 + length;
    if (this.#start === this.#end) this.#start = this.#end = 0;
    return body;
  }
}

// ------------------------------------------------------------ nouns (section 2, section 3)

function tuple(items: Noun[]): Noun {
  let out = items[items.length - 1];
  for (let i = items.length - 2; i >= 0; i--) out = cell(items[i], out);
  return out;
}

function atomOf(noun: Noun, what: string): bigint {
  if (isCell(noun)) throw new SpecError(`The ${what} is a cell where an atom belongs`);
  return noun;
}

function udOf(noun: Noun, what: string, min: number): number {
  const a = atomOf(noun, what);
  if (a > BigInt(UD_MAX)) throw new SpecError(`The ${what} ${a} is above 2^53 - 1`);
  const n = Number(a);
  if (n < min) throw new SpecError(`The ${what} is ${n}, below ${min}`);
  return n;
}

function shipOf(noun: Noun): bigint {
  const a = atomOf(noun, "ship");
  if (a >= SHIP_LIMIT) throw new SpecError(`The ship ${a} is not below 2^128`);
  return a;
}

function mugOf(noun: Noun): number {
  const a = atomOf(noun, "mug");
  if (a > BigInt(MUG_MAX)) throw new SpecError(`The mug ${a} is above 0xffffffff`);
  return Number(a);
}

function jobOf(noun: Noun): Uint8Array {
  const bytes = bytesOfAtom(atomOf(noun, "job"));
  if (bytes.length === 0) throw new SpecError("A job is the jam of an event and is never empty");
  return bytes;
}

/** Exactly `n` fields of a tuple: n - 1 heads and the rest. */
function fieldsOf(noun: Noun, n: number, what: string): Noun[] {
  const out: Noun[] = [];
  let rest = noun;
  for (let i = 0; i < n - 1; i++) {
    if (!(rest instanceof Cell)) throw new SpecError(`%${what} has fewer than ${n} fields`);
    out.push(rest.head);
    rest = rest.tail;
  }
  out.push(rest);
  return out;
}

/** The body (jam bytes) of a runtime's message. */
export function encodeRuntimeMessage(msg: RuntimeMessage): Uint8Array {
  const tag = cordOf(msg.tag);
  switch (msg.tag) {
    case "hail":
      return jam(tuple([tag, BigInt(msg.version), 0n]));
    case "plan":
      return jam(
        tuple([tag, msg.ship, BigInt(msg.eve), BigInt(msg.mug), atomOfBytes(msg.job)]),
      );
    case "read":
      return jam(tuple([tag, msg.ship, BigInt(msg.from), BigInt(msg.count)]));
    case "head":
      return jam(tuple([tag, msg.ship]));
  }
}

/** A runtime's message as a whole frame. */
export function encodeRuntimeFrame(msg: RuntimeMessage): Uint8Array {
  return encodeFrame(encodeRuntimeMessage(msg));
}

/** The body of a node's message (for fake nodes in tests and for the byte table's check). */
export function encodeNodeMessage(msg: NodeMessage): Uint8Array {
  const tag = cordOf(msg.tag);
  switch (msg.tag) {
    case "hail":
      return jam(tuple([tag, BigInt(msg.version), BigInt(msg.node)]));
    case "done":
      return jam(tuple([tag, msg.ship, BigInt(msg.eve)]));
    case "nope":
      return jam(tuple([tag, msg.ship, BigInt(msg.eve), cordOf(msg.why)]));
    case "away":
      return jam(tuple([tag, msg.ship, cordOf(msg.master)]));
    case "logs": {
      let list: Noun = 0n;
      for (let i = msg.events.length - 1; i >= 0; i--) {
        const e = msg.events[i];
        list = cell(tuple([BigInt(e.eve), BigInt(e.mug), atomOfBytes(e.job)]), list);
      }
      return jam(tuple([tag, msg.ship, BigInt(msg.from), list]));
    }
    case "head":
      return jam(tuple([tag, msg.ship, BigInt(msg.eve), BigInt(msg.mug)]));
    case "lead":
    case "fence":
      return jam(tuple([tag, msg.ship]));
    case "oops":
      return jam(tuple([tag, cordOf(msg.why)]));
  }
}

const NODE_TAGS = new Map<bigint, NodeMessage["tag"]>(
  (["hail", "done", "nope", "away", "logs", "head", "lead", "fence", "oops"] as const).map((
    t,
  ) => [cordOf(t), t]),
);

/** Decodes a node's frame body; anything the specification does not allow throws. */
export function decodeNodeMessage(body: Uint8Array): NodeMessage {
  let noun: Noun;
  try {
    noun = cue(body);
  } catch (e) {
    throw new SpecError(`The body is not a valid jam: ${(e as Error).message}`);
  }
  if (!(noun instanceof Cell)) throw new SpecError("A message is a cell, not an atom");
  const tag = NODE_TAGS.get(atomOf(noun.head, "tag"));
  if (tag === undefined) throw new SpecError("The message's tag is not one a node sends");
  switch (tag) {
    case "hail": {
      const [, version, node] = fieldsOf(noun, 3, tag);
      return { tag, version: udOf(version, "version", 0), node: udOf(node, "node", 1) };
    }
    case "done": {
      const [, ship, eve] = fieldsOf(noun, 3, tag);
      return { tag, ship: shipOf(ship), eve: udOf(eve, "eve", 1) };
    }
    case "nope": {
      const [, ship, eve, why] = fieldsOf(noun, 4, tag);
      return { tag, ship: shipOf(ship), eve: udOf(eve, "eve", 1), why: textOf(why, "why") };
    }
    case "away": {
      const [, ship, master] = fieldsOf(noun, 3, tag);
      return { tag, ship: shipOf(ship), master: textOf(master, "master") };
    }
    case "logs": {
      const [, ship, fromNoun, list] = fieldsOf(noun, 4, tag);
      const from = udOf(fromNoun, "from", 1);
      const events: WireEvent[] = [];
      let rest = list;
      while (rest instanceof Cell) {
        const [eve, mug, job] = fieldsOf(rest.head, 3, "logs event");
        const e = { eve: udOf(eve, "eve", 1), mug: mugOf(mug), job: jobOf(job) };
        if (e.eve !== from + events.length) {
          throw new SpecError(`%logs events are not consecutive from ${from} (got ${e.eve})`);
        }
        events.push(e);
        rest = rest.tail;
      }
      if (rest !== 0n) throw new SpecError("The %logs list does not end in ~");
      return { tag, ship: shipOf(ship), from, events };
    }
    case "head": {
      const [, ship, eve, mug] = fieldsOf(noun, 4, tag);
      return { tag, ship: shipOf(ship), eve: udOf(eve, "eve", 0), mug: mugOf(mug) };
    }
    case "lead":
    case "fence": {
      const [, ship] = fieldsOf(noun, 2, tag);
      return { tag, ship: shipOf(ship) };
    }
    case "oops": {
      const [, why] = fieldsOf(noun, 2, tag);
      return { tag, why: textOf(why, "why") };
    }
  }
}
