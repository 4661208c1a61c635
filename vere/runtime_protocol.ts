/**
 * The messages of Seguro's runtime socket, as nouns. A runtime (a patched
 * vere, or a test client) and a Seguro node exchange them in newt frames
 * (see `newt.ts`); `docs/runtime-protocol.md` is the specification.
 *
 * Every message is a tuple headed by a cord tag: `[%plan ship eve mug job]`
 * is `[cord("plan") [ship [eve [mug job]]]]`. Two tags are used in both
 * directions with different arities: `%hail` (the runtime sends `~` where the
 * node sends its node id) and `%head` (`[%head ship]` asks, `[%head ship eve
 * mug]` answers).
 *
 * @example
 * ```ts
 *
 * import { encodeFrame } from "./newt.ts";
 * import { jam } from "./noun.ts";
 * const noun = encodeRuntimeMessage({ type: "done", ship: 0n, eve: 42 });
 * const frame = encodeFrame(noun); // send this
 * decodeRuntimeFrame(jam(noun)); // { type: "done", ship: 0n, eve: 42 }
 * ```
 * @module
 */

import {
  atomToBytes,
  bitLength,
  bytesToAtom,
  cord,
  cordText,
  cue,
  cueAtomTuple,
  cueAtomTupleSliced,
  isCell,
  type Noun,
  NounError,
  tuple,
  type TupleAtom,
} from "./noun.ts";

/** The version this code speaks, sent in `%hail`. */
export const RUNTIME_PROTOCOL_VERSION = 1;

/** Ships are `@p` atoms of at most 128 bits. */
export const SHIP_BITS_MAX = 128;

/** Largest mug: mugs travel as u32 (`@ux`). */
export const MUG_MAX = 0xffff_ffff;

/** Most atoms in a message from a runtime (`[%plan ship eve mug job]` has 5). */
export const RUNTIME_MESSAGE_ATOMS_MAX = 8;
/** Atoms longer than this many bytes in a runtime's message: only a `%plan` job may be. */
const RUNTIME_FIELD_BYTES_MAX = 64;

/** Thrown when a runtime message is malformed, to decode or to encode. */
export class ProtocolError extends Error {
  /** Makes a ProtocolError with a complete-sentence message. */
  constructor(message: string) {
    super(message);
    this.name = "ProtocolError";
  }
}

/**
 * `[%hail version node]`, the first message each side sends. A runtime sends
 * `~` (0) for `node`; a node sends its node id (>= 1).
 */
export interface HailMessage {
  /** The tag. */
  type: "hail";
  /** The sender's protocol version, {@linkcode RUNTIME_PROTOCOL_VERSION}. */
  version: number;
  /** 0 (`~`) from a runtime, the node's id (>= 1) from a node. */
  node: number;
}

/** `[%plan ship eve mug job]`, runtime -> node: append event `eve` of `ship`. */
export interface PlanMessage {
  /** The tag. */
  type: "plan";
  /** The ship (`@p`). */
  ship: bigint;
  /** The event number, 1-based. */
  eve: number;
  /** The kernel's mug after the event; 0 for boot events. */
  mug: number;
  /** The jam bytes of the event (never empty, never ending in a zero byte). */
  job: Uint8Array;
}

/** `[%read ship from count]`, runtime -> node: send events `from` .. `from + count - 1`. */
export interface ReadMessage {
  /** The tag. */
  type: "read";
  /** The ship (`@p`). */
  ship: bigint;
  /** The first event wanted, 1-based. */
  from: number;
  /** How many events are wanted at most (0 is allowed and answered with none). */
  count: number;
}

/** `[%head ship]`, runtime -> node: ask for the last event number and mug of `ship`. */
export interface HeadRequestMessage {
  /** The tag. */
  type: "head";
  /** The ship (`@p`). */
  ship: bigint;
}

/** `[%done ship eve]`, node -> runtime: effects of events up to `eve` may be released. */
export interface DoneMessage {
  /** The tag. */
  type: "done";
  /** The ship (`@p`). */
  ship: bigint;
  /** The last releasable event, cumulative. */
  eve: number;
}

