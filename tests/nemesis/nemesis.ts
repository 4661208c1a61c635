/**
 * A whole nemesis run: namespaces, a 3-node hook-mode cluster with the
 * runtime client pipelining into it, rounds of seeded faults, then (if
 * asked) the exec-mode rounds on a second cluster, the final logs read from
 * every node and the checker's verdict. Everything it made is removed at the
 * end, on failure too.
 * @module
 */

import { join } from "node:path";
import { createPrng, type Prng } from "../../core/prng.ts";
import { type CheckReport, checkRun } from "./checker.ts";
import { onCleanup, runCleanup } from "./cleanup.ts";
import { Cluster, SEGURO_RUN_FLAGS } from "./cluster.ts";
import { type ExecResult, runExecRounds } from "./exec_mode.ts";
import { type FaultKind, NETEM_FAULTS, probeNetem } from "./faults.ts";
import { type NodeFinal, readFinalLog, waitConverged } from "./node_logs.ts";
import { FAILOVER_MS, FIRST_LEADER_MS, ROUNDS_MAX } from "./limits.ts";
import { namespacesUnavailable, Network, sh } from "./netns.ts";
import { type RoundResult, runRound } from "./round.ts";
import { emptySpecStats, SpecRuntime, type SpecRuntimeStats } from "./spec_client.ts";

/** The hook-mode ship: ~zod. */
const SHIP = 0n;

/** How a run goes. */
export interface NemesisOptions {
  /** `short` (CI) or `long`. */
  profile: "short" | "long";
  /** Hook-mode rounds at most. */
  rounds: number;
  /** Stop the rounds once this many master failovers (elections) happened; 0: no target. */
  failovers: number;
  /** Stop starting rounds after this long. */
  timeLimitMs: number;
  /** Exec-mode rounds. */
  execRounds: number;
  /** Draw only these faults (uniformly); empty: the profile's. */
  faults: FaultKind[];
  /** Seed of the faults and the events. */
  seed: number;
  /** Plans in flight. */
  inflight: number;
  /** Plans per second at most (0: no limit). */
  ratePerSecond: number;
  /** Keep the temp dir (logs, data dirs). */
  keep: boolean;
  /** Print the client's debug lines. */
  verbose: boolean;
  /** The checkout whose Seguro the nodes run (default: this one). */
  repo: string;
  /** Progress lines. */
  log: (line: string) => void;
}

/** What a run found. */
export interface NemesisResult {
  /** The seed. */
  seed: number;
  /** Hook-mode rounds done. */
  rounds: RoundResult[];
  /** Elections after the first, in the hook-mode cluster. */
  failovers: number;
  /** Failover times of the rounds that had one (ms). */
  failoverMs: number[];
  /** The checker's report. */
  report: CheckReport;
  /** The runtime client's counters. */
  client: SpecRuntimeStats & { released: number; resyncLosses: number };
  /** Protocol surprises the client saw. */
  observations: string[];
  /** The exec-mode rounds, if run. */
  exec: ExecResult | undefined;
  /** Whether netem was there, and why not. */
  netem: { ok: boolean; why: string };
  /** Failures to run (a cluster that did not recover, a command that failed). */
  errors: string[];
  /** The nodes' last log lines, when something failed. */
  tails: string;
  /** Wall time of the run. */
  wallMs: number;
  /** The temp dir with the nodes' logs and data, when kept (--keep). */
  kept: string | undefined;
}

const SHORT_FAULTS: readonly FaultKind[] = [
  "kill-master",
  "pause-master",
  "isolate-master",
  "oneway-master-out",
  "kill-follower",
  "random-loss",
  "kill-master",
  "isolate-follower",
];

const LONG_WEIGHTS: readonly [FaultKind, number][] = [
  ["kill-master", 20],
  ["pause-master", 12],
  ["isolate-master", 14],
  ["oneway-master-out", 8],
  ["oneway-master-in", 8],
  ["kill-majority", 5],
  ["kill-follower", 6],
  ["isolate-follower", 6],
  ["split-pair", 6],
  ["random-loss", 8],
  ["bandwidth", 7],
  ["netem-delay", 3],
  ["netem-duplicate", 3],
  ["netem-reorder", 3],
];

