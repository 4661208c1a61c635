/**
 * The simulator's safety checker: Election Safety, Log Matching, Leader
 * Completeness, State Machine Safety, monotonic commit and linearizable
 * reads, verified from the outside after every step.
 *
 * @module
 */

import type { Entry, SnapshotMeta } from "../../core/mod.ts";
import { chainDigest, entryDigest } from "./digest.ts";

/** A safety property was broken; the simulator stops and prints the trace. */
export class SafetyViolation extends Error {
  /** Creates the violation with a sentence naming the property and values. */
  constructor(message: string) {
    super(message);
    this.name = "SafetyViolation";
  }
}

function fail(message: string): never {
  throw new SafetyViolation(message);
}

/**
 * A node's log as the checker sees it: the chain digest of every prefix,
 * from `base` (a snapshot) on.
 */
export class ShadowLog {
  /** Index of the snapshot the shadow starts at. */
  base = 0;
  /** Chain digest at `base`. */
  baseChain = 0;
  /** Chain digests of entries `base + 1 ...`. */
  chains: number[] = [];
  /** Terms of entries `base + 1 ...`. */
  terms: number[] = [];

  /** Last index in the shadow. */
  lastIndex(): number {
    return this.base + this.chains.length;
  }

  /** Chain digest at `index`, or undefined when outside the shadow. */
  chainAt(index: number): number | undefined {
    if (index === this.base) return this.baseChain;
    if (index < this.base || index > this.lastIndex()) return undefined;
    return this.chains[index - this.base - 1];
  }
}

/** Global safety bookkeeping for one simulated cluster. */
export class Checker {
  /** Leader of each term. */
  readonly leaderOfTerm = new Map<number, number>();
  /** Chain digest of every (index, term) ever appended anywhere. */
  readonly #logChains = new Map<string, number>();
  /** Digest of the entry first applied at each index. */
  readonly #appliedDigest = new Map<number, number>();
  /** Chain digest of the applied prefix at each index. */
  readonly #appliedChain = new Map<number, number>([[0, 0]]);
  /** Highest index a leader committed, per term (with the chain at it). */
  readonly #committedByTerm = new Map<number, { index: number; chain: number }>();
  /** Highest commit index any node ever reported. */
  maxCommit = 0;
  /** Highest index of an applied client entry (acknowledged proposals). */
  maxAckedIndex = 0;
  /** Client entries applied somewhere (acknowledged). */
  acked = 0;

  /** Election Safety: records that `id` leads `term`. Returns true for a new election. */
  observeLeader(id: number, term: number): boolean {
    const known = this.leaderOfTerm.get(term);
    if (known === undefined) {
      this.leaderOfTerm.set(term, id);
      return true;
    }
    if (known !== id) {
      fail(`Election Safety: nodes ${known} and ${id} are both leaders of term ${term}`);
    }
    return false;
  }

  /** Leader Completeness: a new leader of `term` holds everything committed in earlier terms. */
  checkLeaderCompleteness(id: number, term: number, shadow: ShadowLog): void {
    let best: { index: number; chain: number; term: number } | undefined;
    for (const [t, c] of this.#committedByTerm) {
      if (t < term && (best === undefined || c.index > best.index)) best = { ...c, term: t };
    }
    if (best === undefined || best.index < shadow.base) return;
    const mine = shadow.chainAt(best.index);
    if (mine !== best.chain) {
      fail(
        `Leader Completeness: leader ${id} of term ${term} lacks entry ${best.index} committed in term ${best.term} (its last index is ${shadow.lastIndex()})`,
      );
    }
  }

  /** Records that the leader of `term` committed up to `index`. */
  observeLeaderCommit(term: number, index: number, shadow: ShadowLog): void {
    const prev = this.#committedByTerm.get(term);
    if (prev !== undefined && prev.index >= index) return;
    const chain = shadow.chainAt(index);
    if (chain === undefined) return; // compacted below the shadow: nothing to compare
    this.#committedByTerm.set(term, { index, chain });
  }

  /** Resets `shadow` to a snapshot. */
  installSnapshot(node: number, shadow: ShadowLog, snapshot: SnapshotMeta): void {
    const chain = snapshot.index === 0
      ? 0
      : this.#logChains.get(`${snapshot.index}:${snapshot.term}`);
    if (chain === undefined) {
      fail(
        `Log Matching: node ${node} installed snapshot ${snapshot.index}/${snapshot.term}, an entry no node ever held`,
      );
    }
    shadow.base = snapshot.index;
    shadow.baseChain = chain;
    shadow.chains = [];
    shadow.terms = [];
  }

  /** Log Matching: appends `entries` to `shadow`, checking every (index, term) against all logs. */
  appendEntries(node: number, shadow: ShadowLog, entries: readonly Entry[]): void {
    for (const e of entries) {
      const prev = shadow.chainAt(e.index - 1);
      if (prev === undefined) {
        fail(
          `Log Matching: node ${node} appended entry ${e.index} without holding entry ${
            e.index - 1
          }`,
        );
      }
      const keep = e.index - 1 - shadow.base;
      shadow.chains.length = keep;
      shadow.terms.length = keep;
      const chain = chainDigest(prev, e.index, entryDigest(e));
      const key = `${e.index}:${e.term}`;
      const known = this.#logChains.get(key);
      if (known === undefined) this.#logChains.set(key, chain);
      else if (known !== chain) {
        fail(
          `Log Matching: node ${node} holds entry ${e.index} of term ${e.term} with a different log prefix than another node`,
        );
      }
      shadow.chains.push(chain);
      shadow.terms.push(e.term);
    }
  }

  /**
   * State Machine Safety: node applied `e` after `appliedChain`; returns the
   * new chain. Every node must apply the same entry at each index.
   */
  applyEntry(node: number, appliedIndex: number, appliedChain: number, e: Entry): number {
    if (e.index !== appliedIndex + 1) {
      fail(`State Machine Safety: node ${node} applied entry ${e.index} after ${appliedIndex}`);
    }
    const digest = entryDigest(e);
    const known = this.#appliedDigest.get(e.index);
    if (known === undefined) {
      this.#appliedDigest.set(e.index, digest);
      if (e.type === "normal") {
        this.acked++;
        if (e.index > this.maxAckedIndex) this.maxAckedIndex = e.index;
      }
    } else if (known !== digest) {
      fail(
        `State Machine Safety: node ${node} applied a different entry at index ${e.index} (term ${e.term}) than another node`,
      );
    }
    const chain = chainDigest(appliedChain, e.index, digest);
    const knownChain = this.#appliedChain.get(e.index);
    if (knownChain === undefined) this.#appliedChain.set(e.index, chain);
    else if (knownChain !== chain) {
      fail(
        `State Machine Safety: node ${node} applied state at ${e.index} differs from another node's`,
      );
    }
    return chain;
  }

  /** State Machine Safety for snapshots: the installed state equals the applied state at its index. */
  checkSnapshotState(node: number, index: number, chain: number): void {
    const known = this.#appliedChain.get(index);
    if (known !== chain) {
      fail(
        `State Machine Safety: node ${node} installed a snapshot at ${index} whose state no node applied`,
      );
    }
  }

  /** Monotonic commit within one incarnation of a node. */
  checkCommit(node: number, previous: number, current: number, persisted: number): void {
    if (current < previous) {
      fail(`Commit: node ${node}'s commit index fell from ${previous} to ${current}`);
    }
    if (current > persisted) {
      fail(`Commit: node ${node}'s commit index ${current} passes its durable index ${persisted}`);
    }
    if (current > this.maxCommit) this.maxCommit = current;
  }
}