/** `[%nope ship eve why]`, node -> runtime: the plan of event `eve` was refused. */
export interface NopeMessage {
  /** The tag. */
  type: "nope";
  /** The ship (`@p`). */
  ship: bigint;
  /** The refused event. */
  eve: number;
  /** Why, as a sentence. */
  why: string;
}

/** `[%away ship master]`, node -> runtime: this node is not the master of `ship`. */
export interface AwayMessage {
  /** The tag. */
  type: "away";
  /** The ship (`@p`). */
  ship: bigint;
  /** The master's runtime address, or "" when unknown. */
  master: string;
}

/** One event in a `%logs` answer: `[eve mug job]`. */
export interface LogEntry {
  /** The event number. */
  eve: number;
  /** The kernel's mug after the event; 0 for boot events. */
  mug: number;
  /** The jam bytes of the event. */
  job: Uint8Array;
}

/**
 * `[%logs ship from events]`, node -> runtime: the answer to `%read`.
 * `events` are consecutive from `from` (and may be fewer than asked, or none).
 */
export interface LogsMessage {
  /** The tag. */
  type: "logs";
  /** The ship (`@p`). */
  ship: bigint;
  /** The `from` of the `%read` answered, the eve of `events[0]` if any. */
  from: number;
  /** The events, `events[i].eve === from + i`. */
  events: LogEntry[];
}

/** `[%head ship eve mug]`, node -> runtime: the answer to `%head` (0 and 0 when empty). */
export interface HeadAnswerMessage {
  /** The tag. */
  type: "head";
  /** The ship (`@p`). */
  ship: bigint;
  /** The last event number, 0 when the ship has none. */
  eve: number;
  /** The mug stored with that event, 0 when the ship has none. */
  mug: number;
}

/** `[%lead ship]`, node -> runtime: this node is now master of `ship` and may release. */
export interface LeadMessage {
  /** The tag. */
  type: "lead";
  /** The ship (`@p`). */
  ship: bigint;
}

/** `[%fence ship]`, node -> runtime: no longer master of `ship`; stop releasing now. */
export interface FenceMessage {
  /** The tag. */
  type: "fence";
  /** The ship (`@p`). */
  ship: bigint;
}

/** `[%oops why]`, node -> runtime: the last frame could not be understood. */
export interface OopsMessage {
  /** The tag. */
  type: "oops";
  /** What was wrong, as a sentence. */
  why: string;
}

/** A message a runtime sends to a node. */
export type RuntimeToNodeMessage = HailMessage | PlanMessage | ReadMessage | HeadRequestMessage;

/** A message a node sends to a runtime. */
export type NodeToRuntimeMessage =
  | HailMessage
  | DoneMessage
  | NopeMessage
  | AwayMessage
  | LogsMessage
  | HeadAnswerMessage
  | LeadMessage
  | FenceMessage
  | OopsMessage;

/** Any message of the runtime socket, in either direction. */
export type RuntimeMessage = RuntimeToNodeMessage | NodeToRuntimeMessage;

/** Options of {@linkcode decodeRuntimeMessage}. */
export interface DecodeRuntimeOptions {
  /**
   * Who sent the message. With `"runtime"` only runtime -> node messages are
   * accepted (and `%hail` must carry `~`); with `"node"` only node -> runtime
   * ones (and `%hail` must carry a node id >= 1). Default: either.
   */
  from?: "runtime" | "node";
}

const TAG = {
  hail: cord("hail"),
  plan: cord("plan"),
  read: cord("read"),
  head: cord("head"),
  done: cord("done"),
  nope: cord("nope"),
  away: cord("away"),
  logs: cord("logs"),
  lead: cord("lead"),
  fence: cord("fence"),
  oops: cord("oops"),
} as const;

type Tag = keyof typeof TAG;

const TAG_BY_ATOM = new Map<bigint, Tag>(
  (Object.keys(TAG) as Tag[]).map((name) => [TAG[name], name]),
);

