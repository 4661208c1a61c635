/**
 * What a leader knows about one follower's log, and the replication state
 * machine that decides when it may send to it.
 *
 * @module
 */

import { Inflights } from "./inflights.ts";

/**
 * - `probe`: the leader does not know where the follower's log matches; it
 *   sends one append at a time and waits for the answer (or a heartbeat reply).
 * - `replicate`: the logs match up to `match`; appends are pipelined up to the
 *   in-flight bounds.
 * - `snapshot`: the follower needs entries the leader compacted; a snapshot is
 *   on its way and nothing else is sent until it is answered or fails.
 */
export type ProgressState = "probe" | "replicate" | "snapshot";

/** Replication progress of one follower or learner, kept by the leader. */
export class Progress {
  /** Highest index known durably replicated on the follower. */
  match = 0;
  /** Next index to send. */
  next: number;
  /** Replication state. */
  state: ProgressState = "probe";
  /** In `probe`: an append was sent and not yet answered. */
  probeSent = false;
  /** In `snapshot`: index of the snapshot being installed. */
  pendingSnapshot = 0;
  /** Ticks spent in `snapshot` state, to give up on a lost snapshot. */
  snapshotElapsedTicks = 0;
  /** Ticks since the leader last heard anything from this node. */
  inactiveTicks = 0;
  /** In `replicate`: ticks with entries in flight and no acknowledgement (retransmit timer). */
  stalledTicks = 0;
  /** Highest heartbeat read sequence number this node has echoed. */
  readAck = 0;
  /** The in-flight window (used in `replicate`). */
  readonly inflights: Inflights;

  /** Starts in `probe` with `next` = `next`. */
  constructor(next: number, maxInflightMsgs: number, maxInflightBytes: number) {
    this.next = next;
    this.inflights = new Inflights(maxInflightMsgs, maxInflightBytes);
  }

  /** True when the leader must not send entries now. */
  isPaused(): boolean {
    switch (this.state) {
      case "probe":
        return this.probeSent;
      case "replicate":
        return this.inflights.full();
      case "snapshot":
        return true;
    }
  }

  /** Enters `probe`, restarting from the match point (or after a snapshot). */
  becomeProbe(): void {
    if (this.state === "snapshot") {
      this.next = Math.max(this.match + 1, this.pendingSnapshot + 1);
    } else {
      this.next = this.match + 1;
    }
    this.state = "probe";
    this.probeSent = false;
    this.pendingSnapshot = 0;
    this.inflights.reset();
  }

  /** Enters `replicate` from the match point. */
  becomeReplicate(): void {
    this.state = "replicate";
    this.stalledTicks = 0;
    this.next = this.match + 1;
    this.probeSent = false;
    this.pendingSnapshot = 0;
    this.inflights.reset();
  }

  /** Enters `snapshot` for a snapshot at `snapshotIndex`. */
  becomeSnapshot(snapshotIndex: number): void {
    this.state = "snapshot";
    this.pendingSnapshot = snapshotIndex;
    this.snapshotElapsedTicks = 0;
    this.probeSent = false;
    this.inflights.reset();
  }

  /** Records that an append with entries up to `lastIndex` (`bytes` of payload) was sent. */
  sentEntries(lastIndex: number, entryCount: number, bytes: number): void {
    if (this.state === "replicate") {
      if (entryCount > 0) {
        this.next = lastIndex + 1;
        this.inflights.add(lastIndex, bytes);
      }
    } else if (this.state === "probe") {
      this.probeSent = true;
    }
  }

  /** Accepts an acknowledgement of `index`; returns true when `match` grew. */
  maybeUpdate(index: number): boolean {
    let grew = false;
    if (this.match < index) {
      this.match = index;
      this.probeSent = false;
      this.stalledTicks = 0;
      grew = true;
    }
    if (this.next < index + 1) this.next = index + 1;
    return grew;
  }

  /**
   * Handles a rejection of the append at `rejected`, moving `next` back to
   * at most `hintNext`. Returns false when the rejection is stale.
   */
  maybeDecrTo(rejected: number, hintNext: number): boolean {
    if (this.state === "replicate") {
      if (rejected <= this.match) return false;
      this.next = this.match + 1;
      return true;
    }
    if (this.next - 1 !== rejected) return false;
    this.next = Math.max(Math.min(rejected, hintNext), this.match + 1);
    this.probeSent = false;
    return true;
  }
}
