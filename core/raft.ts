/**
 * The Raft state machine of one node: elections (PreVote, CheckQuorum,
 * leader stickiness), log replication with per-follower flow control,
 * commitment, single-server membership changes, leadership transfer,
 * snapshots and ReadIndex. Pure: time is `tick()`, randomness is injected,
 * and all output goes through {@linkcode Ready}.
 *
 * @module
 */

import { applyConfChange, confMembers, encodeConfChangeRecord } from "./confchange.ts";
import { assertInvariant, RaftInvariantError, RaftUsageError } from "./errors.ts";
import { entrySizeBytes, RaftLog } from "./log.ts";
import {
  type AppendMessage,
  type AppendResponseMessage,
  type ConfChange,
  type ConfState,
  type Entry,
  type HardState,
  type HeartbeatMessage,
  type HeartbeatResponseMessage,
  type Message,
  NO_NODE,
  type ReadState,
  type SnapshotMessage,
  type SnapshotMeta,
  type VoteMessage,
  type VoteResponseMessage,
} from "./messages.ts";
import { Progress, type ProgressState } from "./progress.ts";
import { committedIndex, majority, voteResult } from "./quorum.ts";
import type { Ready, Role } from "./ready.ts";

/**
 * A deliberately broken rule, for proving that the simulator catches it.
 * Never set outside tests.
 * - `commitOldTermByCounting`: the leader commits entries of earlier terms by
 *   counting replicas (the Raft paper's Figure 8 hazard).
 * - `voteWithoutLogCheck`: votes are granted without the up-to-date check.
 */
export type TestingMutation = "commitOldTermByCounting" | "voteWithoutLogCheck";

/** Settings of one node. Only `id`, `groupId` and `randomInt` are required. */
export interface RaftConfig {
  /** This node's id (>= 1). */
  readonly id: number;
  /** The Raft group this node belongs to; messages of other groups are refused. */
  readonly groupId: number;
  /**
   * Uniform random integer in [0, maxExclusive). Inject a seeded PRNG in
   * tests; a CSPRNG-backed or Math.random-backed one in production.
   */
  readonly randomInt: (maxExclusive: number) => number;
  /** Base election timeout; the real one is uniform in [this, 2 * this). Default 10. */
  readonly electionTimeoutTicks?: number;
  /** Leader heartbeat period. Default 1. Must be below `electionTimeoutTicks`. */
  readonly heartbeatIntervalTicks?: number;
  /** Largest entry payload per AppendEntries message (at least one entry is sent). Default 1 MiB. */
  readonly maxSizePerMsgBytes?: number;
  /** Unacknowledged AppendEntries per follower. Default 256. */
  readonly maxInflightMsgs?: number;
  /** Unacknowledged AppendEntries payload per follower. Default 32 MiB. */
  readonly maxInflightBytes?: number;
  /** Proposals are dropped while this many bytes are uncommitted. Default 64 MiB. */
  readonly maxUncommittedEntriesBytes?: number;
  /** Committed entry bytes per Ready (at least one entry). Default 16 MiB. */
  readonly maxCommittedBytesPerReady?: number;
  /** Read requests waiting for confirmation. Default 4096. */
  readonly maxPendingReads?: number;
  /** Ticks before a snapshot that got no answer is given up. Default 5 election timeouts. */
  readonly snapshotTimeoutTicks?: number;
  /**
   * Ticks a follower in `replicate` may leave appends unacknowledged before
   * the leader assumes they were lost and probes again. Default half an
   * election timeout (at least 2).
   */
  readonly retransmitTicks?: number;
  /** Run a PreVote round before each election. Default true. */
  readonly preVote?: boolean;
  /**
   * Serve reads from a leader lease instead of a heartbeat round: after a
   * majority echoed a heartbeat sent at tick t, no other leader can be
   * elected before t + electionTimeoutTicks (followers ignore votes that
   * long), so the leader answers reads at once until then, minus
   * `leaseMarginTicks`. Assumes node clocks tick at the same rate within
   * that margin. Requires `checkQuorum`. Default false.
   */
  readonly leaseReads?: boolean;
  /** Safety margin of a read lease, in ticks, for clock phase and drift. Default 2. */
  readonly leaseMarginTicks?: number;
  /** Leaders step down without a live quorum; followers ignore votes while their leader lives. Default true. */
  readonly checkQuorum?: boolean;
  /** Test only: break one rule on purpose. */
  readonly testingMutation?: TestingMutation;
}

/** Durable state a node restarts from. Empty for a node that has never run. */
export interface RaftInitialState {
  /** Last durable hard state. Default { term: 0, vote: 0, commit: snapshot index }. */
  readonly hardState?: HardState;
  /** Last durable snapshot (for a new cluster: index 0, term 0, the founding members). */
  readonly snapshot?: SnapshotMeta;
  /** Durable entries following the snapshot. */
  readonly entries?: readonly Entry[];
  /** Index the application has durably applied. Default: the snapshot index. */
  readonly applied?: number;
}

/** Outcome of `propose` / `proposeConfChange`. */
export type ProposeResult =
  | { readonly accepted: true; readonly index: number; readonly term: number }
  | { readonly accepted: false; readonly reason: string };

/** Outcome of `transferLeadership` / `readIndex`. */
export type RequestResult =
  | { readonly accepted: true }
  | { readonly accepted: false; readonly reason: string };

/** What a leader knows about one follower, for status displays and tests. */
export interface ProgressView {
  /** Highest index durably replicated on the follower. */
  readonly match: number;
  /** Next index to send. */
  readonly next: number;
  /** Replication state. */
  readonly state: ProgressState;
}

interface PendingRead {
  readonly seq: number;
  readonly index: number;
  readonly context: Uint8Array;
  readonly from: number;
}

interface Outstanding {
  readonly hardState: HardState;
  readonly lastEntryIndex: number;
  readonly lastEntryTerm: number;
  readonly snapshot: SnapshotMeta | undefined;
  readonly appliedIndex: number;
}

/**
 * The write of one handled Ready, not yet durable: returned by
 * {@linkcode RaftNode.advanceBeforeDurable}, handed back to
 * {@linkcode RaftNode.durable} once the write is durable, in the order the
 * Readies were taken.
 */
