/**
 * The node driver: the Raft core (core/) brought to life with a clock, a
 * disk (cluster/store.ts) and a network (cluster/transport.ts).
 *
 * Real timers drive `tick()`. The Ready loop follows the core's durability
 * contract for every batch:
 *   1. send `messages` (they may go out while the batch is being written);
 *   2. write hard state, entries and snapshot in ONE SQLite transaction
 *      (`synchronous=FULL`: durable when `persist` returns);
 *   3. send `messagesAfterPersist` (votes, acknowledgements);
 *   4. apply committed entries and answer the clients waiting on them;
 *   5. `advance()`.
 * Nothing is acknowledged to anyone before step 2 for it has returned, so a
 * crash (kill -9) at any point loses nothing that was acknowledged.
 * @module
 */

import type { ImageInfo } from "./images.ts";
import { setImmediate } from "node:timers";
import {
  type ConfChange,
  type ConfState,
  majority,
  type Message,
  type RaftNode,
} from "../core/mod.ts";
import type { Store } from "./store.ts";
import { Transport } from "./transport.ts";
import {
  type ApplyResult,
  decodeCommand,
  encodeAddress,
  encodeCommand,
  type Machine,
  removedMembers,
} from "./machine.ts";
import { SHIP_MAX, type ShipInfo, shipOfKey } from "./ships.ts";
import type { ShipMaster } from "./ship_master.ts";
import { optimismProblem } from "./release.ts";
import { type DriverObserver, NodeDriver } from "./driver.ts";
import { createHash } from "node:crypto";
import { cue, jam } from "../vere/noun.ts";
import {
  ApiError,
  decodeImageRequest,
  decodeLogRequest,
  decodeReadRequest,
  encodeEntries,
  encodeEvents,
  encodeIndex,
  type LogEntryView,
  Op,
  serveClient,
  Status,
} from "./api.ts";
import type { FrameConn } from "./frame.ts";
import { VERSION } from "./version.ts";

/** Default milliseconds per tick: heartbeats every tick, elections after 10 to 20 ticks. */
export const TICK_MS_DEFAULT = 50;
const READ_BYTES_MAX = 4 * 1024 * 1024;
const ENTRY_TYPE_CODE = { normal: 0, conf: 1, noop: 2 } as const;

/** Setting a node writes once it learns it was removed from its cluster: who said so (0: its log). */
const REMOVED_SETTING = "node.removed";

/**
 * Whether the node of `store` was removed from its cluster, and who said so
 * (`by` 0: its own log); undefined when it is not known to be. A removed node
 * must not run again: its id is gone from the membership for good.
 */
export function removalOf(store: Store): { by: number } | undefined {
  const by = store.getSetting(REMOVED_SETTING);
  if (by !== undefined) return { by: Number(by) };
  return removedMembers(store).has(store.identity.nodeId) ? { by: 0 } : undefined;
}

/** Default election timeout in ticks (the real one is uniform in [this, 2 * this)). */
export const ELECTION_TICKS_DEFAULT = 10;

/** How a node is started. */
export interface NodeConfig {
  /** The node's open store (the node closes it on stop). */
  store: Store;
  /** A bound listener for peers and clients. */
  listener: Deno.TcpListener;
  /** Where other nodes reach this one. */
  advertise: string;
  /** Log sink (one line per event). */
  log: (line: string) => void;
  /** Milliseconds per tick. */
  tickMs?: number;
  /** Election timeout in ticks. */
  electionTicks?: number;
  /** Renders a ship in messages (e.g. `~zod`); cluster/ does not depend on vere/. */
  shipName?: (ship: bigint) => string;
  /** Called after each batch of committed entries is applied (e.g. to keep standby piers). */
  onApplied?: () => void;
  /** Where this node runs a ship's runtime (`seguro run --exec`), for `ship list`. */
  shipRuntime?: (ship: bigint) => ShipRuntimeJson | undefined;
  /** Active alarms of this node's side jobs (standby piers, exec), for `status`. */
  alarms?: () => string[];
  /** Timings of the Ready loop (`seguro run --metrics`). */
  observer?: DriverObserver;
}

