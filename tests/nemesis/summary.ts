/**
 * The nemesis's summary: the figures of a run and its verdict, as printed
 * by main.ts and checked by nemesis_test.ts.
 * @module
 */

import { clean } from "./checker.ts";
import type { NemesisResult } from "./nemesis.ts";

/** The `p` quantile (0..1) of ascending `sorted`, or undefined when empty. */
export function percentile(sorted: readonly number[], p: number): number | undefined {
  if (sorted.length === 0) return undefined;
  return sorted[Math.min(sorted.length - 1, Math.floor(p * sorted.length))];
}

/** True when the run found no violation and ran to its end. */
export function passed(r: NemesisResult): boolean {
  return clean(r.report) && r.errors.length === 0 && r.client.protocolErrors === 0;
}

function ms(n: number | undefined): string {
  return n === undefined ? "-" : `${n} ms`;
}

function count(n: number): string {
  return n.toLocaleString("en-US");
}

/** The summary's lines. */
export function formatSummary(r: NemesisResult): string {
  const kinds = new Map<string, number>();
  for (const round of r.rounds) kinds.set(round.kind, (kinds.get(round.kind) ?? 0) + 1);
  const sorted = [...r.failoverMs].sort((a, b) => a - b);
  const rep = r.report;
  const slowRounds = r.rounds.filter((x) => x.slow.length > 0);
  const lines = [
    `nemesis, seed ${r.seed}: ${r.rounds.length} rounds in ${(r.wallMs / 1000).toFixed(1)} s`,
    `  faults:              ${[...kinds].map(([k, n]) => `${k} x${n}`).join(", ") || "none"}`,
    `  master failovers:    ${r.failovers} (failover p50 ${ms(percentile(sorted, 0.5))}, p99 ${
      ms(percentile(sorted, 0.99))
    }, max ${ms(sorted.at(-1))}, over ${sorted.length} rounds)`,
    `  slow rounds:         ${slowRounds.length}${
      slowRounds.length > 0
        ? ` (recovered, but past a bound: ${slowRounds.map((x) => x.kind).join(", ")})`
        : ""
    }`,
    `  released events:     ${count(rep.releasedEvents)} at K = quorum (${
      count(r.client.plans)
    } plans, ${r.client.resyncs} re-syncs, ${r.client.connections} connections, ${r.client.stalls} stalls, ${r.client.nopes} %nope, ${r.client.aways} %away, ${r.client.oopses} %oops)`,
    `  released-but-lost:   ${rep.releasedLost}${
      r.client.resyncLosses > 0
        ? ` (a new master's log lacked or changed ${r.client.resyncLosses} released events at re-sync)`
        : ""
    }`,
    `  divergent logs:      ${rep.divergentLogs}`,
    `  %done regressions:   ${rep.doneRegressions}`,
    `  done-after-fence:    ${rep.doneAfterFence}`,
    `  fencing overlaps:    ${rep.fencingOverlaps}${
      r.exec === undefined
        ? " (exec mode not run)"
        : ` (exec mode: ${r.exec.rounds} partitions of the runtime's master, runtime moved in p50 ${
          ms(percentile([...r.exec.failoversMs].sort((a, b) => a - b), 0.5))
        }, ${r.exec.journal.filter((l) => l.kind === "start").length} starts, ${
          count(r.exec.events)
        } events)`
    }`,
    `  protocol errors:     ${r.client.protocolErrors}`,
    `  netem:               ${
      r.netem.ok ? "used (delay, duplication, reordering)" : "absent: loss by nft only"
    }`,
  ];
  if (rep.violations.length > 0) {
    lines.push("violations (first of each kind):");
    for (const v of rep.violations) lines.push(`  [${v.check}] ${v.text}`);
  }
  if (r.observations.length > 0) {
    lines.push("observed by the runtime client:");
    for (const o of r.observations.slice(0, 10)) lines.push(`  ${o}`);
  }
  if (r.errors.length > 0) {
    lines.push("errors:");
    for (const e of r.errors) lines.push(`  ${e}`);
  }
  if (!passed(r) && r.tails !== "") lines.push(r.tails);
  lines.push(
    passed(r)
      ? "OK: no released event lost, logs identical, %done monotonic and never while fenced, no overlap"
      : clean(r.report) && r.client.protocolErrors === 0
      ? "FAILED: the run did not complete (see errors)"
      : "FAILED: Seguro broke its promise (see violations)",
  );
  if (r.kept !== undefined) lines.push(`logs and data kept in ${r.kept}`);
  else if (!passed(r)) {
    lines.push(`the temp dir was removed; run again with --seed ${r.seed} --keep to keep it`);
  }
  return lines.join("\n");
}