export interface PersistMark {
  /** Position of the Ready among those taken (1, 2, ...). */
  readonly seq: number;
  /** Last entry the Ready wrote (0 when none). */
  readonly lastEntryIndex: number;
  /** Its term. */
  readonly lastEntryTerm: number;
  /** The snapshot the Ready installed, if any. */
  readonly snapshot: SnapshotMeta | undefined;
}

const EMPTY = new Uint8Array(0);
const ACCEPTED: RequestResult = { accepted: true };
const KIB = 1024;
const MIB = 1024 * KIB;

/**
 * One Raft node. Drive it with `tick()`, `step()`, `propose()` and friends;
 * take work with `ready()` when `hasReady()`; report it done with
 * `advance()`. See {@linkcode Ready} for the durability contract.
 *
 * @example
 * ```ts
 * const node = new RaftNode(
 *   { id: 1, groupId: 1, randomInt: (n) => Math.floor(Math.random() * n) },
 *   { snapshot: { index: 0, term: 0, conf: { voters: [1], learners: [] } } },
 * );
 * while (node.role !== "leader") node.tick();
 * node.propose(new TextEncoder().encode("hello"));
 * ```
 */
export class RaftNode {
  /** This node's id. */
  readonly id: number;
  /** The group this node belongs to. */
  readonly groupId: number;

  readonly #randomInt: (maxExclusive: number) => number;
  readonly #electionTimeoutTicks: number;
  readonly #heartbeatIntervalTicks: number;
  readonly #maxSizePerMsgBytes: number;
  readonly #maxInflightMsgs: number;
  readonly #maxInflightBytes: number;
  readonly #maxUncommittedEntriesBytes: number;
  readonly #maxCommittedBytesPerReady: number;
  readonly #maxPendingReads: number;
  readonly #snapshotTimeoutTicks: number;
  readonly #retransmitTicks: number;
  readonly #preVote: boolean;
  readonly #checkQuorum: boolean;
  readonly #leaseReads: boolean;
  readonly #leaseMarginTicks: number;
  readonly #mutation: TestingMutation | undefined;

  readonly #log: RaftLog;
  #term: number;
  #vote: number;
  #lead = NO_NODE;
  #role: Role = "follower";
  /** Highest index known committed by the leader and matching ours (followers). */
  #commitCandidate: number;

  #electionElapsed = 0;
  #heartbeatElapsed = 0;
  #randomizedElectionTimeout = 0;
  #votes = new Map<number, boolean>();

  #progress = new Map<number, Progress>();
  #needsSend = false;
  #heartbeatPending = false;
  #leadTransferee = NO_NODE;
  #transferElapsedTicks = 0;
  #uncommittedBytes = 0;
  #readSeq = 0;
  /** Ticks since this node became leader (the lease clock). */
  #leaderTicks = 0;
  /** Lease reads: leader tick at which each heartbeat round was first sent. */
  #seqSentAt = new Map<number, number>();
  /** Lease reads are served while `#leaderTicks` is below this. */
  #leaseUntilTick = 0;
  /** A TimeoutNow went out this term: a transfer election ignores stickiness, so no lease. */
  #leaseRevoked = false;
  /** Lease reads: ignore votes for an election timeout after boot (stickiness lost in a crash). */
  #bootStickiness: boolean;
  #pendingReads: PendingRead[] = [];
  #waitingReads: { context: Uint8Array; from: number }[] = [];

  #msgs: Message[] = [];
  #msgsAfterPersist: Message[] = [];
  #readStates: ReadState[] = [];
  /** Hard state of the last Ready (durable once that Ready is advanced). */
  #prevHardState: HardState;
  #outstanding: Outstanding | undefined;
  /** Readies handed out and advanced, and those of them reported durable (in order). */
  #marksIssued = 0;
  #marksDurable = 0;

  /** Creates a node from its durable state. */
  constructor(config: RaftConfig, initial: RaftInitialState) {
    const id = config.id;
    if (!Number.isInteger(id) || id < 1) {
      throw new RaftUsageError(`Node id ${id} is invalid; use an integer >= 1`);
    }
    this.id = id;
    this.groupId = config.groupId;
    this.#randomInt = config.randomInt;
    this.#electionTimeoutTicks = config.electionTimeoutTicks ?? 10;
    this.#heartbeatIntervalTicks = config.heartbeatIntervalTicks ?? 1;
    if (this.#heartbeatIntervalTicks >= this.#electionTimeoutTicks) {
      throw new RaftUsageError(
        `heartbeatIntervalTicks ${this.#heartbeatIntervalTicks} must be below electionTimeoutTicks ${this.#electionTimeoutTicks}`,
      );
    }
    this.#maxSizePerMsgBytes = config.maxSizePerMsgBytes ?? 1 * MIB;
    this.#maxInflightMsgs = config.maxInflightMsgs ?? 256;
    this.#maxInflightBytes = config.maxInflightBytes ?? 32 * MIB;
    this.#maxUncommittedEntriesBytes = config.maxUncommittedEntriesBytes ?? 64 * MIB;
    this.#maxCommittedBytesPerReady = config.maxCommittedBytesPerReady ?? 16 * MIB;
    this.#maxPendingReads = config.maxPendingReads ?? 4096;
    this.#snapshotTimeoutTicks = config.snapshotTimeoutTicks ?? 5 * this.#electionTimeoutTicks;
    this.#retransmitTicks = config.retransmitTicks ?? Math.max(2, this.#electionTimeoutTicks >> 1);
    this.#preVote = config.preVote ?? true;
    this.#checkQuorum = config.checkQuorum ?? true;
    this.#leaseReads = config.leaseReads ?? false;
    this.#leaseMarginTicks = config.leaseMarginTicks ?? 2;
    if (this.#leaseReads && !this.#checkQuorum) {
      throw new RaftUsageError(
        "leaseReads needs checkQuorum; enable checkQuorum or disable leaseReads",
      );
    }
    this.#bootStickiness = this.#leaseReads;
    this.#mutation = config.testingMutation;

    const snapshot = initial.snapshot ?? { index: 0, term: 0, conf: { voters: [], learners: [] } };
    const hs = initial.hardState ?? { term: snapshot.term, vote: NO_NODE, commit: snapshot.index };
    this.#log = new RaftLog(snapshot, initial.entries ?? [], hs.commit);
    assertInvariant(
      hs.term >= this.#log.lastTerm(),
      () => `restored term ${hs.term} is below the last log term ${this.#log.lastTerm()}`,
    );
    this.#log.restoreApplied(initial.applied ?? snapshot.index);
    this.#term = hs.term;
    this.#vote = hs.vote;
    this.#commitCandidate = this.#log.committed;
    this.#prevHardState = { term: hs.term, vote: hs.vote, commit: this.#log.committed };
    this.#becomeFollower(hs.term, NO_NODE);
  }