const FROM_RUNTIME: ReadonlySet<Tag> = new Set(["hail", "plan", "read", "head"]);
const FROM_NODE: ReadonlySet<Tag> = new Set([
  "hail",
  "done",
  "nope",
  "away",
  "logs",
  "head",
  "lead",
  "fence",
  "oops",
]);

// ------------------------------------------------------------------ encode

/**
 * The noun of a message. Validates every field as the decoder does and throws
 * {@linkcode ProtocolError} on a bad one (a job that is empty or ends in a
 * zero byte, a ship above 128 bits, an eve that is not a safe integer, ...).
 */
export function encodeRuntimeMessage(msg: RuntimeMessage): Noun {
  switch (msg.type) {
    case "hail":
      return tuple(
        TAG.hail,
        udAtom(msg.version, 0, "%hail version"),
        udAtom(msg.node, 0, "%hail node"),
      );
    case "plan":
      return tuple(
        TAG.plan,
        shipAtom(msg.ship, "%plan"),
        udAtom(msg.eve, 1, "%plan eve"),
        mugAtom(msg.mug, "%plan mug"),
        jobAtom(msg.job, "%plan job"),
      );
    case "read":
      return tuple(
        TAG.read,
        shipAtom(msg.ship, "%read"),
        udAtom(msg.from, 1, "%read from"),
        udAtom(msg.count, 0, "%read count"),
      );
    case "head":
      if ("eve" in msg) {
        if (msg.eve === 0 && msg.mug !== 0) {
          throw new ProtocolError(`The %head answer has eve 0 but mug ${msg.mug}; it must be 0`);
        }
        return tuple(
          TAG.head,
          shipAtom(msg.ship, "%head"),
          udAtom(msg.eve, 0, "%head eve"),
          mugAtom(msg.mug, "%head mug"),
        );
      }
      return tuple(TAG.head, shipAtom(msg.ship, "%head"));
    case "done":
      return tuple(TAG.done, shipAtom(msg.ship, "%done"), udAtom(msg.eve, 1, "%done eve"));
    case "nope":
      return tuple(
        TAG.nope,
        shipAtom(msg.ship, "%nope"),
        udAtom(msg.eve, 1, "%nope eve"),
        textAtom(msg.why, "%nope why"),
      );
    case "away":
      return tuple(TAG.away, shipAtom(msg.ship, "%away"), textAtom(msg.master, "%away master"));
    case "logs":
      return encodeLogs(msg);
    case "lead":
      return tuple(TAG.lead, shipAtom(msg.ship, "%lead"));
    case "fence":
      return tuple(TAG.fence, shipAtom(msg.ship, "%fence"));
    case "oops":
      return tuple(TAG.oops, textAtom(msg.why, "%oops why"));
    default: {
      const unknown: never = msg;
      throw new ProtocolError(`Unknown message type ${JSON.stringify(unknown)}`);
    }
  }
}

function encodeLogs(msg: LogsMessage): Noun {
  const from = udAtom(msg.from, 1, "%logs from");
  // Build the list back to front, iteratively: it can be long.
  let events: Noun = 0n;
  for (let i = msg.events.length - 1; i >= 0; i--) {
    const e = msg.events[i];
    const what = `%logs event ${i}`;
    if (e.eve !== msg.from + i) {
      throw new ProtocolError(
        `The ${what} has eve ${e.eve}, but events must be consecutive from ${msg.from} (expected ${
          msg.from + i
        })`,
      );
    }
    events = tuple(
      tuple(udAtom(e.eve, 1, `${what} eve`), mugAtom(e.mug, `${what} mug`), jobAtom(e.job, what)),
      events,
    );
  }
  return tuple(TAG.logs, shipAtom(msg.ship, "%logs"), from, events);
}

function shipAtom(ship: bigint, what: string): bigint {
  if (typeof ship !== "bigint" || ship < 0n || bitLength(ship) > SHIP_BITS_MAX) {
    throw new ProtocolError(
      `The ${what} ship must be a bigint from 0 to 2^128 - 1 (got ${String(ship).slice(0, 60)})`,
    );
  }
  return ship;
}

