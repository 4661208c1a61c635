/**
 * What a nemesis run records for the checker: every frame about the ship
 * that the runtime client received, per connection and in order, the events
 * it released (by the protocol's release rule), each node's final log, and
 * the fake urbit's journal in exec mode.
 * @module
 */

import type { EventLogView, LoggedEvent } from "./event_columns.ts";

/** A frame about the ship received on one connection (or its end), with the time it arrived. */
export type Notice =
  | { kind: "lead"; atMs: number }
  | { kind: "fence"; atMs: number }
  | { kind: "done"; eve: number; atMs: number }
  | { kind: "nope"; eve: number; why: string; atMs: number }
  | { kind: "away"; master: string; atMs: number }
  | { kind: "oops"; why: string; atMs: number }
  | { kind: "closed"; why: string; atMs: number };

/** One connection of the runtime client to one node. */
export interface ConnectionHistory {
  /** Connection number, from 1, unique in a run. */
  conn: number;
  /** The node it was connected to. */
  node: number;
  /** Notices in the order they arrived. */
  notices: Notice[];
}

/** An event whose effects the client released, and the connection whose `%done` released it. */
export interface ReleasedEvent extends LoggedEvent {
  /** The connection. */
  conn: number;
}

/** A node's log of the ship when the run ended. */
export interface FinalLog {
  /** Node id. */
  node: number;
  /** Its events. */
  log: EventLogView;
}

/** One line of the fake urbit's journal (tests/e2e/fake_urbit.ts). */
export interface JournalLine {
  /** Wall-clock ms when it was written. */
  ms: number;
  /** `start`, `stop`, `OVERLAP` or `LOCKED`. */
  kind: string;
  /** Pid of the fake urbit. */
  pid: number;
  /** Its pier. */
  pier: string;
  /** Last event in the pier at that moment (-1 when the line has none). */
  last: number;
}

/** Parses the journal's text. */
export function parseJournal(text: string): JournalLine[] {
  return text.split("\n").filter((l) => l.trim() !== "").map((l) => {
    const [ms, kind, pid, pier, last] = l.trim().split(" ");
    return {
      ms: Number(ms),
      kind,
      pid: Number(pid),
      pier: pier ?? "",
      last: last === undefined ? -1 : Number(last),
    };
  });
}
