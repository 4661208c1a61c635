/**
 * `deno task sim:node --seeds N [--seed S] [--steps M] [--nodes K]
 * [--optimism quorum|K] [--mutation NAME] [--trace-all]`: runs the
 * whole-node simulator over many seeds and prints a summary line; for a
 * failing seed, prints the replay command and the end of its trace.
 *
 * Without `--nodes` and `--optimism`, each seed picks its cluster (3 or 5
 * voters) and the ship's optimism (a quorum for three seeds in four, else 0
 * or 1 replica), so one budget covers both promises: released means durable
 * at a quorum, and below it every loss is reported.
 * @module
 */

import type { NodeMutation } from "../../cluster/driver.ts";
import {
  addNodeStats,
  emptyNodeStats,
  type NodeSimOptions,
  type NodeSimStats,
  runNodeSimulation,
} from "./node_sim.ts";

/** Parsed command line. */
export interface NodeSimArgs {
  /** Seeds to run. */
  seeds: number;
  /** First seed. */
  seed: number;
  /** Fault steps per seed. */
  steps: number;
  /** Voters; 0: from the seed. */
  nodes: number;
  /** Optimism; undefined: from the seed. */
  optimism: "quorum" | number | undefined;
  /** Mutation to inject. */
  mutation: NodeMutation | undefined;
  /** Print the whole trace of a failure. */
  traceAll: boolean;
}

const MUTATIONS: readonly NodeMutation[] = ["staleLead", "releaseEarly", "ackBeforeDurable"];

/** Parses the command line; throws with the usage on a bad option. */
export function parseNodeSimArgs(argv: readonly string[]): NodeSimArgs {
  const args: NodeSimArgs = {
    seeds: 1,
    seed: 1,
    steps: 300,
    nodes: 0,
    optimism: undefined,
    mutation: undefined,
    traceAll: false,
  };
  const usage =
    "use --seeds N --seed S --steps M --nodes 3|5 --optimism quorum|K --mutation staleLead|releaseEarly|ackBeforeDurable --trace-all";
  for (let i = 0; i < argv.length; i++) {
    const a = argv[i];
    const value = (): string => {
      const v = argv[++i];
      if (v === undefined) throw new Error(`Option ${a} needs a value; ${usage}`);
      return v;
    };
    const int = (): number => {
      const v = value();
      const n = Number(v);
      if (!Number.isInteger(n) || n < 0) throw new Error(`${a} needs a whole number, not ${v}`);
      return n;
    };
    if (a === "--seeds") args.seeds = int();
    else if (a === "--seed") args.seed = int();
    else if (a === "--steps") args.steps = int();
    else if (a === "--nodes") args.nodes = int();
    else if (a === "--trace-all") args.traceAll = true;
    else if (a === "--optimism") {
      const v = value();
      args.optimism = v === "quorum" ? "quorum" : Number(v);
      if (args.optimism !== "quorum" && !Number.isInteger(args.optimism)) {
        throw new Error(`--optimism takes quorum or a replica count, not ${v}`);
      }
    } else if (a === "--mutation") {
      const v = value() as NodeMutation;
      if (!MUTATIONS.includes(v)) throw new Error(`Unknown mutation ${v}; ${usage}`);
      args.mutation = v;
    } else throw new Error(`Unknown option ${a}; ${usage}`);
  }
  return args;
}

/** The options of one seed. */
export function nodeSimOptions(args: NodeSimArgs, seed: number): NodeSimOptions {
  return {
    seed,
    steps: args.steps,
    nodes: args.nodes !== 0 ? args.nodes : seed % 5 === 0 ? 5 : 3,
    optimism: args.optimism ?? (seed % 4 !== 3 ? "quorum" : seed % 8 === 3 ? 0 : 1),
    mutation: args.mutation,
  };
}

/** Runs seeds [seed, seed + seeds); returns the counters and the first failure's report. */
export function runNodeSeeds(args: NodeSimArgs): {
  stats: NodeSimStats;
  failure: string | undefined;
  firstFailingSeed: number | undefined;
} {
  const stats = emptyNodeStats();
  let failure: string | undefined;
  let firstFailingSeed: number | undefined;
  for (let seed = args.seed; seed < args.seed + args.seeds; seed++) {
    const options = nodeSimOptions(args, seed);
    const result = runNodeSimulation(options);
    addNodeStats(stats, result.stats);
    if (result.violation !== undefined && failure === undefined) {
      firstFailingSeed = seed;
      failure = describeNodeFailure(options, args.traceAll);
    }
  }
  return { stats, failure, firstFailingSeed };
}

/** Replays a failing seed with its trace. */
export function describeNodeFailure(options: NodeSimOptions, traceAll: boolean): string {
  const replay = runNodeSimulation({ ...options, trace: true });
  const shown = traceAll ? replay.trace : replay.trace.slice(-200);
  const flags = [
    `--seed ${options.seed}`,
    `--steps ${options.steps}`,
    `--nodes ${options.nodes}`,
    `--optimism ${options.optimism}`,
    ...(options.mutation ? [`--mutation ${options.mutation}`] : []),
  ].join(" ");
  return [
    `FAILED seed=${options.seed} step=${replay.violation?.step}: ${replay.violation?.message}`,
    `replay: deno task sim:node ${flags} --trace-all`,
    `trace (${shown.length} of ${replay.trace.length} lines):`,
    ...shown,
  ].join("\n");
}

/** The summary line. */
export function formatNodeSummary(s: NodeSimStats, wallMs: number): string {
  return `sim:node seeds=${s.seeds} steps=${s.steps} plans=${s.plans} released=${s.released} ` +
    `masters=${s.masters} crashes=${s.crashes} partitions=${s.partitions} resyncs=${s.resyncs} ` +
    `losses(K<quorum)=${s.losses} images=${s.images} snapshots=${s.snapshots} joins=${s.joins} violations=${s.violations} wall=${
      (wallMs / 1000).toFixed(1)
    }s`;
}

if (import.meta.main) {
  let args: NodeSimArgs;
  try {
    args = parseNodeSimArgs(Deno.args);
  } catch (e) {
    console.error(`sim:node: ${(e as Error).message}`);
    Deno.exit(2);
  }
  const started = performance.now();
  const { stats, failure } = runNodeSeeds(args);
  if (failure !== undefined) console.log(failure);
  console.log(formatNodeSummary(stats, performance.now() - started));
  if (stats.violations > 0) Deno.exit(1);
}
