/**
 * A small hand-driven cluster for scenario tests: instant disks, a message
 * queue the test controls, and partitions. Tests read like the Raft paper's
 * figures: set up logs, cut links, tick, deliver, look.
 *
 * @module
 */

import {
  createPrng,
  type Entry,
  type Message,
  type RaftConfig,
  type RaftInitialState,
  RaftNode,
  type Ready,
  type SnapshotMeta,
} from "../../core/mod.ts";

/** One node of a {@linkcode TestCluster} with its durable store and applied entries. */
export interface TestNode {
  /** The Raft node (replaced on restart). */
  raft: RaftNode;
  /** Labels of applied client entries, in order, from index 1 (or the snapshot). */
  applied: string[];
  /** Every Ready this node produced (newest last). */
  readies: Ready[];
  /** Durable snapshot and the applied labels it contains. */
  snapshot: { meta: SnapshotMeta; applied: string[] } | undefined;
}

/** Options for {@linkcode TestCluster}. */
export interface TestClusterOptions {
  /** Per-node durable state; default a fresh cluster of `ids` as voters. */
  readonly initial?: ReadonlyMap<number, RaftInitialState>;
  /** Extra settings for every node. */
  readonly config?: Partial<Omit<RaftConfig, "id" | "groupId" | "randomInt">>;
  /** Seed of the election-timeout PRNG. */
  readonly seed?: number;
}

/** Text payload helper. */
export function text(s: string): Uint8Array {
  return new TextEncoder().encode(s);
}

/** Builds entries from a list of terms, starting at index 1 (payload = "index/term"). */
export function entriesOfTerms(terms: readonly number[]): Entry[] {
  return terms.map((term, i) => ({
    index: i + 1,
    term,
    type: "normal",
    data: text(`${i + 1}/${term}`),
  }));
}

/** A cluster whose network and disks the test drives by hand. */
export class TestCluster {
  /** Nodes by id. */
  readonly nodes = new Map<number, TestNode>();
  /** Messages sent and not yet delivered. */
  queue: Message[] = [];
  /** Directed links that drop messages, as "from>to". */
  readonly blocked = new Set<string>();
  readonly #options: TestClusterOptions;
  readonly #rng;

  /** Creates nodes `ids` (a fresh cluster of those voters unless `initial` says otherwise). */
  constructor(ids: readonly number[], options: TestClusterOptions = {}) {
    this.#options = options;
    this.#rng = createPrng(options.seed ?? 1);
    for (const id of ids) {
      const initial = options.initial?.get(id) ??
        { snapshot: { index: 0, term: 0, conf: { voters: [...ids], learners: [] } } };
      this.nodes.set(id, {
        raft: this.#newRaft(id, initial),
        applied: [],
        readies: [],
        snapshot: undefined,
      });
    }
  }

