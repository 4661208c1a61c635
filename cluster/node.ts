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
  decodeConfChangeRecord,
  type Entry,
  type HardState,
  majority,
  type Message,
  RaftInvariantError,
  RaftNode,
  type Ready,
} from "../core/mod.ts";
import type { PersistBatch, Store } from "./store.ts";
import { Transport } from "./transport.ts";
import {
  type ApplyResult,
  decodeCommand,
  encodeAddress,
  encodeCommand,
  encodeRaw,
  Machine,
} from "./machine.ts";
import { SHIP_MAX, type ShipInfo, shipOfKey } from "./ships.ts";
import { ShipMaster } from "./ship_master.ts";
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
  notLeader,
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

const LED_TERMS = "raft.led.terms";
const LED_TERMS_KEPT = 16;

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
  /** Runtime side: whether this node releases, releases so far, why releases wait, losses found. */
  release: {
    master: boolean;
    released: number;
    stalled: { need: number; have: number } | null;
    losses: { ship: string; firstEve: number; lastEve: number; index: number; term: number }[];
  };
  /** Store counters: fsyncs, transactions, entries and bytes written. */
  store: { fsyncs: number; transactions: number; entriesWritten: number; bytesWritten: number };
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

interface Waiter {
  term: number;
  resolve: (result: ApplyResult) => void;
  reject: (e: Error) => void;
}

const APPLIED: ApplyResult = { ok: true, appended: 0, skipped: 0 };

function cryptoRandomInt(maxExclusive: number): number {
  const buf = new Uint32Array(1);
  crypto.getRandomValues(buf);
  return buf[0] % maxExclusive;
}

/** A running cluster node. */
export class ClusterNode {
  /** The Raft core. */
  readonly raft: RaftNode;
  /** The network side. */
  readonly transport: Transport;
  /** The applied state. */
  readonly machine: Machine;
  /** The runtime side: plans in, releases out (while this node leads). */
  readonly ships: ShipMaster;
  readonly #store: Store;
  readonly #cfg: NodeConfig;
  readonly #tickMs: number;
  readonly #electionTicks: number;
  readonly #startedAt = Date.now();
  readonly #waiters = new Map<number, Waiter[]>();
  #wake: (() => void) | undefined;
  #timer: ReturnType<typeof setInterval> | undefined;
  #loop: Promise<void> | undefined;
  #stopping = false;
  #wasLeader = false;
  #lastSeen = "";
  readonly #ledTerms = new Set<number>();
  /** Hard state last written to the store. */
  #durableHardState: HardState;
  /** A commit-only hard state not written yet (see #handle). */
  #pendingHardState: HardState | undefined;
  #peersSignature = "";
  readonly #commitWatchers = new Set<() => void>();
  #memberLock: Promise<unknown> = Promise.resolve();
  #ticks = 0;
  #fatal: Error | undefined;
  #stopped: Promise<void>;
  #resolveStopped!: () => void;

