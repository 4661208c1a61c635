/**
 * Seguro's Raft core: a pure, deterministic Raft state machine in the style
 * of etcd-io/raft's RawNode. No I/O, no timers, no clock, no global
 * randomness; the driver (cluster/) feeds it ticks and messages and carries
 * out each {@linkcode Ready}. See docs/raft.md for the contract.
 *
 * @module
 */

export { RaftNode } from "./raft.ts";
export type {
  PersistMark,
  ProgressView,
  ProposeResult,
  RaftConfig,
  RaftInitialState,
  RequestResult,
  TestingMutation,
} from "./raft.ts";
export type { Ready, Role } from "./ready.ts";
export { NO_NODE } from "./messages.ts";
export type {
  AppendMessage,
  AppendResponseMessage,
  ConfChange,
  ConfChangeRecord,
  ConfState,
  Entry,
  EntryType,
  HardState,
  HeartbeatMessage,
  HeartbeatResponseMessage,
  Message,
  MessageType,
  ReadIndexMessage,
  ReadIndexResponseMessage,
  ReadState,
  SnapshotMessage,
  SnapshotMeta,
  TimeoutNowMessage,
  VoteMessage,
  VoteResponseMessage,
} from "./messages.ts";
export {
  applyConfChange,
  confEquals,
  confMembers,
  decodeConfChangeRecord,
  encodeConfChangeRecord,
  MAX_NODE_ID,
} from "./confchange.ts";
export { assertInvariant, RaftInvariantError, RaftUsageError } from "./errors.ts";
export { committedIndex, majority, type VoteResult, voteResult } from "./quorum.ts";
export { ENTRY_OVERHEAD_BYTES, entrySizeBytes, RaftLog } from "./log.ts";
export { Progress, type ProgressState } from "./progress.ts";
export { Inflights } from "./inflights.ts";
export { createPrng, type Prng } from "./prng.ts";
