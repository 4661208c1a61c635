/**
 * The node driver: the Raft core (core/) with its storage, state machine and
 * ship master, and NO clock or network of its own. Whoever runs it (the
 * running node, cluster/node.ts, with real timers and TCP; or the whole-node
 * simulator, tests/sim/node_sim.ts, with simulated ones) calls `tick()`,
 * `step()` and `handleReady()` and carries the messages it hands to `send`.
 *
 * `handleReady` follows the core's durability contract for every batch:
 *   1. send `messages` (a leader's appends go out while its own write is
 *      in flight: it replicates while it persists);
 *   2. write hard state, entries and snapshot in ONE SQLite transaction
 *      (not yet durable) and ask the store to flush (fdatasync on another
 *      thread: the event loop never waits for the disk);
 *   3. apply committed entries (durable already: the core commits nothing
 *      past this node's durable log) and answer the clients waiting on them;
 *   4. `advanceBeforeDurable()`, publish the {@linkcode NodeView}; the next
 *      Ready may be taken at once.
 * When a flush completes, every Ready written before it becomes durable, in
 * order: the core hears it (`durable`: a leader counts itself for the
 * commit only now), the Ready's `messagesAfterPersist` (votes,
 * acknowledgements) go out, and the ship master may release what is now
 * durable widely enough. Nothing is acknowledged to anyone before its write
 * is durable, so a crash at any point loses nothing that was acknowledged.
 * A Ready that installs a snapshot is a barrier: the next one waits for it
 * to be durable.
 *
 * The log stays bounded: once it holds more than twice the
 * {@linkcode CompactionPolicy}'s tail, the driver compacts it behind the
 * applied index down to that tail (the applied tables are the state). A
 * follower that falls behind the tail, or a new node, gets the state as a
 * streamed snapshot (cluster/snapshot_stream.ts) instead of entries.
 * @module
 */

import type { LogSink } from "./log_event.ts";
import {
  type ConfChange,
  decodeConfChangeRecord,
  type Entry,
  entrySizeBytes,
  type HardState,
  type Message,
  type PersistMark,
  RaftInvariantError,
  RaftNode,
  type Ready,
} from "../core/mod.ts";
import {
  isStreamMessage,
  type PeerMessage,
  SNAPSHOT_CHUNK_BYTES,
  SnapshotReceiver,
  SnapshotSender,
} from "./snapshot_stream.ts";
import type { PersistBatch, Store } from "./store.ts";
import { type ApplyResult, encodeAddress, encodeRaw, Machine } from "./machine.ts";
import { type NodeView, ShipMaster, type ShipMasterMutation } from "./ship_master.ts";
import { ApiError, notLeader, Status } from "./admin_protocol.ts";

/**
 * A bug planted on purpose, for the simulator's mutation tests: a ship
 * master one, or `ackBeforeDurable` (a Ready counts as durable, and its
 * acknowledgements leave, as soon as it is written, before any flush).
 */
export type NodeMutation = ShipMasterMutation | "ackBeforeDurable";

