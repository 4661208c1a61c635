/**
 * One nemesis round on the hook-mode cluster: a fault is applied while the
 * runtime client pipelines, held (for its time, or until a new master has
 * released the client), healed, and the round ends once a master releases
 * again. The failover time is measured from the fault's start to the first
 * release on a connection whose `%lead` came after it, when the round saw
 * an election. A wait past its bound marks the round slow (a liveness
 * problem, reported); a round that has not recovered by SLOW_ROUND_MS fails
 * the run.
 * @module
 */

import type { Prng } from "../../core/prng.ts";
import type { Cluster } from "./cluster.ts";
import { type ActiveFault, applyFault, type FaultKind } from "./faults.ts";
import type { Network } from "./netns.ts";
import type { ReleaseNote, SpecRuntime } from "./spec_client.ts";
import { waitCaughtUp } from "./node_logs.ts";
import { FAILOVER_MS, RECOVERY_MS, REJOIN_MS, SLOW_ROUND_MS } from "./limits.ts";

/** A node's line once it follows a leader (or leads). */
const REJOINED = /now follower at term \d+ \(leader \d+\)|became leader/;

/** What a round did and saw. */
export interface RoundResult {
  /** The fault's kind. */
  kind: FaultKind;
  /** What was done. */
  description: string;
  /** The master when it started. */
  master: number;
  /** Elections during the round (new master terms). */
  elections: number;
  /** Fault start to the first release by a new master, when there was an election. */
  failoverMs: number | undefined;
  /** The node releasing at the round's end. */
  releasingNode: number;
  /** Waits that took longer than their bound (the round still recovered, within SLOW_ROUND_MS). */
  slow: string[];
}

/** What a round needs. */
export interface RoundContext {
  /** The cluster. */
  cluster: Cluster;
  /** Its namespaces. */
  net: Network;
  /** The runtime client. */
  client: SpecRuntime;
  /** The run's random source. */
  prng: Prng;
  /** The ship the client runs. */
  ship: bigint;
}

/** Runs one round of `kind`; throws (after healing) if the cluster does not recover in time. */
export async function runRound(ctx: RoundContext, kind: FaultKind): Promise<RoundResult> {
  const { cluster, net, client, prng, ship } = ctx;
  const master = client.activeNode ?? cluster.latestLeader();
  if (master === undefined) throw new Error("no master to aim the fault at");
  client.markRound();
  const electionsBefore = cluster.elections.length;
  const faultAt = Date.now();
  const byNewMaster = (n: { leadAtMs: number }) => n.leadAtMs > faultAt;
  let fault: ActiveFault | undefined;
  let healed = false;
  const slow: string[] = [];
  /** A release matching `pred`: past `boundMs` the round is slow; past SLOW_ROUND_MS it fails. */
  const release = async (pred: (n: ReleaseNote) => boolean, boundMs: number, what: string) => {
    try {
      return await client.waitRelease(pred, boundMs, what);
    } catch {
      slow.push(`no release ${what} within ${boundMs} ms`);
      return await client.waitRelease(pred, SLOW_ROUND_MS - boundMs, `${what} (a slow round)`);
    }
  };
  try {
    fault = await applyFault(kind, { cluster, net, prng, master });
    if (fault.untilFailover) {
      await release(byNewMaster, FAILOVER_MS, `by a new master after: ${fault.description}`);
    } else {
      // The fault's duration is the fault itself: nothing to wait on but the clock.
      await new Promise((r) => setTimeout(r, fault!.holdMs));
    }
    const healAt = Date.now();
    healed = true;
    const before = new Map([...cluster.members.values()].map((m) => [m.id, m.proc]));
    await fault.heal();
    // A restarted node rejoins before the next round (else that round is two faults at once).
    await Promise.all(
      [...cluster.members.values()]
        .filter((m) => m.proc !== undefined && m.proc !== before.get(m.id))
        .map((m) => m.proc!.waitFor(REJOINED, 0, REJOIN_MS).catch(() => {})),
    );
    const after = await release(
      (n) => n.atMs > healAt,
      RECOVERY_MS,
      `after healing: ${fault.description}`,
    );
    const elections = cluster.elections.length - electionsBefore;
    let failoverMs: number | undefined;
    if (elections > 0) {
      const first = await release(byNewMaster, RECOVERY_MS, "by a new master");
      failoverMs = first.atMs - faultAt;
    }
    // Every node holds what was released by the heal before the next fault (else that fault
    // meets a node still rejoining: two faults at once). Not reaching it is a note, not a failure.
    const caughtUp = await waitCaughtUp(cluster.endpoints(), ship, after.eve, REJOIN_MS);
    if (!caughtUp) slow.push(`not every node held event ${after.eve} within ${REJOIN_MS} ms`);
    return {
      kind,
      description: fault.description,
      master,
      elections,
      failoverMs,
      releasingNode: after.node,
      slow,
    };
  } finally {
    if (fault !== undefined && !healed) await fault.heal().catch(() => {});
  }
}
