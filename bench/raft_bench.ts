/**
 * The Raft core's own ceiling: proposals per second through a 3-node
 * in-memory cluster with an instant network and instant disks, for 100-byte
 * and 1 KiB payloads. Measured, not asserted.
 *
 * `deno task bench:raft [--seconds S]`
 *
 * @module
 */

import { createPrng, type Message, RaftNode } from "../core/mod.ts";

/** One measurement. */
export interface RaftBenchResult {
  /** Payload bytes per proposal. */
  readonly payloadBytes: number;
  /** Proposals submitted per round (one round = one Ready cycle on every node). */
  readonly batch: number;
  /** Proposals committed and applied on the leader (and durably replicated on both followers' disks up to the previous round). */
  readonly proposals: number;
  /** Wall time in milliseconds. */
  readonly elapsedMs: number;
}

/** Builds a 3-node cluster with node 1 as leader. */
function trio(): RaftNode[] {
  const rng = createPrng(42);
  const voters = [1, 2, 3];
  const nodes = voters.map((id) =>
    new RaftNode(
      { id, groupId: 1, randomInt: (n) => rng.int(n), maxSizePerMsgBytes: 1 << 20 },
      { snapshot: { index: 0, term: 0, conf: { voters, learners: [] } } },
    )
  );
  nodes[0].campaign();
  pump(nodes);
  if (nodes[0].role !== "leader") throw new Error("Node 1 did not become leader");
  return nodes;
}

/** Runs Ready cycles (instant disk, instant network) until the cluster is quiet. */
function pump(nodes: RaftNode[]): number {
  let applied = 0;
  let moved = true;
  const inbox: Message[] = [];
  while (moved) {
    moved = false;
    for (const n of nodes) {
      while (n.hasReady()) {
        moved = true;
        const r = n.ready();
        for (const m of r.messages) inbox.push(m);
        for (const m of r.messagesAfterPersist) inbox.push(m);
        if (n === nodes[0]) applied += r.committedEntries.length;
        n.advance();
      }
    }
    for (let i = 0; i < inbox.length; i++) nodes[inbox[i].to - 1].step(inbox[i]);
    if (inbox.length > 0) moved = true;
    inbox.length = 0;
  }
  return applied;
}

/** Proposes `total` payloads of `payloadBytes`, `batch` per round, and times it. */
export function benchProposals(
  payloadBytes: number,
  batch: number,
  total: number,
): RaftBenchResult {
  const nodes = trio();
  const leader = nodes[0];
  const payload = new Uint8Array(payloadBytes).fill(7);
  const started = performance.now();
  let proposed = 0;
  let applied = 0;
  while (proposed < total) {
    for (let i = 0; i < batch; i++) {
      const res = leader.propose(payload);
      if (!res.accepted) throw new Error(`Proposal was refused: ${res.reason}`);
    }
    proposed += batch;
    applied += pump(nodes);
  }
  const elapsedMs = performance.now() - started;
  // Followers learn the final commit index from the next heartbeat; the leader has it now.
  if (leader.commitIndex !== leader.lastIndex) {
    throw new Error("The leader did not commit everything");
  }
  return { payloadBytes, batch, proposals: applied - 1, elapsedMs };
}

if (import.meta.main) {
  const secondsArg = Deno.args.indexOf("--seconds");
  const total = secondsArg >= 0 ? Number(Deno.args[secondsArg + 1]) * 200_000 : 400_000;
  for (const payloadBytes of [100, 1024]) {
    benchProposals(payloadBytes, 256, 50_000); // warm up the JIT
    for (const batch of [1, 16, 256]) {
      const n = batch === 1 ? Math.min(total, 100_000) : total;
      const r = benchProposals(payloadBytes, batch, n);
      const perSecond = r.proposals / (r.elapsedMs / 1000);
      const usPer = (r.elapsedMs * 1000) / r.proposals;
      console.log(
        `raft 3-node in-memory: payload=${payloadBytes}B batch=${batch} proposals=${r.proposals} ` +
          `${Math.round(perSecond).toLocaleString("en-US")}/s ${usPer.toFixed(2)} us/proposal`,
      );
    }
  }
}