  // ---------------------------------------------------------------- views

  /** Current term. */
  get term(): number {
    return this.#term;
  }
  /** Vote cast in the current term (0 when none). */
  get vote(): number {
    return this.#vote;
  }
  /** Current role. */
  get role(): Role {
    return this.#role;
  }
  /** Known leader (0 when none). */
  get leaderId(): number {
    return this.#lead;
  }
  /** Commit index. */
  get commitIndex(): number {
    return this.#log.committed;
  }
  /** Applied index (advanced by `advance()`). */
  get appliedIndex(): number {
    return this.#log.applied;
  }
  /** Highest index durable on this node. */
  get persistedIndex(): number {
    return this.#log.persistedIndex;
  }
  /** Last log index. */
  get lastIndex(): number {
    return this.#log.lastIndex();
  }
  /** Term of the last log entry. */
  get lastTerm(): number {
    return this.#log.lastTerm();
  }
  /** First index still held (one past the snapshot). */
  get firstIndex(): number {
    return this.#log.firstIndex();
  }
  /** The current snapshot name. */
  get snapshot(): SnapshotMeta {
    return this.#log.snapshot;
  }
  /** Membership in force (the last `conf` entry in the log, committed or not). */
  get conf(): ConfState {
    return this.#log.conf();
  }
  /** Leadership transfer target (0 when none). */
  get leadTransferee(): number {
    return this.#leadTransferee;
  }
  /** Bytes the held entries take (data plus a fixed header each): what compaction bounds. */
  get heldBytes(): number {
    return this.#log.heldBytes();
  }
  /** Membership in force at `index` (at or after the snapshot index). */
  confAt(index: number): ConfState {
    return this.#log.confAt(index);
  }
  /** Term of the entry at `index`, or undefined when not held. */
  termAt(index: number): number | undefined {
    return this.#log.termAt(index);
  }
  /** The entry at `index` (throws when not held). */
  entryAt(index: number): Entry {
    return this.#log.entry(index);
  }
  /** The leader's view of follower `id`, or undefined (not leader, or not a member). */
  progressOf(id: number): ProgressView | undefined {
    const pr = this.#progress.get(id);
    return pr === undefined ? undefined : { match: pr.match, next: pr.next, state: pr.state };
  }

  // ---------------------------------------------------------------- inputs