/** One member as `seguro status` shows it. */
export interface MemberStatus {
  /** Node id. */
  id: number;
  /** Address, or null if unknown. */
  address: string | null;
  /** Voter or learner. */
  membership: "voter" | "learner";
  /** Leader's view: highest index durably replicated there (null on followers). */
  match: number | null;
  /** Leader's view: replication state (probe / replicate / snapshot). */
  state: string | null;
  /** Milliseconds since a message from it arrived here (null: never, or self). */
  lastContactMs: number | null;
  /** True while this node's connection to it is up (self: true). */
  connected: boolean;
}

/** What one node says about itself and the cluster, for `seguro status`. */
export interface NodeStatus {
  /** Seguro version. */
  version: string;
  /** Cluster id. */
  clusterId: string;
  /** This node's id. */
  nodeId: number;
  /** This node's advertised address. */
  address: string;
  /** leader, follower, learner, candidate, preCandidate, or removed. */
  role: string;
  /** Current term. */
  term: number;
  /** Known leader id, 0 when none. */
  leaderId: number;
  /** The leader's address when known. */
  leaderAddress: string | null;
  /** Last log index. */
  lastIndex: number;
  /** Commit index. */
  commitIndex: number;
  /** Applied index. */
  appliedIndex: number;
  /** Membership. */
  conf: ConfState;
  /** Every member. */
  members: MemberStatus[];
  /** Milliseconds since this process started the node. */
  uptimeMs: number;
  /** This node's base election timeout (ms): how long a follower waits for its leader. */
  electionTimeoutMs: number;
  /** Runtime side: whether this node releases, releases so far, why releases wait, losses found. */
  release: {
    master: boolean;
    released: number;
    stalled: { need: number; have: number } | null;
    losses: { ship: string; firstEve: number; lastEve: number; index: number; term: number }[];
  };
  /** Store counters: fsyncs, transactions, entries and bytes written. */
  store: { fsyncs: number; transactions: number; entriesWritten: number; bytesWritten: number };
  /** Active alarms of side jobs (a standby pier, the exec supervisor) that failed. */
  alarms: string[];
}

/** A ship operation, as the CLI sends it (ships as decimal strings). */
export interface ShipRequest {
  /** What to do. */
  action: "list" | "add" | "remove" | "set" | "verify" | "default" | "run";
  /** The ship, as a decimal string of its @p number. */
  ship?: string;
  /** Add: a fake ship. */
  fake?: boolean;
  /** Add: number of boot formulas its log starts with. */
  life?: number;
  /** Set: replicas that must hold an event before release; -1 = quorum. */
  optimism?: number;
  /** Run: whether the master runs its `--exec` command for the ship. */
  run?: boolean;
}

/** A ship's runtime as the node running it reports it. */
export interface ShipRuntimeJson {
  /** The node reporting. */
  nodeId: number;
  /** fencing (waiting out the old master's lease), running, stopping, exited, no-exec. */
  state: string;
  /** The guard process's pid while running. */
  pid?: number;
  /** Milliseconds since the state began. */
  forMs: number;
  /** Last event the tail saw committed. */
  committedEve: number;
  /** The tail's delay from reading an event to its commit: p99 over recent batches (ms). */
  tailP99Ms?: number;
  /** Why the tail stopped, or why the runtime is not running. */
  alarm?: string;
}

/** A ship as the admin protocol shows it. */
export interface ShipJson {
  /** Decimal @p number. */
  ship: string;
  /** Fake ship. */
  fake: boolean;
  /** Boot formulas at the start of its log. */
  life: number;
  /** Last event number. */
  lastEve: number;
  /** Last event's mug. */
  lastMug: number;
  /** Bytes of events stored. */
  bytes: number;
  /** Replicas that must hold an event before release; -1 = the cluster default. */
  optimism: number;
  /** In `list`: the cluster's default optimism (-1 = quorum). */
  defaultOptimism?: number;
  /** In `list`: the node id of the master (the leader), 0 when none. */
  master?: number;
  /** The master runs its `--exec` command for this ship (`seguro ship run`). */
  run?: boolean;
  /** In `list`: this node's runtime for the ship, when it runs it. */
  runtime?: ShipRuntimeJson;
  /** In `list`: the ship's epoch snapshots (complete ones have a sha256). */
  images?: ImageInfo[];
}