function udAtom(n: number, min: number, what: string): bigint {
  if (!Number.isSafeInteger(n) || n < min) {
    throw new ProtocolError(
      `The ${what} must be an integer from ${min} to 2^53 - 1 (got ${String(n).slice(0, 60)})`,
    );
  }
  return BigInt(n);
}

function mugAtom(mug: number, what: string): bigint {
  if (!Number.isInteger(mug) || mug < 0 || mug > MUG_MAX) {
    throw new ProtocolError(
      `The ${what} must be an integer from 0 to 0xffffffff (got ${String(mug).slice(0, 60)})`,
    );
  }
  return BigInt(mug);
}

function jobAtom(job: Uint8Array, what: string): bigint {
  if (!(job instanceof Uint8Array) || job.length === 0) {
    throw new ProtocolError(`The ${what} is empty, but jam bytes are never empty`);
  }
  // Jam bytes never end in zero, so the atom gives back exactly these bytes.
  if (job[job.length - 1] === 0) {
    throw new ProtocolError(
      `The ${what} ends in a zero byte, so it is not jam bytes and would not round-trip`,
    );
  }
  return bytesToAtom(job);
}

const textEncoder = new TextEncoder();

function textAtom(text: string, what: string): bigint {
  if (typeof text !== "string") throw new ProtocolError(`The ${what} must be a string`);
  // A cord's trailing zero bytes vanish, so text ending in U+0000 cannot round-trip.
  if (text.endsWith("\0")) {
    throw new ProtocolError(`The ${what} ends in a NUL character, which a cord cannot carry`);
  }
  if (!text.isWellFormed()) {
    throw new ProtocolError(`The ${what} holds a lone surrogate, which UTF-8 cannot carry`);
  }
  return bytesToAtom(textEncoder.encode(text));
}

// ------------------------------------------------------------------ decode

/**
 * The message a noun holds. Throws {@linkcode ProtocolError}, and nothing
 * else, when the noun is not a well-formed message: an unknown tag, the wrong
 * number of fields, a cell where an atom belongs, a ship above 128 bits, an
 * eve of 0 or above 2^53 - 1, a mug above 0xffffffff, text that is not UTF-8,
 * `%logs` events that are not consecutive, or (with `options.from`) a message
 * the sender never sends.
 *
 * @example
 * ```ts
 *
 * import { cord, tuple } from "./noun.ts";
 * decodeRuntimeMessage(tuple(cord("head"), 0n), { from: "runtime" });
 * // { type: "head", ship: 0n }
 * ```
 */