  /** Restores the node from its store. Call {@linkcode start} to run it. */
  constructor(config: NodeConfig) {
    this.#cfg = config;
    this.#store = config.store;
    this.#tickMs = config.tickMs ?? TICK_MS_DEFAULT;
    this.#electionTicks = config.electionTicks ?? ELECTION_TICKS_DEFAULT;
    const identity = this.#store.identity;
    const initial = this.#store.loadRaftState();
    this.raft = new RaftNode(
      {
        id: identity.nodeId,
        groupId: identity.groupId,
        randomInt: cryptoRandomInt,
        electionTimeoutTicks: this.#electionTicks,
        heartbeatIntervalTicks: 1,
      },
      initial,
    );
    this.machine = new Machine(this.#store, config.shipName);
    this.ships = new ShipMaster({
      raft: this.raft,
      ships: this.machine.ships,
      defaultOptimism: () => this.machine.defaultOptimism,
      propose: (data) => {
        const result = this.raft.propose(data);
        if (!result.accepted) return result.reason;
        this.#kick();
        return { ...result, applied: this.#waitApplied(result.index, result.term) };
      },
    });
    const led = this.#store.getSetting(LED_TERMS);
    for (const t of led ? led.split(",").map(Number) : []) this.#ledTerms.add(t);
    this.ships.rememberPossiblyReleased(
      initial.entries,
      this.#ledTerms,
      initial.hardState.commit,
    );
    // Losses recorded by earlier runs stay listed in status and 'log audit'.
    const recorded = this.#store.database.prepare(
      "SELECT value FROM setting WHERE key LIKE 'loss.%' ORDER BY key",
    ).all() as { value: string }[];
    for (const { value } of recorded) {
      const l = JSON.parse(value);
      this.ships.losses.push({
        ship: BigInt(l.ship),
        firstEve: l.firstEve,
        lastEve: l.lastEve,
        index: l.index,
        term: l.term,
      });
    }
    this.ships.subscribe({
      release: () => {},
      refuse: () => {},
      role: (master) =>
        this.#cfg.log(master ? "master of every ship: releasing" : "fenced: not master"),
      lost: (loss) => {
        const name = this.#shipName(loss.ship);
        this.#cfg.log(
          `RELEASED BUT LOST: ${name} events ${loss.firstEve}-${loss.lastEve} (entry ${loss.index}, term ${loss.term}) were released before commit and erased by a failover`,
        );
        this.#store.setSetting(
          `loss.${loss.index}.${loss.ship}`,
          JSON.stringify({ ...loss, ship: String(loss.ship), at: new Date().toISOString() }),
        );
      },
    });
    this.#durableHardState = initial.hardState;
    this.transport = new Transport({
      clusterId: identity.clusterId,
      nodeId: identity.nodeId,
      secret: this.#store.secret(),
      listener: config.listener,
      advertise: config.advertise,
      onRaft: (m) => this.#step(m),
      onClient: (fc) => this.#serve(fc),
      log: config.log,
    });
    this.#stopped = new Promise((resolve) => this.#resolveStopped = resolve);
  }

  /** This node's id. */
  get id(): number {
    return this.raft.id;
  }

  /** Resolves when the node has stopped (after {@linkcode stop}, or a fatal error). */
  get stopped(): Promise<void> {
    return this.#stopped;
  }

  /** The fatal error that stopped the node, if any. */
  get fatal(): Error | undefined {
    return this.#fatal;
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
    this.#failAll(new ApiError(Status.error, "The node is shutting down; retry on another node"));
    try {
      if (!this.#fatal) this.#persist({ hardState: this.#pendingHardState, entries: [] });
    } finally {
      this.#store.close();
      this.#resolveStopped();
    }
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
    this.raft.tick();
    this.#ticks++;
    if (this.raft.role === "leader" && this.#ticks % 5 === 0) this.#promoteCaughtUpLearners();
    // A leader that steps down on a tick (CheckQuorum) may have nothing to send or
    // write, so no Ready follows: notice it now, so runtimes are fenced at once.
    if (!this.raft.hasReady() && (this.raft.role === "leader") !== this.#wasLeader) {
      this.#noticeRole(this.raft.role, this.raft.leaderId);
      this.ships.afterReady();
    }
    this.#kick();
  }

  #step(m: Message): void {
    if (this.#stopping) return;
    try {
      this.raft.step(m);
    } catch (e) {
      if (e instanceof RaftInvariantError) {
        this.#die(e);
        return;
      }
      this.#cfg.log(`dropped a ${m.type} message from node ${m.from}: ${(e as Error).message}`);
    }
    this.#kick();
  }

  async #run(): Promise<void> {
    while (!this.#stopping) {
      if (!this.raft.hasReady()) {
        await new Promise<void>((resolve) => this.#wake = resolve);
        continue;
      }
      try {
        this.#handle(this.raft.ready());
      } catch (e) {
        this.#die(e as Error);
        return;
      }
      // Let network input and new proposals in, so the next batch gathers them.
      await new Promise((resolve) => setImmediate(resolve));
    }
  }

  #handle(rd: Ready): void {
    for (const m of rd.messages) this.transport.send(m);
    const hardState = rd.hardState ?? this.#pendingHardState;
    const durable = this.#durableHardState;
    // A batch that only moves the commit index need not be fsynced on its own:
    // commit is re-learned from the leader after a crash. It rides with the
    // next write (term and vote changes never wait).
    const commitOnly = rd.entries.length === 0 && rd.snapshot === undefined &&
      rd.hardState !== undefined && rd.hardState.term === durable.term &&
      rd.hardState.vote === durable.vote;
    if (commitOnly) {
      this.#pendingHardState = rd.hardState;
    } else if (hardState !== undefined || rd.entries.length > 0 || rd.snapshot !== undefined) {
      this.#persist({ hardState, entries: rd.entries, snapshot: rd.snapshot });
    }
    for (const m of rd.messagesAfterPersist) this.transport.send(m);
    const committed = rd.committedEntries;
    if (committed.length > 0) {
      // Apply the batch in one transaction (no fsync of its own), then answer.
      const results: ApplyResult[] = [];
      this.#store.applyTransaction(committed[committed.length - 1].index, () => {
        for (const e of committed) results.push(this.#apply(e));
      });
      committed.forEach((e, i) => this.#answer(e, results[i]));
    }
    this.raft.advance();
    this.#afterReady(rd);
    this.ships.afterReady();
    if (committed.length > 0) this.#cfg.onApplied?.();
  }

  /** Writes one batch durably (the applied index is kept by applyTransaction). */
  #persist(batch: PersistBatch): void {
    this.#store.persist(batch);
    if (batch.hardState !== undefined) this.#durableHardState = batch.hardState;
    this.#pendingHardState = undefined;
  }

  #apply(e: Entry): ApplyResult {
    if (e.type === "normal") return this.machine.apply(e.data, e.index);
    if (e.type === "conf") {
      const record = decodeConfChangeRecord(e.data);
      this.#cfg.log(
        `membership: ${record.change.type} node ${record.change.nodeId} -> voters [${record.conf.voters}] learners [${record.conf.learners}]`,
      );
    }
    return APPLIED;
  }

  /** Answers the clients waiting for entry `e`. */
  #answer(e: Entry, result: ApplyResult): void {
    const waiting = this.#waiters.get(e.index);
    if (waiting === undefined) return;
    this.#waiters.delete(e.index);
    for (const w of waiting) {
      if (w.term === e.term) w.resolve(result);
      else {
        w.reject(
          new ApiError(
            Status.error,
            "The write was replaced after a leader change and did not commit; retry it",
          ),
        );
      }
    }
  }

  #afterReady(rd: Ready): void {
    this.#noticeRole(rd.role, rd.leaderId);
    this.#updatePeers();
    this.#notifyCommitWatchers();
  }

  /** Logs and acts on a change of this node's role or of the leader it knows. */
  #noticeRole(role: Ready["role"], leaderId: number): void {
    const leader = role === "leader";
    const seen = `${role}/${leaderId}`;
    if (seen !== this.#lastSeen && !leader) {
      // Followers log whom they follow once known; candidates log that they campaign.
      if (role !== "follower") this.#cfg.log(`now ${role} at term ${this.raft.term}`);
      else if (leaderId !== 0) {
        this.#cfg.log(`now follower at term ${this.raft.term} (leader ${leaderId})`);
      } else if (this.#wasLeader) {
        this.#cfg.log(
          `stepped down at term ${this.raft.term} (it lost its quorum, or was removed)`,
        );
      }
    }
    this.#lastSeen = seen;
    if (leader !== this.#wasLeader) {
      this.#wasLeader = leader;
      if (leader) {
        this.#cfg.log(`became leader at term ${this.raft.term}`);
        // Remember the terms this node led (durably, once per election): after a
        // crash, its uncommitted entries of those terms may have been released.
        this.#ledTerms.add(this.raft.term);
        this.#store.setSetting(LED_TERMS, [...this.#ledTerms].slice(-LED_TERMS_KEPT).join(","));
        if (this.machine.addresses.get(this.id) !== this.#cfg.advertise) {
          this.raft.propose(encodeAddress(this.id, this.#cfg.advertise));
        }
      } else {
        this.#failAll(
          new ApiError(
            Status.error,
            "Leadership changed before the write committed; it may or may not be applied, retry it",
          ),
        );
      }
    }
  }

  #failAll(e: ApiError): void {
    for (const waiting of this.#waiters.values()) for (const w of waiting) w.reject(e);
    this.#waiters.clear();
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

  /** Resolves with the apply result once the entry at `index` of `term` is applied here. */
  #waitApplied(index: number, term: number): Promise<ApplyResult> {
    if (this.raft.appliedIndex >= index) {
      // Applied before we could wait (only possible for a one-node cluster); its result is gone.
      return this.raft.termAt(index) === term || this.raft.termAt(index) === undefined
        ? Promise.resolve(APPLIED)
        : Promise.reject(new ApiError(Status.error, "The write was replaced; retry it"));
    }
    return new Promise((resolve, reject) => {
      const list = this.#waiters.get(index) ?? [];
      list.push({ term, resolve, reject });
      this.#waiters.set(index, list);
    });
  }

  #requireLeader(): void {
    if (this.raft.role !== "leader") {
      const leader = this.raft.leaderId;
      throw notLeader(leader, this.machine.addresses.get(leader));
    }
  }

  /** Proposes opaque bytes; resolves with the index once committed and applied here. */
  async propose(data: Uint8Array): Promise<number> {
    this.#requireLeader();
    const result = this.raft.propose(encodeRaw(data));
    if (!result.accepted) throw new ApiError(Status.error, result.reason);
    this.#kick();
    await this.#waitApplied(result.index, result.term);
    return result.index;
  }

  /** Proposes a command; resolves once applied here, rejects with the reason if it was refused. */
  async proposeCommand(data: Uint8Array): Promise<ApplyResult & { ok: true }> {
    this.#requireLeader();
    const result = this.raft.propose(data);
    if (!result.accepted) throw new ApiError(Status.error, result.reason);
    this.#kick();
    const applied = await this.#waitApplied(result.index, result.term);
    if (!applied.ok) throw new ApiError(Status.error, applied.reason);
    return applied;
  }

  async #changeConf(change: ConfChange): Promise<void> {
    this.#requireLeader();
    const result = this.raft.proposeConfChange(change);
    if (!result.accepted) throw new ApiError(Status.error, result.reason);
    this.#kick();
    await this.#waitApplied(result.index, result.term);
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

  /** Resolves when the commit index reaches `index`, or after `waitMs`, or at stop. */
  #waitCommitted(index: number, waitMs: number): Promise<void> {
    return this.#waitFor(() => this.raft.commitIndex >= index, waitMs);
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
        if (!Number.isInteger(optimism) || optimism < -2 || optimism > 1000) {
          throw new ApiError(
            Status.error,
            `Optimism ${request.optimism} is not -2 (quorum), -1 (the cluster default) or a replica count`,
          );
        }
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
        if (!Number.isInteger(optimism) || optimism < -2 || optimism > 1000) {
          throw new ApiError(
            Status.error,
            `Optimism ${request.optimism} is not -2 (quorum), -1 (the cluster default) or a replica count`,
          );
        }
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

  /** Committed entries from `from` (at most `count`, at most 4 MiB of data) still in the log. */
  readCommitted(from: number, count: number): LogEntryView[] {
    const out: LogEntryView[] = [];
    const last = Math.min(this.raft.commitIndex, from + Math.min(count, 100_000) - 1);
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
      release: {
        master: this.ships.isMaster,
        released: this.ships.released,
        stalled: this.ships.stalled ?? null,
        losses: this.#recordedLosses(),
      },
      store: this.#store.stats(),
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
        if (!["events", "imageChunk", "imageDone"].includes(command.kind)) {
          throw new ApiError(
            Status.error,
            "An events request must carry an events, imageChunk or imageDone command",
          );
        }
        const applied = await this.proposeCommand(payload);
        return json({ appended: applied.appended, skipped: applied.skipped });
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
        if (waitMs > 0 && this.raft.commitIndex < from) await this.#waitCommitted(from, waitMs);
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