  /** Adds a brand-new empty node (to join as a learner). */
  addEmptyNode(id: number): TestNode {
    const node: TestNode = {
      raft: this.#newRaft(id, {
        snapshot: { index: 0, term: 0, conf: { voters: [], learners: [] } },
      }),
      applied: [],
      readies: [],
      snapshot: undefined,
    };
    this.nodes.set(id, node);
    return node;
  }

  /** The node `id`'s Raft state machine. */
  raft(id: number): RaftNode {
    const n = this.nodes.get(id);
    if (n === undefined) throw new Error(`Node ${id} does not exist`);
    return n.raft;
  }

  /** The node that believes it leads with the highest term, if any. */
  leader(): RaftNode | undefined {
    let best: RaftNode | undefined;
    for (const n of this.nodes.values()) {
      if (n.raft.role === "leader" && (best === undefined || n.raft.term > best.term)) {
        best = n.raft;
      }
    }
    return best;
  }

  /** Cuts every link to and from `id`. */
  isolate(id: number): void {
    for (const other of this.nodes.keys()) {
      if (other !== id) this.blocked.add(`${id}>${other}`).add(`${other}>${id}`);
    }
  }

  /** Restores every link. */
  heal(): void {
    this.blocked.clear();
  }

  /** Processes every node's Ready (instant disk) and queues their messages. */
  flush(): void {
    let again = true;
    while (again) {
      again = false;
      for (const [id, node] of this.nodes) {
        while (node.raft.hasReady()) {
          again = true;
          const ready = node.raft.ready();
          node.readies.push(ready);
          if (ready.snapshot !== undefined) {
            const leaderSnap = this.#snapshotSource(ready.snapshot);
            node.applied = leaderSnap.slice();
            node.snapshot = { meta: ready.snapshot, applied: leaderSnap.slice() };
          }
          this.queue.push(...ready.messages, ...ready.messagesAfterPersist);
          for (const e of ready.committedEntries) {
            if (e.type === "normal") node.applied.push(new TextDecoder().decode(e.data));
          }
          node.raft.advance();
          void id;
        }
      }
    }
  }

  /** Delivers queued messages (dropping blocked ones) until the cluster is quiet. */
  deliverAll(maxRounds = 1000): void {
    for (let round = 0; round < maxRounds; round++) {
      this.flush();
      if (this.queue.length === 0) return;
      const batch = this.queue;
      this.queue = [];
      for (const m of batch) this.#deliver(m);
    }
    throw new Error(`The cluster did not go quiet within ${maxRounds} rounds`);
  }

  /** Delivers only the queued messages `pick` accepts; keeps the rest queued. */
  deliverSome(pick: (m: Message) => boolean): void {
    this.flush();
    const batch = this.queue;
    this.queue = [];
    for (const m of batch) {
      if (pick(m)) this.#deliver(m);
      else this.queue.push(m);
    }
    this.flush();
  }

  /** Runs `deliverSome(pick)` for `rounds` rounds. */
  deliverRounds(rounds: number, pick: (m: Message) => boolean): void {
    for (let i = 0; i < rounds; i++) this.deliverSome(pick);
  }

  /** Drops every queued message. */
  dropQueued(): void {
    this.flush();
    this.queue = [];
  }

  /** Ticks every node `n` times, delivering all messages after each tick. */
  tick(n: number): void {
    for (let i = 0; i < n; i++) {
      for (const node of this.nodes.values()) node.raft.tick();
      this.deliverAll();
    }
  }

  /** Ticks until some node leads (at most `maxTicks`). */
  tickUntilLeader(maxTicks = 200): RaftNode {
    for (let i = 0; i < maxTicks; i++) {
      const l = this.leader();
      if (l !== undefined) return l;
      this.tick(1);
    }
    throw new Error(`No leader emerged within ${maxTicks} ticks`);
  }

  /** Makes `id` campaign and delivers everything. */
  elect(id: number): RaftNode {
    this.raft(id).campaign();
    this.deliverAll();
    return this.raft(id);
  }

  /** Compacts `id`'s log up to `index` (its applied labels become the snapshot state). */
  compact(id: number, index: number): void {
    const node = this.nodes.get(id)!;
    const count = this.#appliedCount(node, index);
    const meta = node.raft.compact(index);
    node.snapshot = { meta, applied: node.applied.slice(0, count) };
  }

  #appliedCount(node: TestNode, index: number): number {
    let count = node.snapshot?.applied.length ?? 0;
    const from = (node.snapshot?.meta.index ?? 0) + 1;
    for (let i = from; i <= index; i++) if (node.raft.entryAt(i).type === "normal") count++;
    return count;
  }

  #snapshotSource(meta: SnapshotMeta): string[] {
    for (const n of this.nodes.values()) {
      if (n.snapshot?.meta.index === meta.index && n.snapshot.meta.term === meta.term) {
        return n.snapshot.applied;
      }
    }
    throw new Error(`No node holds snapshot ${meta.index}/${meta.term}`);
  }

  #deliver(m: Message): void {
    if (this.blocked.has(`${m.from}>${m.to}`)) return;
    this.nodes.get(m.to)?.raft.step(m);
  }

  #newRaft(id: number, initial: RaftInitialState): RaftNode {
    return new RaftNode({
      id,
      groupId: 1,
      randomInt: (n) => this.#rng.int(n),
      ...this.#options.config,
    }, initial);
  }
}