export function decodeRuntimeMessage(
  noun: Noun,
  options: { from: "runtime" },
): RuntimeToNodeMessage;
/** The message a node sent; see the first overload. */
export function decodeRuntimeMessage(
  noun: Noun,
  options: { from: "node" },
): NodeToRuntimeMessage;
/** The message either side sent; see the first overload. */
export function decodeRuntimeMessage(noun: Noun, options?: DecodeRuntimeOptions): RuntimeMessage;
export function decodeRuntimeMessage(
  noun: Noun,
  options: DecodeRuntimeOptions = {},
): RuntimeMessage {
  if (!isCell(noun)) {
    throw new ProtocolError(`The message is the atom ${describeAtom(noun)}, not a tagged cell`);
  }
  if (isCell(noun.head)) {
    throw new ProtocolError("The message's tag is a cell, not a cord like %plan");
  }
  const tag = TAG_BY_ATOM.get(noun.head);
  if (tag === undefined) {
    throw new ProtocolError(`The message's tag ${describeAtom(noun.head)} is not known`);
  }
  const from = options.from;
  if (from === "runtime" && !FROM_RUNTIME.has(tag)) {
    throw new ProtocolError(`A runtime does not send %${tag}; only a node does`);
  }
  if (from === "node" && !FROM_NODE.has(tag)) {
    throw new ProtocolError(`A node does not send %${tag}; only a runtime does`);
  }
  const body = noun.tail;
  switch (tag) {
    case "hail": {
      const [version, node] = fields(body, 2, "%hail");
      const msg: HailMessage = {
        type: "hail",
        version: udField(version, 0, "%hail version"),
        node: udField(node, 0, "%hail node"),
      };
      if (from === "runtime" && msg.node !== 0) {
        throw new ProtocolError(`A runtime's %hail must end in ~, not ${msg.node}`);
      }
      if (from === "node" && msg.node === 0) {
        throw new ProtocolError("A node's %hail must carry its node id, not ~");
      }
      return msg;
    }
    case "plan": {
      const [ship, eve, mug, job] = fields(body, 4, "%plan");
      return {
        type: "plan",
        ship: shipField(ship, "%plan"),
        eve: udField(eve, 1, "%plan eve"),
        mug: mugField(mug, "%plan mug"),
        job: jobField(job, "%plan job"),
      };
    }
    case "read": {
      const [ship, first, count] = fields(body, 3, "%read");
      return {
        type: "read",
        ship: shipField(ship, "%read"),
        from: udField(first, 1, "%read from"),
        count: udField(count, 0, "%read count"),
      };
    }
    case "head": {
      // `[%head ship]` asks (runtime -> node); `[%head ship eve mug]` answers.
      if (!isCell(body)) {
        if (from === "node") {
          throw new ProtocolError("A node's %head must be [%head ship eve mug], not [%head ship]");
        }
        return { type: "head", ship: shipField(body, "%head") };
      }
      if (from === "runtime") {
        throw new ProtocolError("A runtime's %head must be [%head ship], with no other fields");
      }
      const [ship, eve, mug] = fields(body, 3, "%head answer");
      const msg: HeadAnswerMessage = {
        type: "head",
        ship: shipField(ship, "%head"),
        eve: udField(eve, 0, "%head eve"),
        mug: mugField(mug, "%head mug"),
      };
      if (msg.eve === 0 && msg.mug !== 0) {
        throw new ProtocolError(`The %head answer has eve 0 but mug ${msg.mug}; it must be 0`);
      }
      return msg;
    }
    case "done": {
      const [ship, eve] = fields(body, 2, "%done");
      return { type: "done", ship: shipField(ship, "%done"), eve: udField(eve, 1, "%done eve") };
    }
    case "nope": {
      const [ship, eve, why] = fields(body, 3, "%nope");
      return {
        type: "nope",
        ship: shipField(ship, "%nope"),
        eve: udField(eve, 1, "%nope eve"),
        why: textField(why, "%nope why"),
      };
    }
    case "away": {
      const [ship, master] = fields(body, 2, "%away");
      return {
        type: "away",
        ship: shipField(ship, "%away"),
        master: textField(master, "%away master"),
      };
    }
    case "logs":
      return decodeLogs(body);
    case "lead":
      return { type: "lead", ship: shipField(fields(body, 1, "%lead")[0], "%lead") };
    case "fence":
      return { type: "fence", ship: shipField(fields(body, 1, "%fence")[0], "%fence") };
    case "oops":
      return { type: "oops", why: textField(fields(body, 1, "%oops")[0], "%oops why") };
  }
}

/**
 * The message in one frame's body: cues `jamBytes` and decodes the noun.
 * Throws {@linkcode ProtocolError} when the bytes are not a jammed noun or the
 * noun is not a message.
 */
export function decodeRuntimeFrame(
  jamBytes: Uint8Array,
  options: { from: "runtime" },
): RuntimeToNodeMessage;
/** The message in a frame a node sent; see the first overload. */
export function decodeRuntimeFrame(
  jamBytes: Uint8Array,
  options: { from: "node" },
): NodeToRuntimeMessage;
/** The message in a frame either side sent; see the first overload. */
export function decodeRuntimeFrame(
  jamBytes: Uint8Array,
  options?: DecodeRuntimeOptions,
): RuntimeMessage;
export function decodeRuntimeFrame(
  jamBytes: Uint8Array,
  options: DecodeRuntimeOptions = {},
): RuntimeMessage {
  if (options.from === "runtime") return decodeFromRuntime(jamBytes);
  let noun: Noun;
  try {
    noun = cue(jamBytes);
  } catch (e) {
    if (e instanceof NounError) {
      throw new ProtocolError(`The frame is not a valid jammed noun: ${e.message}`);
    }
    throw e;
  }
  return decodeRuntimeMessage(noun, options);
}