/** What the driver needs from whoever runs it. */
export interface DriverConfig {
  /** The node's open store. */
  store: Store;
  /** Sends one message to a peer (best effort; Raft and snapshot streaming retry). */
  send(m: PeerMessage): void;
  /** Log sink (one line per event; the ones that matter carry a LogEvent). */
  log: LogSink;
  /** Election timeout in ticks (heartbeats every tick). */
  electionTicks: number;
  /** Uniform random integer in [0, maxExclusive) (election jitter). */
  randomInt(maxExclusive: number): number;
  /** Wall-clock milliseconds (only for timestamps in records). */
  now(): number;
  /** Where other nodes reach this one (proposed when it becomes leader). */
  advertise: string;
  /** Renders a ship in messages (e.g. `~zod`); cluster/ does not depend on vere/. */
  shipName?: (ship: bigint) => string;
  /** Work is waiting (a plan to flush): call {@linkcode NodeDriver.handleReady} soon. */
  wake?: () => void;
  /** Simulator only: break the node on purpose (mutation testing). */
  mutation?: NodeMutation;
  /** Called after every handled Ready (`applied`: it applied entries), and after a role change on a tick. */
  afterReady?: (applied: boolean) => void;
  /** Timings of the Ready loop (metrics); the driver reads no clock without one. */
  observer?: DriverObserver;
  /** How much log to keep behind the applied index (default {@linkcode COMPACTION_DEFAULT}). */
  compaction?: CompactionPolicy;
  /** Job bytes per chunk of a streamed snapshot (default {@linkcode SNAPSHOT_CHUNK_BYTES}). */
  snapshotChunkBytes?: number;
  /**
   * A failure outside handleReady/step/tick (a flush failed, or an invariant
   * broke while a completed flush was handled): the node must stop. Without
   * it, the error is thrown to whoever completed the flush.
   */
  fatal?: (e: Error) => void;
}

/**
 * The tail of the log a node keeps: the newest `keepEntries` entries, at
 * most `keepBytes` of them. The log is compacted down to it once it holds
 * twice that, so memory stays below twice the tail whatever the history.
 */
export interface CompactionPolicy {
  /** Entries kept (followers this close behind get entries, not a snapshot). */
  readonly keepEntries: number;
  /** Bytes kept (data plus a fixed header per entry). */
  readonly keepBytes: number;
}

/** 20,000 entries or 16 MiB: memory for the log stays below 32 MiB. */
export const COMPACTION_DEFAULT: CompactionPolicy = {
  keepEntries: 20_000,
  keepBytes: 16 * 1024 * 1024,
};

/**
 * Bytes of entries a leader has sent a follower and not yet heard back
 * about: what its send queue and the follower's receive buffers hold at
 * most. 8 MiB keeps a loopback or LAN link full (the bandwidth-delay product
 * of 10 Gbit/s at 5 ms is 6 MiB) and memory flat.
 */
export const INFLIGHT_BYTES_MAX = 8 * 1024 * 1024;

/**
 * Bytes of committed entries one Ready applies: the node's loop yields
 * between Readies, so a backlog of applies (a follower catching up, a bulk
 * import) never holds it long enough to starve heartbeats.
 */
export const APPLY_BYTES_PER_READY = 512 * 1024;

/**
 * Timings of the Ready loop, for metrics. The observer brings the clock, so
 * the driver stays free of one (the simulator passes none).
 */
export interface DriverObserver {
  /** Monotonic milliseconds. */
  now(): number;
  /** One Ready's write took `ms` from its transaction until a flush made it durable. */
  persisted(ms: number): void;
  /** One Ready was handled (send, persist, apply, advance, release) in `ms`. */
  readyHandled(ms: number): void;
}

/** A handled Ready whose write is not yet durable. */
interface Unflushed {
  /** The store's sequence number of its last transaction (durable when the store's is >= it). */
  readonly seq: number;
  readonly mark: PersistMark;
  readonly after: readonly Message[];
  /** When it was written (observer clock), or 0. */
  readonly at: number;
  readonly snapshot: boolean;
}

interface Waiter {
  term: number;
  resolve: (result: ApplyResult) => void;
  reject: (e: Error) => void;
}

const APPLIED: ApplyResult = { ok: true, appended: 0, skipped: 0 };

