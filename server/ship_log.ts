/**
 * `seguro log tail | show | verify`: a ship's events read from a node and
 * decoded (vere/event.ts), followed as they commit, and checked on every
 * member. Reads go to any node; nothing here writes.
 *
 * @example
 * ```ts ignore
 * await tailShipLog(target, 0n, {
 *   lines: 10,
 *   progress: (p) => console.log(p.kind === "last" ? p.events : [p.event]),
 * });
 * ```
 * @module
 */

import { ClusterClient } from "../cluster/api.ts";
import type { EventView, ShipJson, ShipVerify } from "../cluster/admin_protocol.ts";
import type { ClusterCredentials } from "../cluster/token.ts";
import { decodeJob, type EventSummary, renderShip, summarizeEvent } from "../vere/event.ts";
import { cue, type Noun } from "../vere/noun.ts";
import { renderNoun } from "../vere/noun_show.ts";
import { NodeError } from "./errors.ts";
import { type ClusterTarget, withNode } from "./pier_client.ts";

/** Events asked for per request while following. */
const FOLLOW_BATCH_EVENTS_MAX = 1000;
/** How long one follow request waits for new events (ms). */
const FOLLOW_WAIT_MS = 30_000;

/** One event of a ship's log, summarized, with its stored mug. */
export interface LogEvent extends EventSummary {
  /** Stored mug. */
  mug: number;
}

/**
 * Summarizes the stored event `e` of a ship of life `life`; an event that
 * does not decode is an ovum whose card is `(undecodable)`.
 */
export function describeEvent(e: EventView, life: number): LogEvent {
  let summary: EventSummary;
  try {
    // summarizeEvent measures the jam itself; the stored bytes are that jam already.
    summary = { ...summarizeEvent(e.eve, cue(e.job), life), bytes: e.job.length };
  } catch {
    summary = {
      eve: e.eve,
      kind: "ovum",
      time: null,
      wire: null,
      card: "(undecodable)",
      bytes: e.job.length,
    };
  }
  return { ...summary, mug: e.mug };
}

/** What a tail reports: first the last events, then (following) each new one. */
export type TailProgress =
  /** The ship's last events when the tail started (none for a ship without events). */
  | { kind: "last"; events: LogEvent[] }
  /** A new event, committed since. */
  | { kind: "new"; event: LogEvent };

/** Options of {@linkcode tailShipLog}. */
export interface TailShipLogOptions {
  /** How many of the last events. */
  lines: number;
  /** Keep reporting new events as they commit, until `signal` aborts. */
  follow?: boolean;
  /** Stops following, after the request in flight. */
  signal?: AbortSignal;
  /** Told the last events, then each new one. */
  progress: (p: TailProgress) => void;
}

/**
 * Reports the last `options.lines` events of `ship` from the node at
 * `target`, then, with `options.follow`, each event as it commits. A ship
 * the cluster lacks is a NodeError.
 */
export async function tailShipLog(
  target: ClusterTarget,
  ship: bigint,
  options: TailShipLogOptions,
): Promise<void> {
  await withNode(target, async (client) => {
    const info = await shipRecord(client, ship);
    // A chopped log starts after its epoch's image: there is nothing before its first event.
    let next = Math.max(firstEveOf(info), info.lastEve - options.lines + 1);
    // Answers stop at a few MiB; ask again until the last `lines` events are in.
    const last: LogEvent[] = [];
    while (next <= info.lastEve) {
      const batch = await client.ships.events(ship, next, info.lastEve - next + 1);
      if (batch.length === 0) break;
      for (const e of batch) last.push(describeEvent(e, info.life));
      next = batch[batch.length - 1].eve + 1;
    }
    options.progress({ kind: "last", events: last });
    while (options.follow && !options.signal?.aborted) {
      const batch = await client.ships.events(ship, next, FOLLOW_BATCH_EVENTS_MAX, FOLLOW_WAIT_MS);
      for (const e of batch) {
        options.progress({ kind: "new", event: describeEvent(e, info.life) });
        next = e.eve + 1;
      }
    }
  });
}

/** One event as `log show` shows it. */
export interface ShownEvent {
  /** Event number. */
  eve: number;
  /** Whether it is one of the ship's boot formulas (events 1 to its life). */
  formula: boolean;
  /** `@da` time, or null for a formula. */
  time: string | null;
  /** Wire as a path, or null for a formula. */
  wire: string | null;
  /** Card tag (`%tag`), or null for a formula. */
  card: string | null;
  /** Stored mug. */
  mug: number;
  /** Size of its jam. */
  bytes: number;
  /** The formula, or the card's data, rendered in at most `maxChars` characters. */
  text: string;
  /** Whether `text` was cut at `maxChars`. */
  truncated: boolean;
}