/**
 * A frame from a runtime: always a tuple of atoms, read in one linear pass
 * (`cueAtomTuple`). A job that is a cell is refused at that cell, or after
 * {@linkcode RUNTIME_MESSAGE_ATOMS_MAX} atoms for a list (a million-deep one
 * took a leader's loop 15 s to cue); a long job's bytes are copied out of the
 * frame, never made a bigint.
 */
function decodeFromRuntime(jamBytes: Uint8Array): RuntimeToNodeMessage {
  let atoms: TupleAtom[];
  try {
    atoms = cueAtomTuple(jamBytes, RUNTIME_MESSAGE_ATOMS_MAX, RUNTIME_FIELD_BYTES_MAX);
  } catch (e) {
    throw notATuple(e);
  }
  return messageOfAtoms(atoms);
}

/** Frames from this size up are decoded in slices by {@linkcode decodeRuntimeFrameSliced}'s callers. */
export const SLICED_FRAME_BYTES_MIN = 1024 * 1024;
/** The slice of {@linkcode decodeRuntimeFrameSliced}: a few ms of copying on a slow machine. */
const SLICE_BYTES = 512 * 1024;

/**
 * A runtime's frame (its body as the parts a newt decoder holds, vere/newt.ts),
 * decoded as {@linkcode decodeRuntimeFrame} does, but awaiting `pause()`
 * after each 512 KiB copied: a 64 MiB job holds the
 * caller's event loop a few ms at a time instead of half a second.
 */
export async function decodeRuntimeFrameSliced(
  parts: readonly Uint8Array[],
  pause: () => Promise<void>,
): Promise<RuntimeToNodeMessage> {
  let atoms: TupleAtom[];
  try {
    atoms = await cueAtomTupleSliced(parts, RUNTIME_MESSAGE_ATOMS_MAX, RUNTIME_FIELD_BYTES_MAX, {
      sliceBytes: SLICE_BYTES,
      pause,
    });
  } catch (e) {
    throw notATuple(e);
  }
  return messageOfAtoms(atoms);
}

function notATuple(e: unknown): unknown {
  if (!(e instanceof NounError)) return e;
  return new ProtocolError(
    `The frame is not a runtime's message (a tuple of atoms, the %plan job an atom): ${e.message}`,
  );
}

function messageOfAtoms(atoms: TupleAtom[]): RuntimeToNodeMessage {
  const isPlan = atoms.length === 5 && atoms[0] === TAG.plan;
  const long = atoms.findIndex((a, i) => a instanceof Uint8Array && !(isPlan && i === 4));
  if (long >= 0) {
    throw new ProtocolError(
      `Field ${long + 1} of the message is ${
        (atoms[long] as Uint8Array).length
      } bytes; only a %plan job may be longer than ${RUNTIME_FIELD_BYTES_MAX}`,
    );
  }
  // A long job stands in as 1 while the other fields are checked, then comes back as bytes.
  const job = isPlan && atoms[4] instanceof Uint8Array ? atoms[4] : undefined;
  const nouns = atoms.map((a, i) => job !== undefined && i === 4 ? 1n : a as bigint);
  const noun = nouns.length === 1 ? nouns[0] : tuple(...nouns);
  const msg = decodeRuntimeMessage(noun, { from: "runtime" });
  return job !== undefined && msg.type === "plan" ? { ...msg, job } : msg;
}

