/**
 * The batch of work the core hands to its driver, and the rules for doing it.
 *
 * @module
 */

import type { Entry, HardState, Message, ReadState, SnapshotMeta } from "./messages.ts";

/** A node's role in its group. */
export type Role = "follower" | "preCandidate" | "candidate" | "leader";

/**
 * Work for the driver. Do it in this order:
 *
 * 1. Send `messages` now; they do not depend on this batch being durable
 *    (a leader's appends and heartbeats, sent in parallel with its fsync).
 * 2. Write, in one transaction: `snapshot` (replaces the log and the
 *    application state up to its index; its bytes come from cluster/), then
 *    `entries` (an entry at index i replaces any stored entry >= i), then
 *    `hardState`.
 * 3. Only after that write is durable, send `messagesAfterPersist` (votes,
 *    append acknowledgements, everything a follower or candidate says, and
 *    any message sent while the term or vote changed).
 * 4. Apply `committedEntries` in order and serve `readStates` once the applied
 *    index reaches each one's index. `committedEntries` never include
 *    entries that are not durable on this node.
 * 5. Call `advance()` once the write is durable. Only one Ready may be
 *    outstanding.
 *
 * A driver whose storage flushes asynchronously calls `advanceBeforeDurable()`
 * instead once steps 1, 2 (handed to storage, not yet durable) and 4 are
 * done, may take further Readies, and hands each returned mark to
 * `durable()` when its write is durable, in order; it holds step 3's
 * messages until then. Storage must be sequential: a write is durable only
 * when every earlier one is.
 */
export interface Ready {
  /** New hard state to persist, or undefined when unchanged. */
  readonly hardState: HardState | undefined;
  /** Entries to persist (may overwrite a suffix from `entries[0].index`). */
  readonly entries: readonly Entry[];
  /** Snapshot to persist and install, or undefined. */
  readonly snapshot: SnapshotMeta | undefined;
  /** Messages to send immediately. */
  readonly messages: readonly Message[];
  /** Messages to send only once this Ready is durable. */
  readonly messagesAfterPersist: readonly Message[];
  /** Committed entries to apply, in index order. */
  readonly committedEntries: readonly Entry[];
  /** Linearizable reads that became ready. */
  readonly readStates: readonly ReadState[];
  /** Role when the Ready was taken. */
  readonly role: Role;
  /** Known leader when the Ready was taken (0 when none). */
  readonly leaderId: number;
}
