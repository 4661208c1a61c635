/**
 * Urbit events: decoding a logged job `[now ovum]` into a readable record,
 * and building a fake ship's boot sequence from a pill exactly as vere's
 * `_mars_boot_make` (pkg/vere/mars.c) does.
 * @module
 */

import { render, tryParse } from "@urbit/aura";
import {
  bytesToAtom,
  cord,
  cordText,
  isCell,
  jam,
  list,
  listItems,
  type Noun,
  NounError,
  tuple,
} from "./noun.ts";

/** `@da` of the Unix epoch: 2^127 + seconds from 292,277,024,400 BC. */
const DA_UNIX_EPOCH_SECONDS = 0x8000000cce9e0d80n;

/** One step of `now` between boot events: 2^48 = 1/65536 of a second. */
export const BOOT_EVENT_STEP = 1n << 48n;

/** The `@da` of a Unix time given as whole seconds and microseconds (vere's `u3m_time_in_tv`). */
export function daFromUnix(seconds: bigint, micros: number): bigint {
  if (micros < 0 || micros >= 1_000_000 || !Number.isInteger(micros)) {
    throw new RangeError(`Microseconds must be an integer in 0..999999 (got ${micros})`);
  }
  const fraction = BigInt(Math.floor((micros * 65536) / 1_000_000)) << 48n;
  return ((DA_UNIX_EPOCH_SECONDS + seconds) << 64n) | fraction;
}

/** The `@da` of a JavaScript time in milliseconds since the Unix epoch. */
export function daFromMillis(millis: number): bigint {
  const seconds = Math.floor(millis / 1000);
  return daFromUnix(BigInt(seconds), (millis - seconds * 1000) * 1000);
}

/** Renders a `@da` atom, e.g. `~2026.11.26..07.28.21..8000`. */
export function renderDa(da: bigint): string {
  return render("da", da);
}

/** Renders a ship (`@p`), e.g. `~zod`. */
export function renderShip(ship: bigint): string {
  return render("p", ship);
}

/** Renders one path element: a cord as its text, `''` as the empty string. */
function renderKnot(knot: Noun): string {
  if (isCell(knot)) return "[cell]";
  const text = cordText(knot);
  if (text !== undefined && /^[\x21-\x7e]*$/.test(text) && !text.includes("/")) return text;
  return `0x${knot.toString(16)}`;
}

/** Renders a wire (a list of cords) as a path: `[%d %term '1' ~]` is `/d/term/1`. */
export function renderWire(wire: Noun): string {
  const items = listItems(wire, "wire");
  return items.length === 0 ? "/" : items.map((k) => "/" + renderKnot(k)).join("");
}

/** A logged event, decoded for people. */
export interface EventRecord {
  /** `now`, the event's time as an atom. */
  now: bigint;
  /** `now` rendered as `@da`. */
  time: string;
  /** The wire rendered as a path, e.g. `/d/term/1`. */
  wire: string;
  /** The card's tag, e.g. `boot`. */
  tag: string;
  /** The card's data (everything after the tag). */
  data: Noun;
}

/**
 * Decodes a job noun `[now [wire [tag data]]]`. Throws NounError when the noun
 * does not have that shape (a boot formula, for example).
 */
export function decodeJob(job: Noun): EventRecord {
  if (!isCell(job) || isCell(job.head)) {
    throw new NounError("The event is not [now ovum]: its head is not an atom");
  }
  const ovum = job.tail;
  if (!isCell(ovum)) throw new NounError("The event's ovum is an atom, not [wire card]");
  const card = ovum.tail;
  if (!isCell(card) || isCell(card.head)) {
    throw new NounError("The event's card is not [%tag data]");
  }
  const tag = cordText(card.head);
  if (tag === undefined) throw new NounError("The event's card tag is not text");
  return {
    now: job.head,
    time: renderDa(job.head),
    wire: renderWire(ovum.head),
    tag,
    data: card.tail,
  };
}

/** One line of an event listing: what `seguro pill events` and `seguro log` print. */
export interface EventSummary {
  /** Event number, from 1. */
  eve: number;
  /** `formula` for a boot formula (events 1..life), `ovum` for `[now ovum]`. */
  kind: "formula" | "ovum";
  /** `@da` time, or null for a formula. */
  time: string | null;
  /** Wire as a path, or null for a formula. */
  wire: string | null;
  /** Card tag, or null for a formula. */
  card: string | null;
  /** Size of the event as stored: the length of its jam. */
  bytes: number;
}

/** Summarizes event `eve` of a ship whose first `life` events are boot formulas. */
export function summarizeEvent(eve: number, job: Noun, life: number): EventSummary {
  const bytes = jam(job).length;
  if (eve <= life) return { eve, kind: "formula", time: null, wire: null, card: null, bytes };
  const record = decodeJob(job);
  return { eve, kind: "ovum", time: record.time, wire: record.wire, card: record.tag, bytes };
}

// ---------------------------------------------------------------- boot

/** A pill: the nouns a ship boots from (`[%pill typ bot mod use]`). */
export interface Pill {
  /** The pill's type tag, e.g. `brass`. */
  type: string;
  /** Boot formulas: the ship's first `life` events, logged as they are. */
  bot: Noun[];
  /** Kernel module ova. */
  mod: Noun[];
  /** Userspace ova. */
  use: Noun[];
}