function decodeLogs(body: Noun): LogsMessage {
  const [ship, first, list] = fields(body, 3, "%logs");
  const from = udField(first, 1, "%logs from");
  const events: LogEntry[] = [];
  let rest = list;
  while (isCell(rest)) {
    const i = events.length;
    const what = `%logs event ${i}`;
    const [eve, mug, job] = fields(rest.head, 3, what);
    const entry: LogEntry = {
      eve: udField(eve, 1, `${what} eve`),
      mug: mugField(mug, `${what} mug`),
      job: jobField(job, `${what} job`),
    };
    if (entry.eve !== from + i) {
      throw new ProtocolError(
        `The ${what} has eve ${entry.eve}, but events must be consecutive from ${from} (expected ${
          from + i
        })`,
      );
    }
    events.push(entry);
    rest = rest.tail;
  }
  if (rest !== 0n) {
    throw new ProtocolError(
      `The %logs events list ends in ${
        describeAtom(rest)
      } instead of ~ after ${events.length} events`,
    );
  }
  return { type: "logs", ship: shipField(ship, "%logs"), from, events };
}

/**
 * The `count` fields of a right-nested tuple (the last one is the final
 * tail). Throws when the tuple is shorter; a longer one shows up as a cell in
 * the last field, which every caller rejects where it wants an atom.
 */
function fields(noun: Noun, count: number, what: string): Noun[] {
  const out: Noun[] = [];
  let rest = noun;
  for (let i = 0; i < count - 1; i++) {
    if (!isCell(rest)) {
      throw new ProtocolError(
        `The ${what} message has ${i + 1} field${
          i === 0 ? "" : "s"
        } after its tag, but needs ${count}`,
      );
    }
    out.push(rest.head);
    rest = rest.tail;
  }
  out.push(rest);
  return out;
}

function atomField(noun: Noun, what: string): bigint {
  if (isCell(noun)) {
    throw new ProtocolError(
      `The ${what} is a cell where an atom belongs (or the message has too many fields)`,
    );
  }
  return noun;
}

function shipField(noun: Noun, what: string): bigint {
  const ship = atomField(noun, `${what} ship`);
  const bits = bitLength(ship);
  if (bits > SHIP_BITS_MAX) {
    throw new ProtocolError(`The ${what} ship is ${bits} bits long, above the 128-bit limit`);
  }
  return ship;
}

function udField(noun: Noun, min: number, what: string): number {
  const atom = atomField(noun, what);
  if (atom > BigInt(Number.MAX_SAFE_INTEGER)) {
    throw new ProtocolError(`The ${what} is ${describeAtom(atom)}, above 2^53 - 1`);
  }
  const n = Number(atom);
  if (n < min) throw new ProtocolError(`The ${what} is ${n}, below ${min}`);
  return n;
}

function mugField(noun: Noun, what: string): number {
  const atom = atomField(noun, what);
  if (atom > BigInt(MUG_MAX)) {
    throw new ProtocolError(`The ${what} is ${describeAtom(atom)}, above 0xffffffff`);
  }
  return Number(atom);
}

function jobField(noun: Noun, what: string): Uint8Array {
  const atom = atomField(noun, what);
  if (atom === 0n) throw new ProtocolError(`The ${what} is 0, which holds no jam bytes`);
  return atomToBytes(atom);
}

function textField(noun: Noun, what: string): string {
  const text = cordText(atomField(noun, what));
  if (text === undefined) throw new ProtocolError(`The ${what} is not valid UTF-8 text`);
  return text;
}

/** A short rendering of an atom for error messages: a cord if printable, else (capped) hex. */
function describeAtom(atom: bigint): string {
  if (atom === 0n) return "0 (~)";
  const bits = bitLength(atom);
  if (bits <= 64) {
    const text = cordText(atom);
    if (text !== undefined && /^[a-z][a-z0-9-]*$/.test(text)) return `%${text}`;
    return atom <= BigInt(Number.MAX_SAFE_INTEGER) ? `${atom}` : `0x${atom.toString(16)}`;
  }
  return `a ${bits}-bit atom`;
}

/** True when `msg` is the node's `%head` answer rather than the runtime's `%head` request. */
export function isHeadAnswer(msg: RuntimeMessage): msg is HeadAnswerMessage {
  return msg.type === "head" && "eve" in msg;
}
