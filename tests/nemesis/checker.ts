/**
 * The nemesis checker: pure functions over a run's history (history.ts)
 * that decide whether Seguro kept its promise, from the outside:
 *
 * - (a) every event the runtime released (at the default optimism, a
 *   quorum) is in every node's final log, at the same eve, with the same
 *   mug and job bytes;
 * - (b) `%done` never goes backwards on a connection (one ship per run);
 * - (c) no `%done` arrives on a connection whose last role notice is not
 *   `%lead` (a connection starts fenced, docs/runtime-protocol.md section 4 rule 4);
 * - (d) all nodes end with the same log;
 * - (e) exec mode: no two runtimes of a ship ever run at once (the fake
 *   urbit's journal: no `OVERLAP` or `LOCKED`, and each start after the
 *   stop of every runtime started before it).
 * @module
 */

import { sameBytes } from "./event_columns.ts";
import type { ConnectionHistory, FinalLog, JournalLine, ReleasedEvent } from "./history.ts";
import { VIOLATIONS_SHOWN } from "./limits.ts";

/** Which check a violation breaks. */
export type CheckName =
  | "released-lost"
  | "done-regression"
  | "done-after-fence"
  | "divergent-log"
  | "fencing-overlap";

/** One broken rule, spelled out with its values. */
export interface Violation {
  /** The check. */
  check: CheckName;
  /** A sentence naming the event, connection or node and the values. */
  text: string;
}

/** What the checks found: counts, and the first violations of each kind. */
export interface CheckReport {
  /** Events released by the client. */
  releasedEvents: number;
  /** (a) released events missing or different on some node. */
  releasedLost: number;
  /** (b) `%done` frames lower than an earlier one on their connection. */
  doneRegressions: number;
  /** (c) `%done` frames received while the connection was fenced. */
  doneAfterFence: number;
  /** (d) nodes whose final log differs from the first node's. */
  divergentLogs: number;
  /** (e) runtimes started while another ran, or witnessed overlaps. */
  fencingOverlaps: number;
  /** The first {@linkcode VIOLATIONS_SHOWN} violations of each kind. */
  violations: Violation[];
}

function hexOf(bytes: Uint8Array, max = 16): string {
  const shown = Array.from(bytes.subarray(0, max), (b) => b.toString(16).padStart(2, "0"));
  return shown.join("") + (bytes.length > max ? "..." : "");
}

function mugText(mug: number): string {
  return `0x${mug.toString(16).padStart(8, "0")}`;
}

/**
 * (a) Every released event is in every final log at its eve with its mug and
 * job. Returns one violation per released event that is missing or
 * different anywhere.
 */
export function checkReleasedKept(
  released: Iterable<ReleasedEvent>,
  finals: readonly FinalLog[],
): Violation[] {
  const out: Violation[] = [];
  for (const r of released) {
    const problems: string[] = [];
    for (const f of finals) {
      const got = f.log.event(r.eve);
      if (got === undefined) {
        problems.push(`missing from node ${f.node} (its log ends at ${f.log.lastEve})`);
      } else if (got.mug !== r.mug || !sameBytes(got.job, r.job)) {
        problems.push(
          `different on node ${f.node} (mug ${mugText(got.mug)}, job ${hexOf(got.job)})`,
        );
      }
    }
    if (problems.length > 0) {
      out.push({
        check: "released-lost",
        text: `released event ${r.eve} (mug ${mugText(r.mug)}, job ${
          hexOf(r.job)
        }, released by connection ${r.conn}) is ${problems.join("; ")}`,
      });
    }
  }
  return out;
}

/** (b) On every connection, each `%done` is at least the highest before it. */
export function checkDoneMonotonic(connections: readonly ConnectionHistory[]): Violation[] {
  const out: Violation[] = [];
  for (const c of connections) {
    let highest = 0;
    for (const n of c.notices) {
      if (n.kind !== "done") continue;
      if (n.eve < highest) {
        out.push({
          check: "done-regression",
          text: `connection ${c.conn} to node ${c.node}: %done ${n.eve} after %done ${highest}`,
        });
      }
      highest = Math.max(highest, n.eve);
    }
  }
  return out;
}

/** (c) No `%done` while a connection is fenced: before its first `%lead`, or after a `%fence`. */
export function checkDoneOnlyWhileLeading(
  connections: readonly ConnectionHistory[],
): Violation[] {
  const out: Violation[] = [];
  for (const c of connections) {
    let role: "start" | "lead" | "fence" = "start";
    for (const n of c.notices) {
      if (n.kind === "lead" || n.kind === "fence") role = n.kind;
      else if (n.kind === "done" && role !== "lead") {
        out.push({
          check: "done-after-fence",
          text: `connection ${c.conn} to node ${c.node}: %done ${n.eve} ${
            role === "start" ? "before any %lead" : "after %fence and before %lead"
          }`,
        });
      }
    }
  }
  return out;
}