  /** Advances logical time by one tick (elections, heartbeats, timeouts). */
  tick(): void {
    if (this.#role === "leader") this.#tickLeader();
    else this.#tickElection();
  }

  /** Starts an election now (PreVote first when enabled), if this node may vote. */
  campaign(): void {
    if (this.#role === "leader" || !this.#promotable()) return;
    this.#campaign(this.#preVote ? "pre" : "real", false);
  }

  /**
   * Appends `data` to the log if this node is the leader. Accepted is not
   * committed: watch `committedEntries` for the returned index and term.
   */
  propose(data: Uint8Array): ProposeResult {
    const refusal = this.#proposalRefusal();
    if (refusal !== undefined) return { accepted: false, reason: refusal };
    const size = data.byteLength;
    if (
      this.#uncommittedBytes > 0 && this.#uncommittedBytes + size > this.#maxUncommittedEntriesBytes
    ) {
      return {
        accepted: false,
        reason:
          `Uncommitted entries already hold ${this.#uncommittedBytes} bytes; retry after commits`,
      };
    }
    return this.#appendProposal("normal", data);
  }

  /**
   * Proposes one membership change. Refused unless this node leads, has
   * committed an entry of its term, the previous change is committed, and
   * the new voters include a live, caught-up majority. The change takes
   * effect on every node as soon as the entry is appended to its log.
   */
  proposeConfChange(change: ConfChange): ProposeResult {
    const refusal = this.#proposalRefusal() ?? this.#confChangeRefusal(change);
    if (typeof refusal === "string") return { accepted: false, reason: refusal };
    return this.#appendProposal("conf", encodeConfChangeRecord({ change, conf: refusal }));
  }

  /**
   * Hands leadership to voter `to`: the leader stops taking proposals, brings
   * `to` up to date, and sends it TimeoutNow. Aborted if `to` is not caught
   * up within an election timeout.
   */
  transferLeadership(to: number): RequestResult {
    if (this.#role !== "leader") return { accepted: false, reason: "This node is not the leader" };
    if (to === this.id) return { accepted: false, reason: `Node ${to} is already the leader` };
    if (!this.#log.conf().voters.includes(to)) {
      return { accepted: false, reason: `Node ${to} is not a voter` };
    }
    this.#leadTransferee = to;
    this.#transferElapsedTicks = 0;
    const pr = this.#progress.get(to)!;
    if (pr.match === this.#log.lastIndex()) this.#sendTimeoutNow(to);
    else this.#needsSend = true;
    return ACCEPTED;
  }

  /**
   * Requests a linearizable read. A ReadState with `context` appears in a
   * later Ready; serve the read once the applied index reaches its index.
   * Reads are dropped (not answered) when leadership changes; retry then.
   */
  readIndex(context: Uint8Array): RequestResult {
    if (this.#role === "leader") return this.#leaderRead(context, this.id);
    if (this.#lead === NO_NODE) return { accepted: false, reason: "No leader is known" };
    this.#send({
      type: "readIndex",
      groupId: this.groupId,
      from: this.id,
      to: this.#lead,
      term: this.#term,
      context,
    });
    return ACCEPTED;
  }

  /** Processes one message from another node of this group. */
  step(m: Message): void {
    if (m.groupId !== this.groupId) {
      throw new RaftUsageError(
        `Message of group ${m.groupId} was stepped into node ${this.id} of group ${this.groupId}`,
      );
    }
    if (m.to !== this.id) {
      throw new RaftUsageError(`Message for node ${m.to} was stepped into node ${this.id}`);
    }
    if (m.term > this.#term) {
      if (m.type === "vote" || m.type === "preVote") {
        const inLease = this.#checkQuorum &&
          (this.#lead !== NO_NODE || this.#bootStickiness) &&
          this.#electionElapsed < this.#electionTimeoutTicks;
        if (inLease && !m.transfer) return; // leader stickiness
      }
      if (m.type === "preVote" || (m.type === "preVoteResp" && !m.reject)) {
        // A PreVote round never changes terms.
      } else {
        const fromLeader = m.type === "app" || m.type === "heartbeat" || m.type === "snap";
        this.#becomeFollower(m.term, fromLeader ? m.from : NO_NODE);
      }
    } else if (m.term < this.#term) {
      if ((this.#checkQuorum || this.#preVote) && (m.type === "app" || m.type === "heartbeat")) {
        // Tell a stale leader about the newer term so it steps down.
        this.#sendAppendResponse(m.from, 0, false, 0, 0);
      } else if (m.type === "preVote") {
        this.#sendVoteResponse(m, true);
      }
      return;
    }

    if (m.type === "vote" || m.type === "preVote") {
      this.#handleVoteRequest(m);
      return;
    }
    switch (this.#role) {
      case "leader":
        this.#stepLeader(m);
        break;
      case "candidate":
      case "preCandidate":
        this.#stepCandidate(m);
        break;
      case "follower":
        this.#stepFollower(m);
        break;
    }
  }

  /**
   * The application has durably saved its state up to `index` (<= applied):
   * drop the log up to there. Returns the new snapshot name.
   */
  compact(index: number): SnapshotMeta {
    return this.#log.compact(index);
  }

  /**
   * cluster/ reports the outcome of streaming a snapshot to `to`. On failure
   * the leader probes again (and sends a new snapshot if still needed).
   */
  reportSnapshot(to: number, ok: boolean): void {
    const pr = this.#progress.get(to);
    if (this.#role !== "leader" || pr === undefined || pr.state !== "snapshot") return;
    if (!ok) pr.pendingSnapshot = 0;
    pr.becomeProbe();
    // Wait for the follower's answer before probing.
    if (ok) pr.probeSent = true;
    this.#needsSend = true;
  }

  // ---------------------------------------------------------------- ready

  /** True when `ready()` has work (and no Ready is outstanding). */
  hasReady(): boolean {
    if (this.#outstanding !== undefined) return false;
    return this.#msgs.length > 0 || this.#msgsAfterPersist.length > 0 ||
      this.#log.hasUnstable() || this.#log.hasCommittedToApply() ||
      this.#readStates.length > 0 || this.#hardStateChanged() ||
      (this.#role === "leader" && (this.#needsSend || this.#heartbeatPending));
  }

  /** Takes the pending work. Call `advance()` when it is done; see {@linkcode Ready}. */
  ready(): Ready {
    if (this.#outstanding !== undefined) {
      throw new RaftUsageError(
        "ready() was called before advance(); call advance() after each Ready",
      );
    }
    if (this.#role === "leader") this.#flushLeaderSends();
    const hardState: HardState = {
      term: this.#term,
      vote: this.#vote,
      commit: this.#log.committed,
    };
    const prev = this.#prevHardState;
    const changed = hardState.term !== prev.term || hardState.vote !== prev.vote ||
      hardState.commit !== prev.commit;
    const snapshot = this.#log.takePendingSnapshot();
    const entries = this.#log.takeUnstableEntries();
    const committedEntries = this.#log.nextCommittedEntries(this.#maxCommittedBytesPerReady);
    let messages = this.#msgs;
    let after = this.#msgsAfterPersist;
    if ((hardState.term !== prev.term || hardState.vote !== prev.vote) && messages.length > 0) {
      // Nothing may leave while the term or vote it was sent under is not durable.
      after = messages.concat(after);
      messages = [];
    }
    this.#msgs = [];
    this.#msgsAfterPersist = [];
    const readStates = this.#readStates;
    this.#readStates = [];
    const last = entries.length > 0 ? entries[entries.length - 1] : undefined;
    this.#outstanding = {
      hardState,
      lastEntryIndex: last?.index ?? 0,
      lastEntryTerm: last?.term ?? 0,
      snapshot,
      appliedIndex: committedEntries.length > 0
        ? committedEntries[committedEntries.length - 1].index
        : 0,
    };
    return {
      hardState: changed ? hardState : undefined,
      entries,
      snapshot,
      messages,
      messagesAfterPersist: after,
      committedEntries,
      readStates,
      role: this.#role,
      leaderId: this.#lead,
    };
  }

  /**
   * Reports the last Ready done and durable: written, sent, applied. The
   * same as {@linkcode advanceBeforeDurable} then {@linkcode durable}.
   */
  advance(): void {
    this.durable(this.advanceBeforeDurable());
  }

  /**
   * Reports the last Ready handled (its `messages` sent, its write handed to
   * storage, its committed entries applied) but its write NOT yet durable, so
   * that the next Ready can be taken while storage flushes (a leader keeps
   * replicating while it persists). Until {@linkcode durable} gets the mark
   * back, the Ready's entries do not count as this node's: a leader does not
   * count itself for them in the commit quorum, nothing past them is
   * committed here, and the driver holds the Ready's `messagesAfterPersist`.
   */
  advanceBeforeDurable(): PersistMark {
    const o = this.#outstanding;
    if (o === undefined) {
      throw new RaftUsageError("advance() was called without a Ready; call ready() first");
    }
    this.#outstanding = undefined;
    if (o.appliedIndex > 0) this.#log.appliedTo(o.appliedIndex);
    this.#prevHardState = o.hardState;
    return {
      seq: ++this.#marksIssued,
      lastEntryIndex: o.lastEntryIndex,
      lastEntryTerm: o.lastEntryTerm,
      snapshot: o.snapshot,
    };
  }

  /**
   * The write of the Ready `mark` came from is durable (and every earlier
   * one: storage is sequential). Marks come back in the order they were
   * issued; anything else throws. A mark for entries a later Ready has
   * overwritten makes nothing durable (the log checks the term).
   */
  durable(mark: PersistMark): void {
    assertInvariant(
      mark.seq === this.#marksDurable + 1 && mark.seq <= this.#marksIssued,
      () =>
        `durable mark ${mark.seq} reported out of order on node ${this.id} (last durable ${this.#marksDurable}, issued ${this.#marksIssued})`,
    );
    this.#marksDurable = mark.seq;
    if (mark.snapshot !== undefined) this.#log.snapshotPersisted(mark.snapshot);
    if (mark.lastEntryIndex > 0) this.#log.persistedTo(mark.lastEntryIndex, mark.lastEntryTerm);
    if (this.#role === "leader") this.#maybeCommit();
    else this.#tryFollowerCommit();
  }

  // ---------------------------------------------------------------- roles

  #becomeFollower(term: number, lead: number): void {
    this.#reset(term);
    this.#role = "follower";
    this.#lead = lead;
  }

  #becomeLeader(): void {
    assertInvariant(
      this.#role === "candidate",
      () => `node ${this.id} became leader of term ${this.#term} from role ${this.#role}`,
    );
    this.#reset(this.#term);
    this.#role = "leader";
    this.#lead = this.id;
    this.#syncProgress();
    this.#log.append([{
      index: this.#log.lastIndex() + 1,
      term: this.#term,
      type: "noop",
      data: EMPTY,
    }]);
    this.#needsSend = true;
  }

  #reset(term: number): void {
    if (term !== this.#term) {
      assertInvariant(
        term > this.#term,
        () => `term would decrease from ${this.#term} to ${term} on node ${this.id}`,
      );
      this.#term = term;
      this.#vote = NO_NODE;
      // Messages of the old term not yet handed out may no longer be true (an
      // acknowledgement of entries a newer leader is about to overwrite): drop them.
      // Dropping is always safe; the network may do it anyway.
      this.#msgs = [];
      this.#msgsAfterPersist = [];
    }
    this.#lead = NO_NODE;
    this.#electionElapsed = 0;
    this.#heartbeatElapsed = 0;
    this.#randomizedElectionTimeout = this.#electionTimeoutTicks +
      this.#randomInt(this.#electionTimeoutTicks);
    this.#votes = new Map();
    this.#progress = new Map();
    this.#needsSend = false;
    this.#heartbeatPending = false;
    this.#leadTransferee = NO_NODE;
    this.#transferElapsedTicks = 0;
    this.#uncommittedBytes = 0;
    this.#pendingReads = [];
    this.#waitingReads = [];
    this.#leaderTicks = 0;
    this.#seqSentAt = new Map();
    this.#leaseUntilTick = 0;
    this.#leaseRevoked = false;
  }

  #promotable(): boolean {
    return this.#log.conf().voters.includes(this.id);
  }

  #campaign(kind: "pre" | "real", transfer: boolean): void {
    let voteTerm: number;
    if (kind === "pre") {
      this.#reset(this.#term);
      this.#role = "preCandidate";
      voteTerm = this.#term + 1;
    } else {
      this.#reset(this.#term + 1);
      this.#role = "candidate";
      this.#vote = this.id;
      voteTerm = this.#term;
    }
    this.#votes.set(this.id, true);
    const voters = this.#log.conf().voters;
    if (voteResult(voters, this.#votes) === "won") {
      if (kind === "pre") this.#campaign("real", false);
      else this.#becomeLeader();
      return;
    }
    for (const to of voters) {
      if (to === this.id) continue;
      const m: VoteMessage = {
        type: kind === "pre" ? "preVote" : "vote",
        groupId: this.groupId,
        from: this.id,
        to,
        term: voteTerm,
        index: this.#log.lastIndex(),
        logTerm: this.#log.lastTerm(),
        transfer,
      };
      this.#send(m);
    }
  }

  #tickElection(): void {
    this.#electionElapsed++;
    if (this.#electionElapsed >= this.#electionTimeoutTicks) this.#bootStickiness = false;
    if (this.#electionElapsed >= this.#randomizedElectionTimeout && this.#promotable()) {
      this.#electionElapsed = 0;
      this.#campaign(this.#preVote ? "pre" : "real", false);
    }
  }

  #tickLeader(): void {
    this.#leaderTicks++;
    this.#heartbeatElapsed++;
    this.#electionElapsed++;
    for (const pr of this.#progress.values()) {
      pr.inactiveTicks++;
      if (pr.state === "replicate" && pr.match < pr.next - 1) {
        // Appends in flight and no acknowledgement: assume a loss and probe again.
        if (++pr.stalledTicks >= this.#retransmitTicks) {
          pr.becomeProbe();
          this.#needsSend = true;
        }
      }
      if (pr.state === "snapshot" && ++pr.snapshotElapsedTicks >= this.#snapshotTimeoutTicks) {
        pr.pendingSnapshot = 0;
        pr.becomeProbe();
        this.#needsSend = true;
      }
    }
    if (this.#electionElapsed >= this.#electionTimeoutTicks) {
      this.#electionElapsed = 0;
      if (this.#checkQuorum && !this.#quorumActive()) {
        this.#becomeFollower(this.#term, NO_NODE);
        return;
      }
    }
    if (this.#leadTransferee !== NO_NODE) {
      if (++this.#transferElapsedTicks >= this.#electionTimeoutTicks) {
        this.#leadTransferee = NO_NODE; // the target did not take over in time
      }
    }
    if (this.#heartbeatElapsed >= this.#heartbeatIntervalTicks) {
      this.#heartbeatElapsed = 0;
      this.#heartbeatPending = true;
    }
  }

  #quorumActive(): boolean {
    const voters = this.#log.conf().voters;
    let active = 0;
    for (const id of voters) {
      if (id === this.id || this.#isActive(id)) active++;
    }
    return active >= majority(voters.length);
  }

  #isActive(id: number): boolean {
    const pr = this.#progress.get(id);
    return pr !== undefined && pr.inactiveTicks < this.#electionTimeoutTicks;
  }

  // ---------------------------------------------------------------- votes

  #handleVoteRequest(m: VoteMessage): void {
    const canVote = this.#vote === m.from ||
      (this.#vote === NO_NODE && this.#lead === NO_NODE) ||
      (m.type === "preVote" && m.term > this.#term);
    const upToDate = this.#mutation === "voteWithoutLogCheck" ||
      this.#log.isUpToDate(m.index, m.logTerm);
    if (!canVote || !upToDate) {
      this.#sendVoteResponse(m, true);
      return;
    }
    if (m.type === "vote") {
      assertInvariant(
        this.#vote === NO_NODE || this.#vote === m.from,
        () =>
          `node ${this.id} would vote for ${m.from} in term ${this.#term} after voting for ${this.#vote}`,
      );
      this.#vote = m.from;
      this.#electionElapsed = 0;
    }
    this.#sendVoteResponse(m, false);
  }

  #sendVoteResponse(m: VoteMessage, reject: boolean): void {
    const resp: VoteResponseMessage = {
      type: m.type === "vote" ? "voteResp" : "preVoteResp",
      groupId: this.groupId,
      from: this.id,
      to: m.from,
      // A granted PreVote answers in the term the candidate would use.
      term: reject ? this.#term : m.term,
      reject,
    };
    this.#msgsAfterPersist.push(resp);
  }

  #stepCandidate(m: Message): void {
    switch (m.type) {
      case "app":
      case "heartbeat":
      case "snap":
        this.#becomeFollower(this.#term, m.from);
        this.#stepFollower(m);
        return;
      case "voteResp":
      case "preVoteResp": {
        if ((m.type === "voteResp") !== (this.#role === "candidate")) return; // stale round
        this.#votes.set(m.from, !m.reject);
        const result = voteResult(this.#log.conf().voters, this.#votes);
        if (result === "won") {
          if (this.#role === "preCandidate") this.#campaign("real", false);
          else this.#becomeLeader();
        } else if (result === "lost") {
          this.#becomeFollower(this.#term, NO_NODE);
        }
        return;
      }
      default:
        return;
    }
  }

  // ---------------------------------------------------------------- follower

  #stepFollower(m: Message): void {
    switch (m.type) {
      case "app":
        this.#electionElapsed = 0;
        this.#lead = m.from;
        this.#handleAppend(m);
        return;
      case "heartbeat":
        this.#electionElapsed = 0;
        this.#lead = m.from;
        this.#handleHeartbeat(m);
        return;
      case "snap":
        this.#electionElapsed = 0;
        this.#lead = m.from;
        this.#handleSnapshot(m);
        return;
      case "timeoutNow":
        if (this.#promotable()) this.#campaign("real", true);
        return;
      case "readIndexResp":
        this.#readStates.push({ index: m.index, context: m.context });
        return;
      default:
        return;
    }
  }

  #handleAppend(m: AppendMessage): void {
    const committed = this.#log.committed;
    if (m.index < committed) {
      this.#sendAppendResponse(m.from, committed, false, 0, 0);
      return;
    }
    const snapshotIndex = this.#log.snapshot.index;
    if (m.index < snapshotIndex) {
      // We hold a snapshot (still being written) past this append's start: a committed
      // prefix, equal on every leader. Say so, and the leader continues after it.
      this.#sendAppendResponse(m.from, snapshotIndex, false, 0, 0);
      return;
    }
    const lastNew = this.#log.maybeAppend(m.index, m.logTerm, m.entries);
    if (lastNew === undefined) {
      const hint = this.#log.findConflictByTerm(m.index, m.logTerm);
      this.#sendAppendResponse(m.from, m.index, true, hint.index, hint.term);
      return;
    }
    const known = Math.min(m.commit, lastNew);
    if (known > this.#commitCandidate) this.#commitCandidate = known;
    this.#tryFollowerCommit();
    this.#sendAppendResponse(m.from, lastNew, false, 0, 0);
  }

  #handleHeartbeat(m: HeartbeatMessage): void {
    // The leader sends min(our match, its commit): entries up to there match it.
    if (m.commit > this.#commitCandidate) this.#commitCandidate = m.commit;
    this.#tryFollowerCommit();
    const resp: HeartbeatResponseMessage = {
      type: "heartbeatResp",
      groupId: this.groupId,
      from: this.id,
      to: m.from,
      term: this.#term,
      readSeq: m.readSeq,
    };
    this.#send(resp);
  }

  #handleSnapshot(m: SnapshotMessage): void {
    const s = m.snapshot;
    const committed = this.#log.committed;
    if (s.index <= committed) {
      this.#sendAppendResponse(m.from, committed, false, 0, 0);
      return;
    }
    // A snapshot at or below the one we hold (perhaps still being written) is stale or a
    // duplicate: installing it would roll the log back under acknowledgements already sent.
    const covered = s.index <= this.#log.snapshot.index || this.#log.matchTerm(s.index, s.term);
    if (!covered) this.#log.restore(s);
    if (s.index > this.#commitCandidate) this.#commitCandidate = s.index;
    this.#tryFollowerCommit();
    this.#sendAppendResponse(m.from, s.index, false, 0, 0);
  }

  /** Commit what the leader said is committed, as far as it is durable here. */
  #tryFollowerCommit(): void {
    const target = Math.min(this.#commitCandidate, this.#log.persistedIndex);
    if (target > this.#log.committed) this.#log.commitTo(target);
  }

  #sendAppendResponse(
    to: number,
    index: number,
    reject: boolean,
    hintIndex: number,
    hintTerm: number,
  ): void {
    const m: AppendResponseMessage = {
      type: "appResp",
      groupId: this.groupId,
      from: this.id,
      to,
      term: this.#term,
      index,
      reject,
      hintIndex,
      hintTerm,
    };
    this.#send(m);
  }

  // ---------------------------------------------------------------- leader

  #stepLeader(m: Message): void {
    switch (m.type) {
      case "app":
      case "heartbeat":
      case "snap":
        throw new RaftInvariantError(
          `leader ${this.id} of term ${this.#term} received ${m.type} from ${m.from}, another leader of the same term`,
        );
      case "appResp":
        this.#handleAppendResponse(m);
        return;
      case "heartbeatResp": {
        const pr = this.#progress.get(m.from);
        if (pr === undefined) return;
        pr.inactiveTicks = 0;
        if (pr.state === "probe") pr.probeSent = false;
        if (pr.match < this.#log.lastIndex()) this.#needsSend = true;
        if (m.readSeq > pr.readAck) {
          pr.readAck = m.readSeq;
          this.#releaseReads();
        }
        return;
      }
      case "readIndex":
        if (this.#progress.has(m.from)) this.#leaderRead(m.context, m.from);
        return;
      default:
        return;
    }
  }

  #handleAppendResponse(m: AppendResponseMessage): void {
    const pr = this.#progress.get(m.from);
    if (pr === undefined) return;
    pr.inactiveTicks = 0;
    if (m.reject) {
      // Skip every index whose term cannot match the follower's hint in one step.
      const hintNext = this.#log.findConflictByTerm(m.hintIndex, m.hintTerm).index + 1;
      if (pr.maybeDecrTo(m.index, hintNext)) {
        if (pr.state === "replicate") pr.becomeProbe();
        this.#needsSend = true;
      }
      return;
    }
    if (!pr.maybeUpdate(m.index)) return;
    switch (pr.state) {
      case "probe":
        pr.becomeReplicate();
        break;
      case "snapshot":
        if (pr.match >= pr.pendingSnapshot) pr.becomeReplicate();
        break;
      case "replicate":
        pr.inflights.freeLE(m.index);
        break;
    }
    this.#needsSend = true;
    this.#maybeCommit();
    if (
      this.#role === "leader" && m.from === this.#leadTransferee &&
      pr.match === this.#log.lastIndex()
    ) {
      this.#sendTimeoutNow(m.from);
    }
  }

  #maybeCommit(): void {
    const conf = this.#log.conf();
    const persisted = this.#log.persistedIndex;
    const quorumIndex = committedIndex(
      conf.voters,
      (id) => id === this.id ? persisted : (this.#progress.get(id)?.match ?? 0),
    );
    // The leader counts itself only once durable, and never commits past its own disk.
    const index = Math.min(quorumIndex, persisted);
    const old = this.#log.committed;
    if (index <= old) return;
    if (this.#log.termAt(index) !== this.#term && this.#mutation !== "commitOldTermByCounting") {
      return; // only entries of the current term are committed by counting
    }
    const hadCommittedInTerm = this.#log.termAt(old) === this.#term;
    this.#log.commitTo(index);
    for (let i = old + 1; i <= index && this.#uncommittedBytes > 0; i++) {
      if (i < this.#log.firstIndex()) continue;
      const e = this.#log.entry(i);
      if (e.term === this.#term) this.#uncommittedBytes -= e.data.byteLength;
    }
    if (this.#uncommittedBytes < 0) this.#uncommittedBytes = 0;
    if (!hadCommittedInTerm && this.#log.termAt(index) === this.#term) {
      const waiting = this.#waitingReads;
      this.#waitingReads = [];
      for (const r of waiting) this.#leaderRead(r.context, r.from);
    }
    if (!conf.voters.includes(this.id) && index >= this.#log.confIndex()) {
      // This leader's removal is committed: hand over by stepping down.
      this.#becomeFollower(this.#term, NO_NODE);
    }
  }

  #proposalRefusal(): string | undefined {
    if (this.#role !== "leader") return "This node is not the leader";
    if (this.#leadTransferee !== NO_NODE) {
      return `Leadership is being transferred to node ${this.#leadTransferee}`;
    }
    return undefined;
  }

  #confChangeRefusal(change: ConfChange): ConfState | string {
    const committed = this.#log.committed;
    if (this.#log.termAt(committed) !== this.#term) {
      return "The leader has not yet committed an entry of its term; retry shortly";
    }
    if (this.#log.confIndex() > committed) {
      return `The membership change at index ${this.#log.confIndex()} is not yet committed`;
    }
    const conf = this.#log.conf();
    const next = applyConfChange(conf, change);
    if (typeof next === "string") return next;
    let live = 0;
    for (const id of next.voters) {
      if (id === this.id) {
        live++;
        continue;
      }
      const pr = this.#progress.get(id);
      if (pr === undefined || !this.#isActive(id)) continue;
      // A promoted learner helps the quorum only once caught up.
      if (change.type === "promoteLearner" && id === change.nodeId && pr.match < committed) {
        continue;
      }
      live++;
    }
    const need = majority(next.voters.length);
    if (live < need) {
      return `After ${change.type} of node ${change.nodeId}, only ${live} of ${next.voters.length} voters would be live and caught up, fewer than the ${need} needed`;
    }
    return next;
  }

  #appendProposal(type: "normal" | "conf", data: Uint8Array): ProposeResult {
    const index = this.#log.lastIndex() + 1;
    const entry: Entry = { index, term: this.#term, type, data };
    this.#log.append([entry]);
    this.#uncommittedBytes += data.byteLength;
    if (type === "conf") this.#syncProgress();
    this.#needsSend = true;
    // A single-voter group commits as soon as the entry is durable (advance).
    return { accepted: true, index, term: this.#term };
  }

  /** Makes the progress map match the membership in force. */
  #syncProgress(): void {
    const members = confMembers(this.#log.conf());
    const next = this.#log.lastIndex() + 1;
    for (const id of members) {
      if (id !== this.id && !this.#progress.has(id)) {
        this.#progress.set(id, new Progress(next, this.#maxInflightMsgs, this.#maxInflightBytes));
      }
    }
    for (const id of this.#progress.keys()) {
      if (!members.includes(id)) this.#progress.delete(id);
    }
    if (this.#leadTransferee !== NO_NODE && !this.#progress.has(this.#leadTransferee)) {
      this.#leadTransferee = NO_NODE;
    }
  }

  #flushLeaderSends(): void {
    if (this.#needsSend) {
      this.#needsSend = false;
      for (const [to, pr] of this.#progress) this.#sendAppends(to, pr);
    }
    if (this.#heartbeatPending) {
      this.#heartbeatPending = false;
      const commit = this.#log.committed;
      if (this.#leaseReads) {
        // Every round gets its own number, so its echoes date the lease.
        this.#readSeq++;
        this.#seqSentAt.set(this.#readSeq, this.#leaderTicks);
        for (const [seq, sentAt] of this.#seqSentAt) {
          // Rounds older than an election timeout can no longer extend the lease.
          if (sentAt + this.#electionTimeoutTicks > this.#leaderTicks) break;
          this.#seqSentAt.delete(seq);
        }
      }
      for (const [to, pr] of this.#progress) {
        const m: HeartbeatMessage = {
          type: "heartbeat",
          groupId: this.groupId,
          from: this.id,
          to,
          term: this.#term,
          commit: Math.min(pr.match, commit),
          readSeq: this.#readSeq,
        };
        this.#msgs.push(m);
      }
    }
  }

  /** Sends as many appends to `to` as its flow control allows. */
  #sendAppends(to: number, pr: Progress): void {
    const last = this.#log.lastIndex();
    while (!pr.isPaused()) {
      if (pr.state === "replicate" && pr.next > last) return;
      if (pr.state === "probe" && pr.next > last && pr.match >= last) return;
      const prevIndex = pr.next - 1;
      const prevTerm = this.#log.termAt(prevIndex);
      if (prevTerm === undefined) {
        this.#sendSnapshot(to, pr);
        return;
      }
      const entries = pr.next <= last
        ? this.#log.slice(pr.next, last + 1, this.#maxSizePerMsgBytes)
        : [];
      let bytes = 0;
      for (const e of entries) bytes += entrySizeBytes(e);
      const m: AppendMessage = {
        type: "app",
        groupId: this.groupId,
        from: this.id,
        to,
        term: this.#term,
        index: prevIndex,
        logTerm: prevTerm,
        commit: this.#log.committed,
        entries,
      };
      this.#msgs.push(m);
      pr.sentEntries(prevIndex + entries.length, entries.length, bytes);
      if (pr.state !== "replicate") return;
    }
  }

  #sendSnapshot(to: number, pr: Progress): void {
    const snapshot = this.#log.snapshot;
    pr.becomeSnapshot(snapshot.index);
    const m: SnapshotMessage = {
      type: "snap",
      groupId: this.groupId,
      from: this.id,
      to,
      term: this.#term,
      snapshot,
    };
    this.#msgs.push(m);
  }

  #sendTimeoutNow(to: number): void {
    this.#leaseRevoked = true;
    this.#msgs.push({
      type: "timeoutNow",
      groupId: this.groupId,
      from: this.id,
      to,
      term: this.#term,
    });
  }

  #leaderRead(context: Uint8Array, from: number): RequestResult {
    if (this.#pendingReads.length + this.#waitingReads.length >= this.#maxPendingReads) {
      return { accepted: false, reason: `${this.#maxPendingReads} reads are already pending` };
    }
    const committed = this.#log.committed;
    if (this.#log.termAt(committed) !== this.#term) {
      // Our commit index is only known to be current once an entry of our term commits.
      this.#waitingReads.push({ context, from });
      return ACCEPTED;
    }
    const voters = this.#log.conf().voters;
    if (voters.length === 1 && voters[0] === this.id) {
      this.#deliverRead({ seq: 0, index: committed, context, from });
      return ACCEPTED;
    }
    if (this.#leaseValid()) {
      this.#deliverRead({ seq: 0, index: committed, context, from });
      return ACCEPTED;
    }
    this.#readSeq++;
    this.#pendingReads.push({ seq: this.#readSeq, index: committed, context, from });
    this.#heartbeatPending = true;
    return ACCEPTED;
  }

  #leaseValid(): boolean {
    return this.#leaseReads && !this.#leaseRevoked && this.#leadTransferee === NO_NODE &&
      this.#leaderTicks < this.#leaseUntilTick;
  }

  /** Extends the lease to the newest heartbeat round a majority has echoed. */
  #extendLease(): void {
    const quorumSeq = committedIndex(
      this.#log.conf().voters,
      (id) => id === this.id ? this.#readSeq : (this.#progress.get(id)?.readAck ?? 0),
    );
    const sentAt = this.#seqSentAt.get(quorumSeq);
    if (sentAt !== undefined) {
      const until = sentAt + this.#electionTimeoutTicks - this.#leaseMarginTicks;
      if (until > this.#leaseUntilTick) this.#leaseUntilTick = until;
    }
    for (const seq of this.#seqSentAt.keys()) {
      if (seq < quorumSeq) this.#seqSentAt.delete(seq);
      else break; // insertion order is ascending
    }
  }

  #releaseReads(): void {
    if (this.#leaseReads) this.#extendLease();
    const voters = this.#log.conf().voters;
    const need = majority(voters.length);
    let released = 0;
    for (const r of this.#pendingReads) {
      let acks = 0;
      for (const id of voters) {
        if (id === this.id || (this.#progress.get(id)?.readAck ?? 0) >= r.seq) acks++;
      }
      if (acks < need) break;
      this.#deliverRead(r);
      released++;
    }
    if (released > 0) this.#pendingReads = this.#pendingReads.slice(released);
  }

  #deliverRead(r: PendingRead): void {
    if (r.from === this.id) {
      this.#readStates.push({ index: r.index, context: r.context });
      return;
    }
    const m: Message = {
      type: "readIndexResp",
      groupId: this.groupId,
      from: this.id,
      to: r.from,
      term: this.#term,
      index: r.index,
      context: r.context,
    };
    this.#msgs.push(m);
  }

  // ---------------------------------------------------------------- output

  /** Leaders' messages may leave at once; everyone else's wait for durability. */
  #send(m: Message): void {
    if (this.#role === "leader") this.#msgs.push(m);
    else this.#msgsAfterPersist.push(m);
  }

  #hardStateChanged(): boolean {
    const p = this.#prevHardState;
    return p.term !== this.#term || p.vote !== this.#vote || p.commit !== this.#log.committed;
  }
}
