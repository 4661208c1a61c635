/**
 * Membership changes as the leader carries them out: add a learner (with
 * its address), remove a member (refused when the rest would lose quorum),
 * promote a learner (by hand, or once it has caught up), hand leadership
 * over. One change at a time: each waits for the previous one to finish.
 * The Raft rules themselves (one change in flight, learners before voters)
 * are the core's (core/confchange.ts); this module adds the operator's.
 * @module
 */

import type { LogSink } from "./log_event.ts";
import { type ConfChange, majority } from "../core/mod.ts";
import { ApiError, Status } from "./admin_protocol.ts";
import type { NodeDriver } from "./driver.ts";
import { encodeAddress } from "./machine.ts";
import type { Store } from "./store.ts";
import type { PeerView } from "./transport.ts";

/**
 * Whether the node of `store` was removed from its cluster, and who said so
 * (`by` 0: its own log); undefined when it is not known to be. A removed node
 * must not run again: its id is gone from the membership for good.
 */
export function removalOf(store: Store): { by: number } | undefined {
  const by = store.localSettings.removedBy();
  if (by !== undefined) return { by };
  return store.machineSettings.removed().has(store.identity.nodeId) ? { by: 0 } : undefined;
}

/** What membership changes need from their node. */
export interface MembershipConfig {
  /** The node's consensus and state machine. */
  driver: NodeDriver;
  /** What the transport knows of each peer (for the quorum check of a removal). */
  peers(): readonly PeerView[];
  /** The base election timeout (ms): a peer not heard from for this long is not healthy. */
  electionMs: number;
  /** Resolves when `ready()` holds after a Ready, after `waitMs`, or when the node stops. */
  waitFor(ready: () => boolean, waitMs: number): Promise<void>;
  /** Runs the Ready loop soon. */
  wake(): void;
  /** Log sink. */
  log: LogSink;
}

/** The leader's membership operations, one at a time. */
export class Membership {
  readonly #cfg: MembershipConfig;
  #lock: Promise<unknown> = Promise.resolve();

  /** Makes the operations for one node. */
  constructor(config: MembershipConfig) {
    this.#cfg = config;
  }

  /** Adds a learner at `address` (or finds the learner already there); returns its id. */
  addLearner(address: string): Promise<number> {
    const { driver } = this.#cfg;
    return this.#serialized(async () => {
      driver.requireLeader();
      for (const [id, known] of driver.machine.addresses) {
        if (known !== address) continue;
        if (driver.raft.conf.learners.includes(id)) return id;
        if (driver.raft.conf.voters.includes(id)) {
          throw new ApiError(
            Status.error,
            `${address} is already voter ${id}; if that node lost its data dir, run 'seguro member remove ${id}' first, then join again`,
          );
        }
      }
      const id = this.#nextNodeId();
      await driver.proposeCommand(encodeAddress(id, address));
      await driver.changeConf({ type: "addLearner", nodeId: id });
      this.#cfg.log(`added node ${id} at ${address} as a learner`);
      return id;
    });
  }

  /** Removes member `id`; unless `force`, refused when the rest could not form a quorum now. */
  remove(id: number, force: boolean): Promise<string> {
    const { driver } = this.#cfg;
    return this.#serialized(async () => {
      driver.requireLeader();
      const conf = driver.raft.conf;
      if (!conf.voters.includes(id) && !conf.learners.includes(id)) {
        throw new ApiError(Status.error, `Node ${id} is not a member; see 'seguro member list'`);
      }
      if (conf.voters.includes(id) && !force) {
        const rest = conf.voters.filter((v) => v !== id);
        const healthy = rest.filter((v) => v === driver.id || this.#isHealthy(v)).length;
        const needed = majority(rest.length);
        if (healthy < needed) {
          throw new ApiError(
            Status.error,
            `Removing node ${id} would leave ${rest.length} voters of which ${healthy} are reachable, fewer than the ${needed} a quorum needs; bring nodes back first, or pass --force`,
          );
        }
      }
      await this.#changeConf({ type: "removeNode", nodeId: id });
      return `Removed node ${id}`;
    });
  }

  /** Makes learner `id` a voter. */
  promote(id: number): Promise<void> {
    return this.#serialized(() => this.#changeConf({ type: "promoteLearner", nodeId: id }));
  }

  /** Hands leadership to voter `id`; resolves with a sentence once it leads. */
  async transfer(id: number): Promise<string> {
    const { driver } = this.#cfg;
    driver.requireLeader();
    if (id === driver.id) return `Node ${id} is already the leader`;
    const result = driver.raft.transferLeadership(id);
    if (!result.accepted) throw new ApiError(Status.error, result.reason);
    this.#cfg.wake();
    // Every Ready re-checks the watchers, so this wakes as soon as the leader changes.
    await this.#cfg.waitFor(() => driver.raft.leaderId === id, 4 * this.#cfg.electionMs);
    if (driver.raft.leaderId === id) return `Node ${id} is now the leader`;
    throw new ApiError(
      Status.error,
      `Node ${id} did not take over in time (it may be lagging or down); leadership stays with node ${driver.raft.leaderId}`,
    );
  }

  /** Leader, now and then: promotes the first learner that has caught up (one change at a time). */
  promoteCaughtUpLearners(): void {
    const { raft } = this.#cfg.driver;
    for (const id of raft.conf.learners) {
      const pr = raft.progressOf(id);
      if (pr === undefined || pr.match < raft.commitIndex) continue;
      this.#serialized(async () => {
        if (!raft.conf.learners.includes(id)) return;
        await this.#changeConf({ type: "promoteLearner", nodeId: id });
        this.#cfg.log(`promoted node ${id} to voter (caught up)`, { event: "promoted", node: id });
      }).catch((e) => this.#cfg.log(`promotion of node ${id} postponed: ${(e as Error).message}`));
      return; // one change at a time
    }
  }

  #changeConf(change: ConfChange): Promise<void> {
    return this.#cfg.driver.changeConf(change);
  }

  /** Runs membership operations one at a time. */
  #serialized<T>(f: () => Promise<T>): Promise<T> {
    const run = this.#lock.then(f, f);
    this.#lock = run.catch(() => {});
    return run;
  }

  /** A fresh id: above every member, every known address and every removed node (never reused). */
  #nextNodeId(): number {
    const { raft, machine } = this.#cfg.driver;
    const ids = [
      ...raft.conf.voters,
      ...raft.conf.learners,
      ...machine.addresses.keys(),
      ...machine.removed,
    ];
    return Math.max(0, ...ids) + 1;
  }

  #isHealthy(id: number): boolean {
    // Connected now (a dead peer's socket closes at once) and heard from within an election timeout.
    const peer = this.#cfg.peers().find((p) => p.id === id);
    return peer !== undefined && peer.connected && peer.lastHeardMs !== null &&
      peer.lastHeardMs < this.#cfg.electionMs;
  }
}
