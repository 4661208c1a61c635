/**
 * `deno task sim --seeds N [--seed S] [--nodes K] [--steps M]`: runs the
 * deterministic simulator over many seeds and prints a summary line; for a
 * failing seed, prints the replay command and the trace up to the violation.
 *
 * @module
 */

import {
  addStats,
  emptyStats,
  type Profile,
  runSimulation,
  type SimOptions,
  type SimStats,
  STORM_PROFILE,
} from "./simulator.ts";
import type { TestingMutation } from "../../core/mod.ts";

/** Parsed command line. */
export interface SimArgs {
  /** Number of seeds to run. */
  seeds: number;
  /** First seed. */
  seed: number;
  /** Founding voters; 0 cycles through 3, 5 and 7. */
  nodes: number;
  /** Fault steps per seed. */
  steps: number;
  /** Print the full trace of a failure instead of its tail. */
  traceAll: boolean;
  /** Mutation to inject. */
  mutation: TestingMutation | undefined;
  /** Profile overrides (tests only; `--storm` sets the storm profile). */
  profile?: Partial<Profile>;
}

/** Parses `--seeds --seed --nodes --steps --trace-all --mutation`. */
export function parseSimArgs(argv: readonly string[]): SimArgs {
  const args: SimArgs = {
    seeds: 1,
    seed: 1,
    nodes: 0,
    steps: 400,
    traceAll: false,
    mutation: undefined,
  };
  for (let i = 0; i < argv.length; i++) {
    const a = argv[i];
    const value = (): string => {
      const v = argv[++i];
      if (v === undefined) throw new Error(`Option ${a} needs a value`);
      return v;
    };
    const int = (): number => {
      const v = value();
      const n = Number(v);
      if (!Number.isInteger(n) || n < 0) {
        throw new Error(`Option ${a} needs a non-negative integer, not ${v}`);
      }
      return n;
    };
    if (a === "--seeds") args.seeds = int();
    else if (a === "--seed") args.seed = int();
    else if (a === "--nodes") args.nodes = int();
    else if (a === "--steps") args.steps = int();
    else if (a === "--trace-all") args.traceAll = true;
    else if (a === "--storm") args.profile = STORM_PROFILE;
    else if (a === "--mutation") args.mutation = value() as TestingMutation;
    else {
      throw new Error(
        `Unknown option ${a}; use --seeds N --seed S --nodes K --steps M [--storm] [--mutation NAME] [--trace-all]`,
      );
    }
  }
  return args;
}

/** Cluster size for seed `seed` when `nodes` is 0 (cycles 3, 5, 7). */
export function nodesForSeed(seed: number, nodes: number): number {
  return nodes !== 0 ? nodes : [3, 5, 7][seed % 3];
}

/** Formats the summary line. */
export function formatSummary(s: SimStats, wallMs: number): string {
  return `sim: seeds=${s.seeds} steps=${s.steps} faults=${s.faults} elections=${s.elections} ` +
    `commits=${s.commits} acked=${s.acked} confChanges=${s.confChanges} transfers=${s.transfers} ` +
    `snapshots=${s.snapshots} reads=${s.reads} violations=${s.violations} wall=${
      (wallMs / 1000).toFixed(1)
    }s`;
}

/** Runs seeds [seed, seed + seeds); returns the summary and the first failure's report. */
export function runSeeds(args: SimArgs): { stats: SimStats; failure: string | undefined } {
  const stats = emptyStats();
  let failure: string | undefined;
  for (let seed = args.seed; seed < args.seed + args.seeds; seed++) {
    const options: SimOptions = {
      seed,
      nodes: nodesForSeed(seed, args.nodes),
      steps: args.steps,
      mutation: args.mutation,
      profile: args.profile,
    };
    const result = runSimulation(options);
    addStats(stats, result.stats);
    if (result.violation !== undefined && failure === undefined) {
      failure = describeFailure(options, result.violation.step, args.traceAll);
    }
  }
  return { stats, failure };
}

/** Replays a failing seed with tracing and renders the replay command and trace. */
export function describeFailure(options: SimOptions, step: number, traceAll: boolean): string {
  // The fault phase does not depend on `steps`, so stopping at the failing step replays it.
  const steps = Math.min(options.steps, step + 1);
  const replay = runSimulation({ ...options, steps, trace: true });
  const trace = replay.trace;
  const shown = traceAll ? trace : trace.slice(-300);
  const mutation = (options.mutation ? ` --mutation ${options.mutation}` : "") +
    (options.profile === STORM_PROFILE ? " --storm" : "");
  return [
    `FAILED seed=${options.seed} nodes=${options.nodes} step=${step}: ${
      replay.violation?.message ??
        "(did not reproduce with fewer steps; replay with the original --steps)"
    }`,
    `replay: deno task sim --seed ${options.seed} --nodes ${options.nodes} --steps ${steps}${mutation} --trace-all`,
    `trace (${shown.length} of ${trace.length} lines):`,
    ...shown,
  ].join("\n");
}

if (import.meta.main) {
  const args = parseSimArgs(Deno.args);
  const started = performance.now();
  const { stats, failure } = runSeeds(args);
  if (failure !== undefined) console.log(failure);
  console.log(formatSummary(stats, performance.now() - started));
  if (stats.violations > 0) Deno.exit(1);
}