/**
 * Event `eve` of `ship` from the node at `target`, decoded, with the formula
 * or the card's data rendered in at most `options.maxChars` characters. A
 * ship the cluster lacks, or an event it does not have, is a NodeError.
 */
export async function showShipEvent(
  target: ClusterTarget,
  ship: bigint,
  eve: number,
  options: { maxChars: number },
): Promise<ShownEvent> {
  const { info, e } = await withNode(target, async (c) => {
    const info = await shipRecord(c, ship);
    const [e] = await c.ships.events(ship, eve, 1);
    return { info, e };
  });
  const first = firstEveOf(info);
  if (eve < first) {
    throw new NodeError(
      `${
        renderShip(ship)
      }'s events before ${first} were chopped and are gone; its log starts at event ${first}, after epoch ${
        first - 1
      }'s image`,
    );
  }
  if (e === undefined || e.eve !== eve) {
    throw new NodeError(
      `${renderShip(ship)} has no event ${eve} (its events are ${
        info.lastEve < first ? "none yet" : `${first}-${info.lastEve}`
      })`,
    );
  }
  const job: Noun = cue(e.job);
  const formula = eve <= info.life;
  const record = formula ? undefined : decodeJob(job);
  const shown = renderNoun(record === undefined ? job : record.data, options.maxChars);
  return {
    eve,
    formula,
    time: record?.time ?? null,
    wire: record?.wire ?? null,
    card: record ? `%${record.tag}` : null,
    mug: e.mug,
    bytes: e.job.length,
    text: shown.text,
    truncated: shown.truncated,
  };
}

/** A member to check: its id and address (null when unknown). */
export interface LogMember {
  /** Node id. */
  id: number;
  /** Its admin address, or null when unknown. */
  address: string | null;
}

/** One member's answer to a verify: its check, or why it gave none. */
export type NodeVerify = ({ id: number } & ShipVerify) | { id: number; error: string };

/** The log of one ship as every member holds it. */
export interface ShipLogVerify {
  /** Each member's answer, in the order of the members given. */
  nodes: NodeVerify[];
  /** Every problem any member found, with the member. */
  problems: { node: number; eve: number; problem: string }[];
  /** Every member answered, and all hold the same events (last event and digest). */
  agree: boolean;
  /** Members that answered. */
  answered: number;
  /** The first event of the first member that answered (1 without one, or before any chop). */
  firstEve: number;
  /** The last event of the first member that answered (0 without one). */
  lastEve: number;
}

/**
 * Asks every member of `members` to check its log of `ship` (no gaps, valid
 * jams, a digest) and compares the answers. A member that cannot be reached
 * is an answer with an error, never a failure.
 */
export async function verifyShipLog(
  members: LogMember[],
  credentials: ClusterCredentials,
  ship: bigint,
): Promise<ShipLogVerify> {
  const nodes = await Promise.all(members.map(async (m): Promise<NodeVerify> => {
    if (m.address === null) return { id: m.id, error: "address unknown" };
    try {
      const v = await withNode({ address: m.address, credentials }, (c) => c.ships.verify(ship));
      return { id: m.id, ...v };
    } catch (e) {
      return { id: m.id, error: (e as Error).message };
    }
  }));
  const ok = nodes.filter((r): r is { id: number } & ShipVerify => !("error" in r));
  // A node that has not applied a chop yet holds more events: it does not agree yet.
  const digests = new Set(ok.map((r) => `${firstEveOf(r)}-${r.lastEve}/${r.digest}`));
  const problems = ok.flatMap((r) => r.problems.map((p) => ({ node: r.id, ...p })));
  return {
    nodes,
    problems,
    agree: digests.size === 1 && ok.length === nodes.length,
    answered: ok.length,
    firstEve: ok[0] === undefined ? 1 : firstEveOf(ok[0]),
    lastEve: ok[0]?.lastEve ?? 0,
  };
}

/**
 * The first event a node holds of a ship, from its answer: 1 from a node
 * older than chops, which does not send it.
 */
export function firstEveOf(answer: { firstEve?: number }): number {
  return answer.firstEve ?? 1;
}

/** The node's record of `ship`, or a NodeError saying the cluster lacks it. */
async function shipRecord(client: ClusterClient, ship: bigint): Promise<ShipJson> {
  const found = (await client.ships.list()).find((s) => s.ship === String(ship));
  if (found === undefined) {
    throw new NodeError(`${renderShip(ship)} is not on this cluster; see 'seguro ship list'`);
  }
  return found;
}
