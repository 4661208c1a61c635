/**
 * The nemesis's exec-mode rounds: a second cluster in the same namespaces,
 * its nodes run with `--standby-dir` and `--exec` (the fake urbit of
 * tests/e2e/fake_urbit.ts, with one journal directory for all nodes), a
 * fake ship marked with `seguro ship run`. Each round cuts the master whose
 * runtime runs off the bridge (link down), waits for the runtime to start on
 * another node, heals the link and waits for the cluster to go on. The
 * journal then shows whether two runtimes ever ran at once, and the final
 * logs whether the nodes agree.
 * @module
 */

import { join } from "node:path";
import { Cluster } from "./cluster.ts";
import type { Network } from "./netns.ts";
import { type NodeFinal, readFinalLog, waitConverged } from "./node_logs.ts";
import { type JournalLine, parseJournal } from "./history.ts";
import { EXEC_FAILOVER_MS, FIRST_LEADER_MS, RECOVERY_MS } from "./limits.ts";

/** The exec-mode ship: ~nec. */
export const EXEC_SHIP = 1n;
const EXEC_SHIP_NAME = "~nec";
/** SIGTERM-to-SIGKILL grace of the fake urbit. */
const EXEC_GRACE_MS = 500;

/** What the exec-mode rounds saw. */
export interface ExecResult {
  /** Rounds done. */
  rounds: number;
  /** Link down of the runtime's master to the runtime's start elsewhere, per round. */
  failoversMs: number[];
  /** The journal. */
  journal: JournalLine[];
  /** Each node's final log of the ship. */
  finals: NodeFinal[];
  /** Events in the final log. */
  events: number;
}

/** How the exec rounds run. */
export interface ExecOptions {
  /** The namespaces (shared with the hook-mode cluster, which is stopped by now). */
  net: Network;
  /** Directory for this cluster's data dirs, standby piers and journal. */
  dir: string;
  /** Cluster token. */
  token: string;
  /** The checkout the nodes run. */
  repo: string;
  /** Rounds. */
  rounds: number;
  /** Progress lines. */
  log: (line: string) => void;
  /** Called with the cluster as soon as it exists, so a failure can still kill it. */
  started: (cluster: Cluster) => void;
}

const STARTED = new RegExp(`${EXEC_SHIP_NAME}: runtime started`);
const COMMITTED = new RegExp(`${EXEC_SHIP_NAME}: tail committed up to event`);

/** Resolves with the node whose runtime starts after `marks` (bounded). */
async function runtimeStart(
  cluster: Cluster,
  marks: Map<number, number>,
  exclude: number | undefined,
  timeoutMs: number,
): Promise<number> {
  const waits = [...cluster.members.values()]
    .filter((m) => m.id !== exclude && m.proc !== undefined)
    .map((m) => m.proc!.waitFor(STARTED, marks.get(m.id) ?? 0, timeoutMs).then(() => m.id));
  return await Promise.any(waits).catch(() => {
    throw new Error(
      `no runtime of ${EXEC_SHIP_NAME} started within ${timeoutMs} ms\n${cluster.tails()}`,
    );
  });
}

function marksOf(cluster: Cluster): Map<number, number> {
  return new Map([...cluster.members.values()].map((m) => [m.id, m.proc?.mark() ?? 0]));
}

/** Runs the exec-mode cluster and its rounds, stops it, and reads what it left. */
export async function runExecRounds(o: ExecOptions): Promise<ExecResult> {
  const journalDir = join(o.dir, "journal");
  await Deno.mkdir(journalDir, { recursive: true });
  const cluster = await Cluster.start(
    {
      net: o.net,
      dir: o.dir,
      token: o.token,
      repo: o.repo,
      exec: { journalDir, graceMs: EXEC_GRACE_MS },
    },
    FIRST_LEADER_MS,
  ).catch((e) => {
    throw new Error(`the exec-mode cluster did not start: ${(e as Error).message}`);
  });
  o.started(cluster);
  const failoversMs: number[] = [];
  const leader = cluster.latestLeader()!;
  await cluster.mustAdmin(leader, ["ship", "add", EXEC_SHIP_NAME, "--fake"]);
  let marks = marksOf(cluster);
  await cluster.mustAdmin(leader, ["ship", "run", EXEC_SHIP_NAME]);
  let runner = await runtimeStart(cluster, marks, undefined, EXEC_FAILOVER_MS);
  await cluster.members.get(runner)!.proc!.waitFor(COMMITTED, marks.get(runner)!, RECOVERY_MS);
  o.log(`exec mode: ${EXEC_SHIP_NAME}'s runtime runs on node ${runner}`);
  for (let i = 0; i < o.rounds; i++) {
    marks = marksOf(cluster);
    const cutAt = Date.now();
    await o.net.linkDown(runner);
    let next: number;
    try {
      next = await runtimeStart(cluster, marks, runner, EXEC_FAILOVER_MS);
    } finally {
      await o.net.linkUp(runner);
    }
    const ms = Date.now() - cutAt;
    failoversMs.push(ms);
    const old = cluster.members.get(runner)!.proc!;
    await old.waitFor(/now follower at term/, marks.get(runner)!, RECOVERY_MS);
    const nextProc = cluster.members.get(next)!.proc!;
    await nextProc.waitFor(COMMITTED, marks.get(next)!, RECOVERY_MS);
    o.log(
      `exec round ${
        i + 1
      }/${o.rounds}: node ${runner} cut off; the runtime started on node ${next} after ${ms} ms; node ${runner} rejoined`,
    );
    runner = next;
  }
  const stopMark = cluster.members.get(runner)!.proc!.mark();
  await cluster.mustAdmin(runner, ["ship", "run", EXEC_SHIP_NAME, "--off"]);
  await cluster.members.get(runner)!.proc!.waitFor(/runtime stopped/, stopMark, RECOVERY_MS);
  const events = await waitConverged(cluster.endpoints(), EXEC_SHIP);
  await cluster.stopAll();
  const finals = [...cluster.members.values()].map((m) => readFinalLog(m.id, m.dir, EXEC_SHIP));
  let journal: JournalLine[] = [];
  try {
    journal = parseJournal(await Deno.readTextFile(join(journalDir, "journal.log")));
  } catch {
    // no runtime ever wrote: the checks below say so
  }
  return { rounds: o.rounds, failoversMs, journal, finals, events };
}