/** What `verify` finds on one node. */
export interface ShipVerify {
  /** The node that checked. */
  nodeId: number;
  /** Decimal @p number. */
  ship: string;
  /** Last event number. */
  lastEve: number;
  /** Bytes of jam checked. */
  bytes: number;
  /** SHA-256 (hex) over every event's (eve:u64 mug:u32 job). */
  digest: string;
  /** The first problems found (at most 20). */
  problems: { eve: number; problem: string }[];
}

function shipJson(info: ShipInfo): ShipJson {
  return {
    ship: String(info.ship),
    fake: info.fake,
    life: info.life,
    lastEve: info.lastEve,
    lastMug: info.lastMug,
    bytes: info.bytes,
    optimism: info.optimism,
  };
}

function parseShipField(text: string | undefined): bigint | undefined {
  if (text === undefined) return undefined;
  if (!/^[0-9]{1,39}$/.test(text) || BigInt(text) > SHIP_MAX) {
    throw new ApiError(Status.error, `'${text}' is not a ship number`);
  }
  return BigInt(text);
}

/** What a node answers a `join`. */
export interface JoinAnswer {
  /** The id the new node must use. */
  nodeId: number;
  /** The cluster id. */
  clusterId: string;
  /** The leader that added it. */
  leaderId: number;
}

/** A member operation, as the CLI sends it. */
export interface MemberRequest {
  /** What to do. */
  action: "add" | "remove" | "promote" | "transfer";
  /** The node (remove, promote, transfer). */
  nodeId?: number;
  /** The address (add). */
  address?: string;
  /** Remove even when the rest of the cluster would lose quorum. */
  force?: boolean;
}

function cryptoRandomInt(maxExclusive: number): number {
  const buf = new Uint32Array(1);
  crypto.getRandomValues(buf);
  return buf[0] % maxExclusive;
}

/** A running cluster node: the driver under real timers, TCP and the admin service. */
export class ClusterNode {
  /** Consensus, storage, state machine and ship master. */
  readonly driver: NodeDriver;
  /** The network side. */
  readonly transport: Transport;
  readonly #store: Store;
  readonly #cfg: NodeConfig;
  readonly #tickMs: number;
  readonly #electionTicks: number;
  readonly #startedAt = Date.now();
  #wake: (() => void) | undefined;
  #timer: ReturnType<typeof setInterval> | undefined;
  #loop: Promise<void> | undefined;
  #stopping = false;
  #peersSignature = "";
  readonly #commitWatchers = new Set<() => void>();
  #memberLock: Promise<unknown> = Promise.resolve();
  #ticks = 0;
  #fatal: Error | undefined;
  #stopped: Promise<void>;
  #resolveStopped!: () => void;
  #removed = false;
  /** Removed nodes known at the last Ready: more means tell them. */
  #removedCount = 0;

  /** Restores the node from its store. Call {@linkcode start} to run it. */
  constructor(config: NodeConfig) {
    this.#cfg = config;
    this.#store = config.store;
    this.#tickMs = config.tickMs ?? TICK_MS_DEFAULT;
    this.#electionTicks = config.electionTicks ?? ELECTION_TICKS_DEFAULT;
    const identity = this.#store.identity;
    this.driver = new NodeDriver({
      store: config.store,
      send: (m) => this.transport.send(m),
      log: config.log,
      electionTicks: this.#electionTicks,
      randomInt: cryptoRandomInt,
      now: () => Date.now(),
      advertise: config.advertise,
      shipName: config.shipName,
      wake: () => this.#kick(),
      observer: config.observer,
      afterReady: (applied) => {
        this.#updatePeers();
        this.#notifyCommitWatchers();
        if (applied) this.#cfg.onApplied?.();
        if (this.machine.removed.has(this.id)) this.#removedFromCluster(0);
        if (this.machine.removed.size !== this.#removedCount) {
          this.#removedCount = this.machine.removed.size;
          this.transport.tellRemovedPeers();
        }
      },
    });
    this.transport = new Transport({
      clusterId: identity.clusterId,
      nodeId: identity.nodeId,
      secret: this.#store.secret(),
      listener: config.listener,
      advertise: config.advertise,
      onRaft: (m) => this.#step(m),
      onClient: (fc) => this.#serve(fc),
      log: config.log,
      isRemoved: (id) => this.machine.removed.has(id),
      onRemoved: (by) => this.#removedFromCluster(by),
    });
    this.#stopped = new Promise((resolve) => this.#resolveStopped = resolve);
  }