/** (d) Every node's final log equals the first node's: same last eve, mugs and jobs. */
export function checkLogsIdentical(finals: readonly FinalLog[]): Violation[] {
  const out: Violation[] = [];
  const [ref, ...rest] = finals;
  for (const f of rest) {
    const diffs: string[] = [];
    let count = 0;
    if (f.log.lastEve !== ref.log.lastEve) {
      diffs.push(`ends at ${f.log.lastEve}, node ${ref.node}'s at ${ref.log.lastEve}`);
    }
    const common = Math.min(f.log.lastEve, ref.log.lastEve);
    for (let eve = 1; eve <= common; eve++) {
      const a = ref.log.event(eve)!;
      const b = f.log.event(eve)!;
      if (a.mug === b.mug && sameBytes(a.job, b.job)) continue;
      if (count === 0) {
        diffs.push(
          `first differs at event ${eve} (mug ${mugText(b.mug)} vs ${mugText(a.mug)})`,
        );
      }
      count++;
    }
    if (count > 0) diffs.push(`${count} events differ`);
    if (diffs.length > 0) {
      out.push({
        check: "divergent-log",
        text: `node ${f.node}'s log differs from node ${ref.node}'s: ${diffs.join("; ")}`,
      });
    }
  }
  return out;
}

function shipOfPier(pier: string): string {
  return pier.split("/").filter((p) => p !== "").pop() ?? pier;
}

/**
 * (e) From the fake urbit's journal: no `OVERLAP` or `LOCKED` line, and per
 * ship, every `start` comes (in the journal and by its clock) after the
 * `stop` of every runtime started before it.
 */
export function checkFencing(journal: readonly JournalLine[]): Violation[] {
  const out: Violation[] = [];
  /** Per ship: runtimes started and not yet stopped, by pid, with their start line. */
  const running = new Map<string, Map<number, JournalLine>>();
  /** Per ship: the latest stop time seen. */
  const lastStop = new Map<string, JournalLine>();
  for (const l of journal) {
    const ship = shipOfPier(l.pier);
    const live = running.get(ship) ?? new Map<number, JournalLine>();
    running.set(ship, live);
    if (l.kind === "OVERLAP" || l.kind === "LOCKED") {
      out.push({
        check: "fencing-overlap",
        text: `the fake urbit ${l.pid} for ${ship} found ${
          l.kind === "OVERLAP" ? "another runtime holding the ship" : "its pier locked"
        } at ${l.ms} (${l.kind})`,
      });
    } else if (l.kind === "start") {
      for (const other of live.values()) {
        out.push({
          check: "fencing-overlap",
          text:
            `runtime ${l.pid} of ${ship} started at ${l.ms} on ${l.pier} while runtime ${other.pid} (started at ${other.ms} on ${other.pier}) had recorded no stop`,
        });
      }
      const stop = lastStop.get(ship);
      if (stop !== undefined && stop.ms > l.ms) {
        out.push({
          check: "fencing-overlap",
          text:
            `runtime ${l.pid} of ${ship} started at ${l.ms}, before runtime ${stop.pid} stopped at ${stop.ms}`,
        });
      }
      live.clear();
      live.set(l.pid, l);
    } else if (l.kind === "stop") {
      live.delete(l.pid);
      lastStop.set(ship, l);
    }
  }
  return out;
}

/** Everything a run recorded. */
export interface RunRecord {
  /** Events the client released. */
  released: Iterable<ReleasedEvent>;
  /** The client's connections. */
  connections: readonly ConnectionHistory[];
  /** Each node's final log (of the hook-mode ship). */
  finals: readonly FinalLog[];
  /** Final logs of further clusters or ships checked for (d) only, e.g. the exec-mode run. */
  otherFinals?: readonly (readonly FinalLog[])[];
  /** The fake urbit's journal, in exec mode. */
  journal?: readonly JournalLine[];
}

/** Runs every check over a run. */
export function checkRun(run: RunRecord): CheckReport {
  let releasedEvents = 0;
  const counted = (function* () {
    for (const r of run.released) {
      releasedEvents++;
      yield r;
    }
  })();
  const lost = checkReleasedKept(counted, run.finals);
  const regressions = checkDoneMonotonic(run.connections);
  const fenced = checkDoneOnlyWhileLeading(run.connections);
  const divergent = [run.finals, ...(run.otherFinals ?? [])].flatMap(checkLogsIdentical);
  const overlaps = checkFencing(run.journal ?? []);
  return {
    releasedEvents,
    releasedLost: lost.length,
    doneRegressions: regressions.length,
    doneAfterFence: fenced.length,
    divergentLogs: divergent.length,
    fencingOverlaps: overlaps.length,
    violations: [lost, regressions, fenced, divergent, overlaps].flatMap((v) =>
      v.slice(0, VIOLATIONS_SHOWN)
    ),
  };
}

/** True when the report has no violation. */
export function clean(report: CheckReport): boolean {
  return report.releasedLost + report.doneRegressions + report.doneAfterFence +
      report.divergentLogs + report.fencingOverlaps === 0;
}