/**
 * Picks faults: from `only` uniformly when given; else the short profile
 * deals its list in a seeded order and the long one draws by weight.
 */
function faultPicker(
  profile: "short" | "long",
  prng: Prng,
  netem: boolean,
  only: readonly FaultKind[],
): () => FaultKind {
  if (only.length > 0) return () => only[prng.int(only.length)];
  if (profile === "short") {
    let deck: FaultKind[] = [];
    return () => {
      if (deck.length === 0) deck = [...SHORT_FAULTS];
      return deck.splice(prng.int(deck.length), 1)[0];
    };
  }
  const table = LONG_WEIGHTS.filter(([k]) => netem || !NETEM_FAULTS.includes(k));
  const total = table.reduce((n, [, w]) => n + w, 0);
  return () => {
    let x = prng.int(total);
    for (const [k, w] of table) {
      if (x < w) return k;
      x -= w;
    }
    return table[0][0];
  };
}

async function newToken(repo: string): Promise<string> {
  const main = join(repo, "main.ts");
  const r = await sh(Deno.execPath(), ["run", ...SEGURO_RUN_FLAGS, main, "token", "new"]);
  if (r.code !== 0) throw new Error(`'seguro token new' failed: ${r.stderr.trim()}`);
  return r.stdout.trim();
}

async function checkOptimismIsQuorum(cluster: Cluster, node: number): Promise<void> {
  const out = await cluster.mustAdmin(node, ["ship", "list", "--json"]);
  const ships = JSON.parse(out) as { ship: string; optimism: number; defaultOptimism: number }[];
  const zod = ships.find((s) => s.ship === String(SHIP));
  if (zod === undefined || zod.optimism !== -1 || zod.defaultOptimism !== -1) {
    throw new Error(`~zod must run at the default optimism (a quorum); ship list says ${out}`);
  }
}