  /** The Raft core (read-only use). */
  get raft(): RaftNode {
    return this.driver.raft;
  }

  /** The applied state. */
  get machine(): Machine {
    return this.driver.machine;
  }

  /** The runtime side: plans in, releases out (while this node is master). */
  get ships(): ShipMaster {
    return this.driver.ships;
  }

  /** This node's id. */
  get id(): number {
    return this.driver.id;
  }

  /** Resolves when the node has stopped (after {@linkcode stop}, or a fatal error). */
  get stopped(): Promise<void> {
    return this.#stopped;
  }

  /** The fatal error that stopped the node, if any. */
  get fatal(): Error | undefined {
    return this.#fatal;
  }

  /** True once this node learned it was removed from the cluster (it then stops). */
  get removed(): boolean {
    return this.#removed;
  }

  /** Starts the timers, the network and the Ready loop. */
  start(): void {
    this.#updatePeers();
    this.transport.start();
    this.#timer = setInterval(() => this.#tick(), this.#tickMs);
    this.#loop = this.#run();
    this.#cfg.log(
      `node ${this.id} of cluster ${
        this.#store.identity.clusterId.slice(0, 8)
      } listening at ${this.#cfg.advertise} (term ${this.raft.term}, last index ${this.raft.lastIndex})`,
    );
  }

  /** Stops gracefully: finishes the batch in flight, closes sockets, releases the data dir. */
  async stop(): Promise<void> {
    if (this.#stopping) return this.#stopped;
    this.#stopping = true;
    clearInterval(this.#timer);
    this.#wake?.();
    this.#notifyCommitWatchers();
    await this.#loop;
    await this.transport.close();
    this.driver.failAll(
      new ApiError(Status.error, "The node is shutting down; retry on another node"),
    );
    try {
      if (!this.#fatal) this.driver.flushHardState();
    } finally {
      this.#store.close();
      this.#resolveStopped();
    }
  }

  /**
   * This node was removed from the cluster: its own log applied the removal
   * (`by` 0), or peer `by`, which applied it, said so. Either way the removal
   * is committed, and the node has nothing left to do: it records that (so a
   * later `seguro run` refuses at once) and stops.
   */
  #removedFromCluster(by: number): void {
    if (this.#removed || this.#stopping) return;
    this.#removed = true;
    this.#store.setSetting(REMOVED_SETTING, String(by));
    this.#cfg.log(
      `this node (${this.id}) was removed from the cluster (${
        by === 0 ? "its log applied the membership change" : `node ${by} says so`
      }); stopping`,
    );
    this.stop();
  }

  #die(e: Error): void {
    if (this.#fatal) return;
    this.#fatal = e;
    this.#cfg.log(`FATAL: ${e.stack ?? e.message}`);
    this.stop();
  }

  #kick(): void {
    const wake = this.#wake;
    this.#wake = undefined;
    wake?.();
  }

  #tick(): void {
    try {
      this.driver.tick();
    } catch (e) {
      this.#die(e as Error);
      return;
    }
    this.#ticks++;
    if (this.raft.role === "leader" && this.#ticks % 5 === 0) this.#promoteCaughtUpLearners();
    this.#kick();
  }

  #step(m: Message): void {
    if (this.#stopping) return;
    try {
      this.driver.step(m);
    } catch (e) {
      this.#die(e as Error);
      return;
    }
    this.#kick();
  }

  async #run(): Promise<void> {
    while (!this.#stopping) {
      if (!this.driver.hasWork()) {
        await new Promise<void>((resolve) => this.#wake = resolve);
        continue;
      }
      try {
        this.driver.handleReady();
      } catch (e) {
        this.#die(e as Error);
        return;
      }
      // Let network input and new proposals in, so the next batch gathers them.
      await new Promise((resolve) => setImmediate(resolve));
    }
  }

  #updatePeers(): void {
    const conf = this.raft.conf;
    const ids = new Set([...conf.voters, ...conf.learners, this.raft.leaderId]);
    const peers = new Map<number, string>();
    for (const id of ids) {
      const address = this.machine.addresses.get(id);
      if (id !== 0 && id !== this.id && address !== undefined) peers.set(id, address);
    }
    const signature = [...peers].map(([id, a]) => `${id}@${a}`).sort().join(",");
    if (signature === this.#peersSignature) return;
    this.#peersSignature = signature;
    this.transport.setPeers(peers);
  }

  #requireLeader(): void {
    this.driver.requireLeader();
  }

  /** Proposes opaque bytes; resolves with the index once committed and applied here. */
  propose(data: Uint8Array): Promise<number> {
    return this.driver.propose(data);
  }

  /** Proposes a command; resolves once applied here, rejects with the reason if it was refused. */
  proposeCommand(data: Uint8Array): Promise<ApplyResult & { ok: true }> {
    return this.driver.proposeCommand(data);
  }

  #changeConf(change: ConfChange): Promise<void> {
    return this.driver.changeConf(change);
  }

  /** Runs membership operations one at a time. */
  #serialized<T>(f: () => Promise<T>): Promise<T> {
    const run = this.#memberLock.then(f, f);
    this.#memberLock = run.catch(() => {});
    return run;
  }

  #promoteCaughtUpLearners(): void {
    for (const id of this.raft.conf.learners) {
      const pr = this.raft.progressOf(id);
      if (pr === undefined || pr.match < this.raft.commitIndex) continue;
      this.#serialized(async () => {
        if (!this.raft.conf.learners.includes(id)) return;
        await this.#changeConf({ type: "promoteLearner", nodeId: id });
        this.#cfg.log(`promoted node ${id} to voter (caught up)`);
      }).catch((e) => this.#cfg.log(`promotion of node ${id} postponed: ${(e as Error).message}`));
      return; // one change at a time
    }
  }

  #nextNodeId(): number {
    const ids = [
      ...this.raft.conf.voters,
      ...this.raft.conf.learners,
      ...this.machine.addresses.keys(),
      ...this.machine.removed,
    ];
    return Math.max(0, ...ids) + 1;
  }

  /** Adds a learner at `address` (or finds the learner already there); returns its id. */
  #addLearner(address: string): Promise<number> {
    return this.#serialized(async () => {
      this.#requireLeader();
      for (const [id, known] of this.machine.addresses) {
        if (known !== address) continue;
        if (this.raft.conf.learners.includes(id)) return id;
        if (this.raft.conf.voters.includes(id)) {
          throw new ApiError(
            Status.error,
            `${address} is already voter ${id}; if that node lost its data dir, run 'seguro member remove ${id}' first, then join again`,
          );
        }
      }
      const id = this.#nextNodeId();
      await this.proposeCommand(encodeAddress(id, address));
      await this.#changeConf({ type: "addLearner", nodeId: id });
      this.#cfg.log(`added node ${id} at ${address} as a learner`);
      return id;
    });
  }

  #remove(id: number, force: boolean): Promise<string> {
    return this.#serialized(async () => {
      this.#requireLeader();
      const conf = this.raft.conf;
      if (!conf.voters.includes(id) && !conf.learners.includes(id)) {
        throw new ApiError(Status.error, `Node ${id} is not a member; see 'seguro member list'`);
      }
      if (conf.voters.includes(id) && !force) {
        const rest = conf.voters.filter((v) => v !== id);
        const healthy = rest.filter((v) => v === this.id || this.#isHealthy(v)).length;
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

  #isHealthy(id: number): boolean {
    // Connected now (a dead peer's socket closes at once) and heard from within an election timeout.
    const peer = this.transport.peers().find((p) => p.id === id);
    return peer !== undefined && peer.connected && peer.lastHeardMs !== null &&
      peer.lastHeardMs < this.#electionTicks * this.#tickMs;
  }

  async #transfer(id: number): Promise<string> {
    this.#requireLeader();
    if (id === this.id) return `Node ${id} is already the leader`;
    const result = this.raft.transferLeadership(id);
    if (!result.accepted) throw new ApiError(Status.error, result.reason);
    this.#kick();
    // Every Ready re-checks the watchers, so this wakes as soon as the leader changes.
    await this.#waitFor(() => this.raft.leaderId === id, 4 * this.#electionTicks * this.#tickMs);
    if (this.raft.leaderId === id) return `Node ${id} is now the leader`;
    throw new ApiError(
      Status.error,
      `Node ${id} did not take over in time (it may be lagging or down); leadership stays with node ${this.raft.leaderId}`,
    );
  }

  /** Resolves when this node has applied `index`, or after `waitMs`, or at stop. */
  #waitApplied(index: number, waitMs: number): Promise<void> {
    return this.#waitFor(() => this.raft.appliedIndex >= index, waitMs);
  }

  /** Resolves when `ready()` holds after a Ready is handled, or after `waitMs`, or at stop. */
  #waitFor(ready: () => boolean, waitMs: number): Promise<void> {
    return new Promise((resolve) => {
      const finish = () => {
        clearTimeout(timer);
        this.#commitWatchers.delete(check);
        resolve();
      };
      const check = () => {
        if (ready() || this.#stopping) finish();
      };
      const timer = setTimeout(finish, waitMs);
      this.#commitWatchers.add(check);
    });
  }

  #notifyCommitWatchers(): void {
    for (const check of [...this.#commitWatchers]) check();
  }

  async #shipRequest(request: ShipRequest): Promise<unknown> {
    const ship = parseShipField(request.ship);
    switch (request.action) {
      case "list":
        return this.machine.ships.list().map((info) => ({
          ...shipJson(info),
          defaultOptimism: this.machine.defaultOptimism,
          master: this.raft.leaderId,
          run: this.machine.runs(info.ship),
          runtime: this.#cfg.shipRuntime?.(info.ship),
          images: this.machine.images.list(info.ship),
        }));
      case "add":
        await this.proposeCommand(encodeCommand({
          kind: "shipAdd",
          ship: ship!,
          fake: request.fake === true,
          optimism: -1,
          life: Number(request.life ?? 0),
        }));
        return shipJson(this.machine.ships.get(ship!)!);
      case "remove":
        await this.proposeCommand(encodeCommand({ kind: "shipRemove", ship: ship! }));
        return { removed: String(ship) };
      case "set": {
        const optimism = Number(request.optimism);
        const problem = optimismProblem(optimism, this.raft.conf.voters.length);
        if (problem !== undefined) throw new ApiError(Status.error, problem);
        await this.proposeCommand(encodeCommand({ kind: "shipSet", ship: ship!, optimism }));
        return shipJson(this.machine.ships.get(ship!)!);
      }
      case "run":
        await this.proposeCommand(
          encodeCommand({ kind: "shipRun", ship: ship!, run: request.run === true }),
        );
        return { ...shipJson(this.machine.ships.get(ship!)!), run: this.machine.runs(ship!) };
      case "verify":
        return await this.#verifyShip(ship!);
      case "default": {
        const optimism = Number(request.optimism);
        const problem = optimismProblem(optimism, this.raft.conf.voters.length, {
          clusterDefault: true,
        });
        if (problem !== undefined) throw new ApiError(Status.error, problem);
        await this.proposeCommand(encodeCommand({ kind: "defaultOptimism", optimism }));
        return { defaultOptimism: optimism };
      }
    }
    throw new ApiError(Status.error, `Unknown ship action '${request.action}'`);
  }

  /**
   * Checks one ship's log on this node: events numbered 1..last with no gap,
   * each job a valid jam that re-jams to the same bytes; and a SHA-256 over
   * (eve, mug, job) of every event, to compare across nodes. Yields between
   * chunks so the node keeps serving.
   */
  async #verifyShip(ship: bigint): Promise<ShipVerify> {
    const info = this.machine.ships.get(ship);
    if (info === undefined) {
      throw new ApiError(Status.error, `${this.#shipName(ship)} is not on this cluster`);
    }
    const hash = createHash("sha256");
    const problems: { eve: number; problem: string }[] = [];
    let expected = 1;
    let bytes = 0;
    while (expected <= info.lastEve) {
      const chunk = this.machine.ships.events(ship, expected, 500);
      if (chunk.length === 0) break;
      for (const e of chunk) {
        if (e.eve !== expected && problems.length < 20) {
          problems.push({ eve: expected, problem: `missing (next stored is ${e.eve})` });
        }
        expected = e.eve + 1;
        const head = new DataView(new ArrayBuffer(12));
        head.setUint32(0, Math.floor(e.eve / 0x1_0000_0000));
        head.setUint32(4, e.eve >>> 0);
        head.setUint32(8, e.mug);
        hash.update(new Uint8Array(head.buffer)).update(e.job);
        bytes += e.job.length;
        let problem: string | undefined;
        try {
          const again = jam(cue(e.job));
          if (again.length !== e.job.length || again.some((b, i) => b !== e.job[i])) {
            problem = "the stored jam does not re-jam to the same bytes";
          }
        } catch (err) {
          problem = `the stored job is not a valid jam: ${(err as Error).message}`;
        }
        if (problem !== undefined && problems.length < 20) problems.push({ eve: e.eve, problem });
      }
      await new Promise((resolve) => setImmediate(resolve));
    }
    if (expected !== info.lastEve + 1 && problems.length < 20) {
      problems.push({
        eve: expected,
        problem: `events end at ${expected - 1}, not ${info.lastEve}`,
      });
    }
    return {
      nodeId: this.id,
      ship: String(ship),
      lastEve: info.lastEve,
      bytes,
      digest: hash.digest("hex"),
      problems,
    };
  }

  /** Losses this node found since it started (each is also logged and recorded in the store). */
  #recordedLosses(): NodeStatus["release"]["losses"] {
    const out: NodeStatus["release"]["losses"] = [];
    for (const loss of this.ships.losses) {
      out.push({ ...loss, ship: String(loss.ship) });
    }
    return out;
  }

  #shipName(ship: bigint): string {
    return this.#cfg.shipName?.(ship) ?? `ship ${ship}`;
  }

  /**
   * Entries from `from` that this node has committed and applied (at most
   * `count`, at most 4 MiB of data) still in the log: what a reader sees
   * here is also in this node's state (its ship tables and standby piers).
   */
  readCommitted(from: number, count: number): LogEntryView[] {
    const out: LogEntryView[] = [];
    const last = Math.min(this.raft.appliedIndex, from + Math.min(count, 100_000) - 1);
    let bytes = 0;
    for (let i = Math.max(from, this.raft.firstIndex); i <= last && bytes < READ_BYTES_MAX; i++) {
      const e = this.raft.entryAt(i);
      out.push({ index: e.index, term: e.term, type: ENTRY_TYPE_CODE[e.type], data: e.data });
      bytes += e.data.length;
    }
    return out;
  }

  /** The status this node reports. */
  status(): NodeStatus {
    const conf = this.raft.conf;
    const peers = new Map(this.transport.peers().map((p) => [p.id, p]));
    const leader = this.raft.role === "leader";
    const member = (id: number, membership: "voter" | "learner"): MemberStatus => {
      const pr = leader ? this.raft.progressOf(id) : undefined;
      const peer = peers.get(id);
      return {
        id,
        address: this.machine.addresses.get(id) ?? null,
        membership,
        match: id === this.id ? this.raft.persistedIndex : pr?.match ?? null,
        state: id === this.id ? null : pr?.state ?? null,
        lastContactMs: id === this.id ? 0 : peer?.lastHeardMs ?? null,
        connected: id === this.id || (peer?.connected ?? false),
      };
    };
    const members = [
      ...conf.voters.map((id) => member(id, "voter")),
      ...conf.learners.map((id) => member(id, "learner")),
    ].sort((a, b) => a.id - b.id);
    const isMember = conf.voters.includes(this.id) || conf.learners.includes(this.id);
    const role = !isMember && conf.voters.length > 0
      ? "removed"
      : conf.learners.includes(this.id)
      ? "learner"
      : this.raft.role;
    const leaderId = this.raft.leaderId;
    return {
      version: VERSION,
      clusterId: this.#store.identity.clusterId,
      nodeId: this.id,
      address: this.#cfg.advertise,
      role,
      term: this.raft.term,
      leaderId,
      leaderAddress: this.machine.addresses.get(leaderId) ?? null,
      lastIndex: this.raft.lastIndex,
      commitIndex: this.raft.commitIndex,
      appliedIndex: this.raft.appliedIndex,
      conf,
      members,
      uptimeMs: Date.now() - this.#startedAt,
      electionTimeoutMs: this.#electionTicks * this.#tickMs,
      release: {
        master: this.ships.isMaster,
        released: this.ships.released,
        stalled: this.ships.stalled ?? null,
        losses: this.#recordedLosses(),
      },
      store: this.#store.stats(),
      alarms: this.#cfg.alarms?.() ?? [],
    };
  }

  #serve(fc: FrameConn): void {
    serveClient(fc, (op, payload) => this.#request(op, payload), this.#cfg.log);
  }

  async #request(op: number, payload: Uint8Array): Promise<Uint8Array> {
    const json = (value: unknown) => new TextEncoder().encode(JSON.stringify(value));
    const body = () => JSON.parse(new TextDecoder().decode(payload));
    switch (op) {
      case Op.status:
        return json(this.status());
      case Op.propose:
        return encodeIndex(await this.propose(payload));
      case Op.ship:
        return json(await this.#shipRequest(body() as ShipRequest));
      case Op.events: {
        const command = decodeCommand(payload);
        if (
          command.kind !== "events" && command.kind !== "imageChunk" &&
          command.kind !== "imageDone"
        ) {
          throw new ApiError(
            Status.error,
            "An events request must carry an events, imageChunk or imageDone command",
          );
        }
        // Runtime plans and admin writes of one ship never interleave (ShipMaster M2).
        const release = command.kind === "events" ? this.ships.claim(command.ship) : () => {};
        if (typeof release === "string") throw new ApiError(Status.error, release);
        try {
          const applied = await this.proposeCommand(payload);
          return json({ appended: applied.appended, skipped: applied.skipped });
        } finally {
          release();
        }
      }
      case Op.log: {
        const { key, from, count, waitMs } = decodeLogRequest(payload);
        const ship = shipOfKey(key);
        const have = () => (this.machine.ships.get(ship)?.lastEve ?? 0) >= from;
        if (waitMs > 0 && !have()) await this.#waitFor(have, waitMs);
        return encodeEvents(this.machine.ships.events(ship, from, count));
      }
      case Op.image: {
        const { key, epoch, offset } = decodeImageRequest(payload);
        return this.machine.images.chunk(shipOfKey(key), epoch, offset) ?? new Uint8Array(0);
      }
      case Op.read: {
        const { from, count, waitMs } = decodeReadRequest(payload);
        if (waitMs > 0 && this.raft.appliedIndex < from) await this.#waitApplied(from, waitMs);
        return encodeEntries(this.readCommitted(from, count));
      }
      case Op.join: {
        const { address } = body() as { address: string };
        const nodeId = await this.#addLearner(String(address));
        const answer: JoinAnswer = {
          nodeId,
          clusterId: this.#store.identity.clusterId,
          leaderId: this.id,
        };
        return json(answer);
      }
      case Op.member: {
        const request = body() as MemberRequest;
        const id = Number(request.nodeId);
        switch (request.action) {
          case "add": {
            const nodeId = await this.#addLearner(String(request.address));
            return json({
              message: `Added node ${nodeId} at ${request.address} as a learner`,
              nodeId,
            });
          }
          case "remove":
            return json({ message: await this.#remove(id, request.force === true) });
          case "promote":
            await this.#serialized(() => this.#changeConf({ type: "promoteLearner", nodeId: id }));
            return json({ message: `Promoted node ${id} to voter` });
          case "transfer":
            return json({ message: await this.#transfer(id) });
        }
        throw new ApiError(Status.error, `Unknown member action '${request.action}'`);
      }
    }
    throw new ApiError(
      Status.error,
      `Unknown request kind ${op}; is this seguro older than the client?`,
    );
  }
}