/** One node's consensus, storage, state machine and ship master, driven from outside. */
export class NodeDriver {
  /** The Raft core. */
  readonly raft: RaftNode;
  /** The applied state. */
  readonly machine: Machine;
  /** The runtime side: plans in, releases out (while this node is master). */
  readonly ships: ShipMaster;
  readonly #store: Store;
  readonly #cfg: DriverConfig;
  readonly #waiters = new Map<number, Waiter[]>();
  readonly #ledTerms = new Set<number>();
  #wasLeader = false;
  #lastSeen = "";
  #view: NodeView;
  /** Hard state last written to the store. */
  #writtenHardState: HardState;
  /** A commit-only hard state not written yet (see handleReady). */
  #pendingHardState: HardState | undefined;
  readonly #compaction: CompactionPolicy;
  /** Applied index when compaction last found nothing it may drop (a snapshot being offered). */
  #compactionStuckAt: number | undefined;
  readonly #snapshotSender: SnapshotSender;
  readonly #snapshotReceiver: SnapshotReceiver;
  /** Handled Readies waiting for a flush, oldest first. */
  readonly #unflushed: Unflushed[] = [];
  /** Unflushed Readies that installed a snapshot: no Ready is taken while any is. */
  #snapshotsUnflushed = 0;

  /** Restores the node from its store. */
  constructor(config: DriverConfig) {
    this.#cfg = config;
    this.#store = config.store;
    const identity = this.#store.identity;
    const initial = this.#store.loadRaftState();
    this.raft = new RaftNode(
      {
        id: identity.nodeId,
        groupId: identity.groupId,
        randomInt: config.randomInt,
        electionTimeoutTicks: config.electionTicks,
        heartbeatIntervalTicks: 1,
        maxInflightBytes: INFLIGHT_BYTES_MAX,
        maxCommittedBytesPerReady: APPLY_BYTES_PER_READY,
      },
      initial,
    );
    this.#writtenHardState = initial.hardState;
    this.#store.listen(
      (written) => this.#onDurable(written),
      (e) => this.#fail(e),
      () => this.#cfg.wake?.(),
    );
    this.#compaction = config.compaction ?? COMPACTION_DEFAULT;
    this.machine = new Machine(this.#store, config.shipName);
    this.#view = this.#readView();
    const raft = this.raft;
    const stage = this.#store.snapshotStage;
    const chunkBytes = config.snapshotChunkBytes ?? SNAPSHOT_CHUNK_BYTES;
    this.#snapshotSender = new SnapshotSender({
      id: raft.id,
      groupId: raft.groupId,
      term: () => raft.term,
      isLeader: () => raft.role === "leader",
      appliedIndex: () => raft.appliedIndex,
      termAt: (i) => raft.termAt(i),
      confAt: (i) => raft.confAt(i),
      sendingSnapshotTo: (to) => raft.progressOf(to)?.state === "snapshot",
      stage,
      chunkBytes,
      readEvents: (ship, from, to, bytesMax) =>
        this.#store.ships.events(ship, from, to - from + 1, bytesMax),
      readImageChunk: (ship, epoch, offset) => this.#store.images.chunk(ship, epoch, offset),
      shipAddedIndex: (ship) => this.#store.ships.get(ship)?.addedIndex,
      send: (m) => this.#cfg.send(m),
    });
    this.#snapshotReceiver = new SnapshotReceiver({
      id: raft.id,
      groupId: raft.groupId,
      term: () => raft.term,
      appliedIndex: () => raft.appliedIndex,
      stage,
      chunkBytes,
      send: (m) => this.#cfg.send(m),
      deliver: (m) => this.step(m),
      log: (line, event) => this.#cfg.log(line, event),
    });
    this.ships = new ShipMaster({
      view: () => this.#view,
      termAt: (i) => this.raft.termAt(i),
      ships: this.machine.ships,
      defaultOptimism: () => this.machine.defaultOptimism,
      propose: (data) => {
        const result = this.raft.propose(data);
        return result.accepted ? result : result.reason;
      },
      wake: () => this.#cfg.wake?.(),
      suspects: {
        save: (e) => this.#store.localSettings.saveSuspect(e),
        forget: (e) => this.#store.localSettings.forgetSuspect(e),
      },
    }, config.mutation === "ackBeforeDurable" ? undefined : config.mutation);
    for (const t of this.#store.localSettings.ledTerms()) this.#ledTerms.add(t);
    this.ships.rememberPossiblyReleased(
      initial.entries,
      this.#ledTerms,
      initial.hardState.commit,
    );
    this.ships.rememberSaved(this.#store.localSettings.suspects());
    // Losses recorded by earlier runs stay listed in status and 'log audit'.
    this.ships.losses.push(...this.#store.localSettings.losses());
    this.ships.subscribe({
      release: () => {},
      refuse: () => {},
      role: (master) =>
        this.#cfg.log(master ? "master of every ship: releasing" : "fenced: not master"),
      lost: (loss) => {
        const name = this.#cfg.shipName?.(loss.ship) ?? `ship ${loss.ship}`;
        this.#cfg.log(
          `RELEASED BUT LOST: ${name} events ${loss.firstEve}-${loss.lastEve} (entry ${loss.index}, term ${loss.term}) were released before commit and erased by a failover`,
          {
            event: "released_but_lost",
            ship: name,
            firstEve: loss.firstEve,
            lastEve: loss.lastEve,
            index: loss.index,
            term: loss.term,
          },
        );
        this.#store.localSettings.recordLoss(loss, this.#cfg.now());
      },
    });
  }

  /** This node's id. */
  get id(): number {
    return this.raft.id;
  }

  /** The view published after the last Ready. */
  get view(): NodeView {
    return this.#view;
  }

  /** Advances logical time by one tick. */
  tick(): void {
    this.raft.tick();
    this.#snapshotReceiver.tick();
    // A leader that steps down on a tick (CheckQuorum) may have nothing to send or
    // write, so no Ready follows: notice it now, so runtimes are fenced at once.
    if (!this.raft.hasReady() && (this.raft.role === "leader") !== this.#wasLeader) {
      this.#noticeRole(this.raft.role, this.raft.leaderId);
      this.#publish(false);
    }
  }

  /**
   * Feeds one message to the core. A message the core rejects is logged and
   * dropped; a broken invariant ({@linkcode RaftInvariantError}) is thrown.
   */
  step(m: PeerMessage): void {
    try {
      if (isStreamMessage(m)) this.#stepStream(m);
      else this.raft.step(m);
    } catch (e) {
      if (e instanceof RaftInvariantError) throw e;
      this.#cfg.log(`dropped a ${m.type} message from node ${m.from}: ${(e as Error).message}`);
    }
  }

  #stepStream(m: Exclude<PeerMessage, Message>): void {
    if (m.groupId !== this.raft.groupId || m.to !== this.raft.id) return;
    if (m.type === "snapOffer") this.#snapshotReceiver.offer(m);
    else if (m.type === "snapChunk") this.#snapshotReceiver.chunk(m);
    else this.#snapshotSender.pull(m);
  }

  /** True when {@linkcode handleReady} has work (plans to flush, or a Ready). */
  hasWork(): boolean {
    if (this.#snapshotsUnflushed > 0 || this.#store.holding) return false;
    return this.ships.hasBatches || this.raft.hasReady();
  }

  /** Readies handled whose writes are not durable yet. */
  get unflushed(): number {
    return this.#unflushed.length;
  }

  /** Flushes gathered plans and handles one Ready if there is one; returns whether it did. */
  handleReady(): boolean {
    if (this.#snapshotsUnflushed > 0 || this.#store.holding) return false;
    this.ships.flush();
    if (!this.raft.hasReady()) return false;
    const observer = this.#cfg.observer;
    const start = observer?.now() ?? 0;
    this.#handle(this.raft.ready());
    if (observer !== undefined) observer.readyHandled(observer.now() - start);
    return true;
  }

  #handle(rd: Ready): void {
    for (const m of rd.messages) this.#sendOut(m);
    const hardState = rd.hardState ?? this.#pendingHardState;
    const written = this.#writtenHardState;
    // A batch that only moves the commit index need not be flushed on its own:
    // commit is re-learned from the leader after a crash. It rides with the
    // next write (term and vote changes never wait).
    const commitOnly = rd.entries.length === 0 && rd.snapshot === undefined &&
      rd.hardState !== undefined && rd.hardState.term === written.term &&
      rd.hardState.vote === written.vote;
    const committed = rd.committedEntries;
    const results: ApplyResult[] = [];
    const applied = committed.length > 0 ? committed[committed.length - 1].index : undefined;
    const apply = () => {
      for (const e of committed) results.push(this.#apply(e));
    };
    // The committed entries are applied in the transaction that writes this
    // Ready when there is one (one commit instead of two; after a snapshot the
    // machine must reload first), else in one of their own.
    let fused = false;
    let wrote = false;
    const observer = this.#cfg.observer;
    const at = observer?.now() ?? 0;
    if (commitOnly) {
      this.#pendingHardState = rd.hardState;
    } else if (rd.hardState !== undefined || rd.entries.length > 0 || rd.snapshot !== undefined) {
      // (A commit-only hard state held back rides along; it never makes a write of its own.)
      fused = applied !== undefined && rd.snapshot === undefined;
      this.#persist({
        hardState,
        entries: rd.entries,
        snapshot: rd.snapshot,
        ...(fused ? { applied, apply } : {}),
      });
      wrote = true;
    }
    // What must be durable before this Ready is: its own write, or else the Readies
    // before it (not apply-only transactions: they need no flush of their own).
    const seq = wrote
      ? this.#store.written
      : this.#unflushed[this.#unflushed.length - 1]?.seq ?? this.#store.durable;
    if (rd.snapshot !== undefined) this.#installed(rd.snapshot.index);
    if (applied !== undefined) {
      if (!fused) this.#store.applyTransaction(applied, apply);
      committed.forEach((e, i) => {
        if (e.type === "normal") this.ships.applied(e.index, e.term, results[i]);
        this.#answer(e, results[i]);
      });
    }
    const mark = this.raft.advanceBeforeDurable();
    this.#noticeRole(rd.role, rd.leaderId);
    this.#snapshotSender.prune();
    if (committed.length > 0) this.#maybeCompact();
    const after = rd.messagesAfterPersist;
    const mutant = this.#cfg.mutation === "ackBeforeDurable";
    if (!mutant && (wrote || this.#unflushed.length > 0)) {
      const snapshot = rd.snapshot !== undefined;
      this.#unflushed.push({ seq, mark, after, at, snapshot });
      if (snapshot) this.#snapshotsUnflushed++;
      if (this.#store.durable >= seq) this.#drain(this.#store.durable);
      else this.#store.flush(seq);
    } else {
      // Nothing written and nothing before it waiting: durable as it stands.
      this.raft.durable(mark);
      for (const m of after) this.#sendOut(m);
    }
    this.#publish(committed.length > 0 || rd.snapshot !== undefined);
  }

  /** A flush completed: the store's transactions up to `written` are durable. */
  #onDurable(written: number): void {
    try {
      if (this.#drain(written)) {
        this.#publish(false);
        this.#cfg.wake?.();
      }
    } catch (e) {
      this.#fail(e as Error);
    }
  }

  /** Hands the core every Ready durable up to `written` and sends what waited; true if any. */
  #drain(written: number): boolean {
    const queue = this.#unflushed;
    let n = 0;
    const observer = this.#cfg.observer;
    const now = observer?.now() ?? 0;
    while (n < queue.length && queue[n].seq <= written) {
      const u = queue[n++];
      this.raft.durable(u.mark);
      for (const m of u.after) this.#sendOut(m);
      if (u.snapshot) this.#snapshotsUnflushed--;
      if (observer !== undefined && u.at !== 0) observer.persisted(now - u.at);
    }
    if (n > 0) queue.splice(0, n);
    return n > 0;
  }

  #fail(e: Error): void {
    if (this.#cfg.fatal === undefined) throw e;
    this.#cfg.fatal(e);
  }

  /** A snapshot the core names goes out as an offer of the applied state. */
  #sendOut(m: Message): void {
    if (m.type === "snap") this.#snapshotSender.offer(m);
    else this.#cfg.send(m);
  }

  /** The store installed a received snapshot: the machine reloads what it caches. */
  #installed(index: number): void {
    this.machine.reload();
    this.#cfg.log(`installed the snapshot at index ${index}`, {
      event: "snapshot_installed",
      index,
    });
  }

  /**
   * Compacts the log behind the applied index down to the policy's tail,
   * once it holds twice that; never past a snapshot still being offered.
   */
  #maybeCompact(): void {
    const raft = this.raft;
    const p = this.#compaction;
    const first = raft.snapshot.index;
    const over = raft.lastIndex - first > 2 * p.keepEntries || raft.heldBytes > 2 * p.keepBytes;
    if (!over) return;
    // Each look walks the tail; when the last one could drop nothing, wait for applied to move on.
    const stuck = this.#compactionStuckAt;
    if (stuck !== undefined && raft.appliedIndex < stuck + Math.max(1, p.keepEntries >> 3)) return;
    let keepFrom = raft.lastIndex + 1; // entries [keepFrom, last] stay
    let bytes = 0;
    while (keepFrom - 1 > first && raft.lastIndex - keepFrom + 1 < p.keepEntries) {
      bytes += entrySizeBytes(raft.entryAt(keepFrom - 1));
      if (bytes > p.keepBytes) break;
      keepFrom--;
    }
    const to = Math.min(keepFrom - 1, raft.appliedIndex, this.#snapshotSender.floor() ?? Infinity);
    if (to <= first) {
      this.#compactionStuckAt = raft.appliedIndex;
      return;
    }
    this.#compactionStuckAt = undefined;
    const snapshot = raft.compact(to);
    this.#store.compact(snapshot);
  }

  /** Publishes the view, then lets the master act on it and the runner react. */
  #publish(applied: boolean): void {
    this.#view = this.#readView();
    this.ships.afterReady();
    this.#cfg.afterReady?.(applied);
  }

  #readView(): NodeView {
    const raft = this.raft;
    const conf = raft.conf;
    const leader = raft.role === "leader";
    const matches: number[] = [];
    if (leader) {
      for (const id of [...conf.voters, ...conf.learners]) {
        if (id !== raft.id) matches.push(raft.progressOf(id)?.match ?? 0);
      }
    }
    return {
      id: raft.id,
      role: raft.role,
      term: raft.term,
      leaderId: raft.leaderId,
      leaderAddress: this.machine.addresses.get(raft.leaderId) ?? "",
      persisted: raft.persistedIndex,
      committed: raft.commitIndex,
      applied: raft.appliedIndex,
      appliedTerm: raft.appliedIndex === 0 ? 0 : raft.termAt(raft.appliedIndex) ?? 0,
      voters: conf.voters,
      learners: conf.learners,
      matches,
    };
  }

  /** Writes one batch (durable once flushed; the applied index is kept by applyTransaction). */
  #persist(batch: PersistBatch): void {
    this.#store.persist(batch);
    if (batch.hardState !== undefined) this.#writtenHardState = batch.hardState;
    this.#pendingHardState = undefined;
  }

  /** Writes a commit-only hard state still held in memory (at a clean stop; the store's close makes it durable). */
  flushHardState(): void {
    this.#persist({ hardState: this.#pendingHardState, entries: [] });
  }

  #apply(e: Entry): ApplyResult {
    if (e.type === "normal") return this.machine.apply(e.data, e.index, e.term);
    if (e.type === "conf") {
      const record = decodeConfChangeRecord(e.data);
      this.#cfg.log(
        `membership: ${record.change.type} node ${record.change.nodeId} -> voters [${record.conf.voters}] learners [${record.conf.learners}]`,
      );
      const id = record.change.nodeId;
      if (
        record.change.type === "removeNode" && !record.conf.voters.includes(id) &&
        !record.conf.learners.includes(id)
      ) {
        // Committed, so final: every node can tell the removed one so (cluster/node.ts).
        this.machine.recordRemoved(id);
      }
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

  /** Logs and acts on a change of this node's role or of the leader it knows. */
  #noticeRole(role: Ready["role"], leaderId: number): void {
    const leader = role === "leader";
    const seen = `${role}/${leaderId}`;
    if (seen !== this.#lastSeen && !leader) {
      // Followers log whom they follow once known; candidates log that they campaign.
      const term = this.raft.term;
      if (role !== "follower") this.#cfg.log(`now ${role} at term ${term}`, { event: role, term });
      else if (leaderId !== 0) {
        this.#cfg.log(`now follower at term ${term} (leader ${leaderId})`, {
          event: "follower",
          term,
          leader: leaderId,
        });
      } else if (this.#wasLeader) {
        this.#cfg.log(`stepped down at term ${term} (it lost its quorum, or was removed)`, {
          event: "stepped_down",
          term,
        });
      }
    }
    this.#lastSeen = seen;
    if (leader === this.#wasLeader) return;
    this.#wasLeader = leader;
    if (leader) {
      this.#cfg.log(`became leader at term ${this.raft.term}`, {
        event: "leader",
        term: this.raft.term,
      });
      // Remember the terms this node led (durably, once per election): after a
      // crash, its uncommitted entries of those terms may have been released.
      this.#ledTerms.add(this.raft.term);
      this.#store.localSettings.setLedTerms([...this.#ledTerms]);
      if (this.machine.addresses.get(this.id) !== this.#cfg.advertise) {
        this.raft.propose(encodeAddress(this.id, this.#cfg.advertise));
      }
    } else {
      this.failAll(
        new ApiError(
          Status.error,
          "Leadership changed before the write committed; it may or may not be applied, retry it",
        ),
      );
    }
  }

  /** Rejects every client waiting for an entry to apply. */
  failAll(e: ApiError): void {
    for (const waiting of this.#waiters.values()) for (const w of waiting) w.reject(e);
    this.#waiters.clear();
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

  /** Throws the not-leader error (with the leader's address) unless this node leads. */
  requireLeader(): void {
    if (this.raft.role !== "leader") {
      const leader = this.raft.leaderId;
      throw notLeader(leader, this.machine.addresses.get(leader));
    }
  }

  /** Proposes opaque bytes; resolves with the index once committed and applied here. */
  async propose(data: Uint8Array): Promise<number> {
    this.requireLeader();
    const result = this.raft.propose(encodeRaw(data));
    if (!result.accepted) throw new ApiError(Status.error, result.reason);
    this.#cfg.wake?.();
    await this.#waitApplied(result.index, result.term);
    return result.index;
  }

  /** Proposes a command; resolves once applied here, rejects with the reason if it was refused. */
  async proposeCommand(data: Uint8Array): Promise<ApplyResult & { ok: true }> {
    this.requireLeader();
    const result = this.raft.propose(data);
    if (!result.accepted) throw new ApiError(Status.error, result.reason);
    this.#cfg.wake?.();
    const applied = await this.#waitApplied(result.index, result.term);
    if (!applied.ok) throw new ApiError(Status.error, applied.reason);
    return applied;
  }

  /** Proposes a membership change; resolves once applied here. */
  async changeConf(change: ConfChange): Promise<void> {
    this.requireLeader();
    const result = this.raft.proposeConfChange(change);
    if (!result.accepted) throw new ApiError(Status.error, result.reason);
    this.#cfg.wake?.();
    await this.#waitApplied(result.index, result.term);
  }
}