/** Runs the nemesis; never throws for a violation (the report says), only for a broken setup. */
export async function runNemesis(o: NemesisOptions): Promise<NemesisResult> {
  const startedAt = Date.now();
  const unavailable = await namespacesUnavailable();
  if (unavailable !== undefined) throw new Error(`the nemesis cannot run here: ${unavailable}`);
  const swept = await Network.sweepStale();
  if (swept.length > 0) o.log(`removed namespaces left by dead runs: ${swept.join(", ")}`);
  const prng = createPrng(o.seed);
  const dir = await Deno.makeTempDir({ prefix: `seguro-nemesis-${Deno.pid}-` });
  onCleanup(`removing ${dir}`, async () => {
    if (!o.keep) await Deno.remove(dir, { recursive: true });
  });
  const errors: string[] = [];
  const rounds: RoundResult[] = [];
  let tails = "";
  let exec: ExecResult | undefined;
  let finals: NodeFinal[] = [];
  let client: SpecRuntime | undefined;
  let netem = { ok: false, why: "not probed" };
  const clientLines: string[] = [];
  try {
    const net = await Network.create(3);
    onCleanup(`removing namespaces ${net.prefix}-*`, () => net.destroy());
    o.log(
      `network: namespaces ${net.prefix}-n1..n3 on a bridge in ${net.bridgeNs}, 10.213.${net.subnet}.0/24; data in ${dir}`,
    );
    netem = await probeNetem(net);
    if (!netem.ok) {
      o.log(
        `note: this kernel has no netem (tc qdisc netem: ${netem.why}); no delay, duplication or reordering is injected; loss uses nft`,
      );
    }
    const token = await newToken(o.repo);
    const cluster = await Cluster.start(
      { net, dir: join(dir, "hook"), token, repo: o.repo },
      FIRST_LEADER_MS,
    );
    onCleanup("killing the hook-mode nodes", () => cluster.killAll());
    try {
      const leader = cluster.latestLeader()!;
      await cluster.mustAdmin(leader, ["ship", "add", "~zod", "--fake"]);
      await checkOptimismIsQuorum(cluster, leader);
      o.log(`cluster up: node ${leader} leads; ~zod added at the default optimism (a quorum)`);
      client = new SpecRuntime({
        ship: SHIP,
        nodes: cluster.endpoints(),
        seed: o.seed,
        inflight: o.inflight,
        ratePerSecond: o.ratePerSecond,
        log: (line) => {
          if (o.verbose) o.log(`  client: ${line}`);
          clientLines.push(`${new Date().toISOString()} ${line}`);
          if (clientLines.length > 40) clientLines.shift();
        },
      });
      client.start();
      await client.waitRelease(() => true, FAILOVER_MS, "at the start");
      const pick = faultPicker(o.profile, prng, netem.ok, o.faults);
      const deadline = startedAt + o.timeLimitMs;
      for (let i = 0; i < Math.min(o.rounds, ROUNDS_MAX); i++) {
        if (Date.now() >= deadline) {
          o.log(`time limit reached after ${i} rounds`);
          break;
        }
        const failovers = rounds.reduce((n, r) => n + r.elections, 0);
        if (o.failovers > 0 && failovers >= o.failovers) break;
        const kind = pick();
        try {
          const r = await runRound({ cluster, net, client, prng, ship: SHIP }, kind);
          rounds.push(r);
          o.log(
            `round ${i + 1}: ${r.description}; ${
              r.failoverMs === undefined
                ? "no election"
                : `failover ${r.failoverMs} ms (${r.elections} election${
                  r.elections > 1 ? "s" : ""
                })`
            }; node ${r.releasingNode} releases; ${client.released.length} released${
              r.slow.length > 0 ? `; SLOW: ${r.slow.join("; ")}` : ""
            }`,
          );
        } catch (e) {
          errors.push(`round ${i + 1} (${kind}): ${(e as Error).message}`);
          break;
        }
      }
    } finally {
      await client?.stop();
      try {
        const head = await waitConverged(cluster.endpoints(), SHIP);
        o.log(`stopping the hook-mode cluster: every node at event ${head}`);
      } catch (e) {
        errors.push((e as Error).message);
      }
      if (errors.length > 0) tails = cluster.tails();
      await cluster.stopAll();
    }
    finals = [...cluster.members.values()].map((m) => readFinalLog(m.id, m.dir, SHIP));
    for (const f of finals) {
      if (f.applied < f.commit) {
        errors.push(
          `node ${f.node} stopped with applied index ${f.applied} below its commit index ${f.commit}: its event table may lack committed events`,
        );
      }
    }
    if (o.execRounds > 0) {
      let execCluster: Cluster | undefined;
      try {
        exec = await runExecRounds({
          net,
          dir: join(dir, "exec"),
          token: await newToken(o.repo),
          repo: o.repo,
          rounds: o.execRounds,
          log: o.log,
          started: (c) => {
            execCluster = c;
            onCleanup("killing the exec-mode nodes", () => c.killAll());
          },
        });
      } catch (e) {
        errors.push(`exec mode: ${(e as Error).message}`);
        tails += execCluster?.tails() ?? "";
      }
    }
  } catch (e) {
    errors.push((e as Error).stack ?? String(e));
  }
  const report = checkRun({
    released: client?.releasedEvents() ?? [],
    connections: client?.connections ?? [],
    finals,
    otherFinals: exec ? [exec.finals] : [],
    journal: exec?.journal,
  });
  await runCleanup(o.log);
  if (errors.length > 0 && clientLines.length > 0) {
    tails += `\n--- runtime client, last lines:\n${clientLines.join("\n")}`;
  }
  const failoverMs = rounds.flatMap((r) => r.failoverMs === undefined ? [] : [r.failoverMs]);
  return {
    seed: o.seed,
    rounds,
    failovers: rounds.reduce((n, r) => n + r.elections, 0),
    failoverMs,
    report,
    client: {
      ...(client?.stats ?? emptySpecStats()),
      released: client?.released.length ?? 0,
      resyncLosses: client?.resyncLosses ?? 0,
    },
    observations: client?.observations ?? [],
    exec,
    netem,
    errors,
    tails,
    wallMs: Date.now() - startedAt,
    kept: o.keep ? dir : undefined,
  };
}
