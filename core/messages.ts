/**
 * The data types of the Raft core: log entries, hard state, snapshots,
 * membership and the messages nodes exchange.
 *
 * Every message is a plain object discriminated on `type`, with a fixed set
 * of numeric and byte-array fields per type, so that a binary codec
 * (cluster/) can encode it as a tag byte followed by fixed fields.
 *
 * @module
 */

/** Node id meaning "nobody" (no vote cast, no known leader). Real ids are >= 1. */
export const NO_NODE = 0;

/**
 * What an entry is for: `normal` carries an application payload, `conf`
 * carries an encoded {@linkcode ConfChangeRecord}, `noop` is the empty entry
 * a new leader appends at the start of its term.
 */
export type EntryType = "normal" | "conf" | "noop";

/** One Raft log entry. */
export interface Entry {
  /** Position in the log, starting at 1. */
  readonly index: number;
  /** Term of the leader that created the entry. */
  readonly term: number;
  /** What the payload is. */
  readonly type: EntryType;
  /** Application bytes (normal), an encoded conf change (conf), empty (noop). */
  readonly data: Uint8Array;
}

/** The state that must be durable before the node may act on it. */
export interface HardState {
  /** Current term. */
  readonly term: number;
  /** Candidate voted for in `term`, or {@linkcode NO_NODE}. */
  readonly vote: number;
  /** Highest index known committed (always <= the last durable index). */
  readonly commit: number;
}

/** The membership of a group: who votes and who only replicates. */
export interface ConfState {
  /** Voting members, sorted ascending. */
  readonly voters: readonly number[];
  /** Non-voting members (replicate, never vote, never counted), sorted ascending. */
  readonly learners: readonly number[];
}

/**
 * The name of a snapshot: the log is compacted up to `index`. The bytes of
 * the application state at `index` are not part of the core; cluster/
 * streams them.
 */
export interface SnapshotMeta {
  /** Last log index covered by the snapshot. */
  readonly index: number;
  /** Term of the entry at `index`. */
  readonly term: number;
  /** Membership as of `index`. */
  readonly conf: ConfState;
}

/**
 * One single-server membership change:
 * - `addLearner`: a new node starts replicating without a vote;
 * - `promoteLearner`: an existing, caught-up learner becomes a voter;
 * - `addVoter`: a new node becomes a voter directly;
 * - `removeNode`: a voter or learner leaves the group.
 */
export interface ConfChange {
  /** Kind of change. */
  readonly type: "addLearner" | "promoteLearner" | "addVoter" | "removeNode";
  /** Node the change is about. */
  readonly nodeId: number;
}

/** What a `conf` entry holds: the change and the full membership after it. */
export interface ConfChangeRecord {
  /** The change requested. */
  readonly change: ConfChange;
  /** Membership after the change (takes effect when the entry is appended). */
  readonly conf: ConfState;
}

/** Result of a linearizable read request: the read may be served once applied >= index. */
export interface ReadState {
  /** Commit index the read must wait for. */
  readonly index: number;
  /** Opaque bytes the caller passed to `readIndex`. */
  readonly context: Uint8Array;
}

/** Fields every message carries. */
interface MessageHeader {
  /** Raft group the message belongs to. */
  readonly groupId: number;
  /** Sender. */
  readonly from: number;
  /** Recipient. */
  readonly to: number;
  /** Sender's term (for `preVote`, the term it would campaign in). */
  readonly term: number;
}

/** AppendEntries: entries following (`index`, `logTerm`), and the leader's commit. */
export interface AppendMessage extends MessageHeader {
  /** Discriminant. */
  readonly type: "app";
  /** Index of the entry preceding `entries`. */
  readonly index: number;
  /** Term of the entry at `index`. */
  readonly logTerm: number;
  /** Leader's commit index. */
  readonly commit: number;
  /** Entries to append, contiguous from `index + 1`. */
  readonly entries: readonly Entry[];
}

/**
 * Reply to `app` or `snap`. Accepted: `index` is the last index now matching
 * the leader (durable on the sender). Rejected: `index` is the rejected
 * `app.index`, and (`hintIndex`, `hintTerm`) is the sender's last entry at or
 * below `index` whose term is <= the `app.logTerm` (fast backtracking).
 */
export interface AppendResponseMessage extends MessageHeader {
  /** Discriminant. */
  readonly type: "appResp";
  /** See the interface description. */
  readonly index: number;
  /** True when the log did not match at `index`. */
  readonly reject: boolean;
  /** Backtracking hint index (rejections only, else 0). */
  readonly hintIndex: number;
  /** Backtracking hint term (rejections only, else 0). */
  readonly hintTerm: number;
}

/** RequestVote or PreVote: the candidate's last log position. */
export interface VoteMessage extends MessageHeader {
  /** Discriminant. */
  readonly type: "vote" | "preVote";
  /** Candidate's last log index. */
  readonly index: number;
  /** Term of the candidate's last log entry. */
  readonly logTerm: number;
  /** True when the election was started by a leadership transfer (ignores stickiness). */
  readonly transfer: boolean;
}

/** Reply to `vote` or `preVote`. */
export interface VoteResponseMessage extends MessageHeader {
  /** Discriminant. */
  readonly type: "voteResp" | "preVoteResp";
  /** True when the vote was refused. */
  readonly reject: boolean;
}

/** Leader heartbeat: commit the recipient may use, and the newest read sequence number. */
export interface HeartbeatMessage extends MessageHeader {
  /** Discriminant. */
  readonly type: "heartbeat";
  /** min(recipient's match index, leader's commit). */
  readonly commit: number;
  /** Read-index round this heartbeat confirms (0 when none). */
  readonly readSeq: number;
}

/** Reply to a heartbeat, echoing its read sequence number. */
export interface HeartbeatResponseMessage extends MessageHeader {
  /** Discriminant. */
  readonly type: "heartbeatResp";
  /** Echo of `heartbeat.readSeq`. */
  readonly readSeq: number;
}

/** InstallSnapshot: the leader names the snapshot; cluster/ streams its bytes. */
export interface SnapshotMessage extends MessageHeader {
  /** Discriminant. */
  readonly type: "snap";
  /** The snapshot to install. */
  readonly snapshot: SnapshotMeta;
}

/** Leadership transfer: the recipient should start an election now. */
export interface TimeoutNowMessage extends MessageHeader {
  /** Discriminant. */
  readonly type: "timeoutNow";
}

/** A follower asks the leader for a read index on behalf of a client. */
export interface ReadIndexMessage extends MessageHeader {
  /** Discriminant. */
  readonly type: "readIndex";
  /** Opaque request bytes, echoed back. */
  readonly context: Uint8Array;
}

/** The leader's answer to `readIndex`. */
export interface ReadIndexResponseMessage extends MessageHeader {
  /** Discriminant. */
  readonly type: "readIndexResp";
  /** Commit index the read must wait for. */
  readonly index: number;
  /** Echo of the request bytes. */
  readonly context: Uint8Array;
}

/** Every message the core sends or accepts, discriminated on `type`. */
export type Message =
  | AppendMessage
  | AppendResponseMessage
  | VoteMessage
  | VoteResponseMessage
  | HeartbeatMessage
  | HeartbeatResponseMessage
  | SnapshotMessage
  | TimeoutNowMessage
  | ReadIndexMessage
  | ReadIndexResponseMessage;

/** The `type` tag of a {@linkcode Message}. */
export type MessageType = Message["type"];