/** Reads a cued pill. Accepts `[%pill typ bot mod use]` and `[%cash [typ bot mod use] cache]`. */
export function parsePill(noun: Noun): Pill {
  if (!isCell(noun) || isCell(noun.head)) {
    throw new NounError("The noun is not a pill: expected [%pill typ bot mod use]");
  }
  const tag = cordText(noun.head);
  let dat = noun.tail;
  if (tag === "ivory") {
    throw new NounError(
      "This is an ivory pill, which cannot boot a ship; use a brass or solid pill",
    );
  }
  if (tag !== "pill" && tag !== "cash") {
    throw new NounError(`The noun is not a pill: its tag is ${describeAtom(noun.head)}, not %pill`);
  }
  if (tag === "cash" && isCell(dat)) dat = dat.head;
  const parts: Noun[] = [];
  for (let i = 0; i < 3; i++) {
    if (!isCell(dat)) throw new NounError("The pill does not have the shape [typ bot mod use]");
    parts.push(dat.head);
    dat = dat.tail;
  }
  parts.push(dat);
  const [typ, bot, mod, use] = parts;
  return {
    type: isCell(typ) ? "?" : cordText(typ) ?? "?",
    bot: listItems(bot, "pill's bot list"),
    mod: listItems(mod, "pill's mod list"),
    use: listItems(use, "pill's use list"),
  };
}

function describeAtom(atom: bigint): string {
  const text = cordText(atom);
  return text !== undefined && /^[a-z0-9-]+$/.test(text) ? `%${text}` : `0x${atom.toString(16)}`;
}

/** Options of {@linkcode bootSequence}. */
export interface BootOptions {
  /** The fake ship to boot, as an atom (`~zod` is 0). Must fit in 128 bits. */
  ship: bigint;
  /** Boot time as `@da`; the first timestamped event is this plus 2^48. */
  bootTime: bigint;
  /** 64 bytes of entropy for the `%wack` card (vere uses 16 random words). */
  entropy: Uint8Array;
  /** Verbose boot (vere's `-v`); default false. */
  verbose?: boolean;
  /** The runtime version named in `%wyrd`, default `4.0`. */
  vereVersion?: string;
  /** The runtime's release pace named in `%wyrd`, default `live`. */
  pace?: string;
}

/** A ship's first events and its `life` (how many of them are boot formulas). */
export interface BootSequence {
  /** Number of boot formulas: the length of the pill's `bot`. */
  life: number;
  /** Event 1 is `events[0]`. */
  events: Noun[];
}

/** Kernel versions the `%wyrd` card names, as vere 4.x sends them (zuse 408 stack). */
const KELVINS: [string, bigint][] = [
  ["zuse", 408n],
  ["lull", 320n],
  ["arvo", 234n],
  ["hoon", 135n],
  ["nock", 4n],
];

/**
 * The boot sequence of a fake ship: `bot` as it is; then the four `[0 %arvo ~]`
 * cards (`%wyrd`, `%verb`, `%whom`, `%wack`) before `mod`; then the
 * `[/d/term/1 [%boot %.n [%fake ship]]]` card before `use`. Every event after
 * `bot` is `[now ovum]`, `now` advancing by 2^48 per event.
 */
export function bootSequence(pill: Pill, options: BootOptions): BootSequence {
  const { ship, bootTime, entropy } = options;
  if (ship < 0n || ship >= 1n << 128n) {
    throw new RangeError(`A ship is at most 128 bits (got 0x${ship.toString(16)})`);
  }
  if (entropy.length !== 64) {
    throw new RangeError(`Boot entropy is 64 bytes (got ${entropy.length})`);
  }
  const arvoWire = tuple(0n, cord("arvo"), 0n);
  const version = tuple(
    cord("vere"),
    cord(options.pace ?? "live"),
    cord("~." + (options.vereVersion ?? "4.0")),
    0n,
  );
  const wyrd = tuple(
    cord("wyrd"),
    tuple(cord("0v1s.vu178"), version),
    list(KELVINS.map(([name, kelvin]) => tuple(cord(name), kelvin))),
  );
  // vere passes `!veb_o`: 1 when verbose, 0 when not.
  const verb = tuple(cord("verb"), 0n, options.verbose ? 1n : 0n);
  const whom = tuple(cord("whom"), ship);
  const wack = tuple(cord("wack"), bytesToAtom(entropy));
  const mod = [
    ...[wyrd, verb, whom, wack].map((card) => tuple(arvoWire, card)),
    ...pill.mod,
  ];
  const vent = tuple(cord("fake"), ship);
  const bootCard = tuple(cord("boot"), 1n, /* %.n: lite boot unimplemented */ vent);
  const use = [tuple(list([cord("d"), cord("term"), cord("1")]), bootCard), ...pill.use];

  const events: Noun[] = [...pill.bot];
  let now = bootTime;
  for (const ovum of [...mod, ...use]) {
    now += BOOT_EVENT_STEP;
    events.push(tuple(now, ovum));
  }
  return { life: pill.bot.length, events };
}

/** Parses a ship name like `~zod` or `~sampel-palnet`; undefined when it is not one. */
export function parseShip(text: string): bigint | undefined {
  const name = text.startsWith("~") ? text : `~${text}`;
  const atom = tryParseP(name);
  return atom !== null && atom < 1n << 128n ? atom : undefined;
}

function tryParseP(text: string): bigint | null {
  try {
    return tryParse("p", text);
  } catch {
    return null;
  }
}
