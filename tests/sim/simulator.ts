/**
 * The deterministic cluster simulator: real {@linkcode RaftNode}s over a
 * simulated network and disk, all driven by one seeded PRNG. It injects
 * message delay, loss, duplication and reordering, symmetric and asymmetric
 * partitions, crashes that lose unsynced state, slow disks, membership
 * changes, leadership transfers, compaction and client traffic, and checks
 * safety after every step and liveness once the faults stop.
 *
 * @module
 */

import {
  type ConfChange,
  createPrng,
  type Entry,
  type HardState,
  type Message,
  type Prng,
  RaftInvariantError,
  RaftNode,
  type Ready,
  type SnapshotMeta,
  type TestingMutation,
} from "../../core/mod.ts";
import { Checker, SafetyViolation, ShadowLog } from "./checker.ts";
import { formatEntry, formatMessage } from "./format.ts";

/** What to simulate. */
export interface SimOptions {
  /** Seed of the run; equal options replay exactly. */
  readonly seed: number;
  /** Founding voters (3, 5 or 7). */
  readonly nodes: number;
  /** Steps with faults; liveness is checked after them. */
  readonly steps: number;
  /** Steps allowed for recovery once faults stop. Default max(800, 2 * steps). */
  readonly livenessSteps?: number;
  /** Break a rule in every node (mutation testing). */
  readonly mutation?: TestingMutation;
  /** Record a trace of every event. */
  readonly trace?: boolean;
  /** Override some of the fault and workload intensities drawn from the seed. */
  readonly profile?: Partial<Profile>;
}

/** Counters of one or many runs. */
export interface SimStats {
  /** Seeds run. */
  seeds: number;
  /** Steps simulated (fault phase plus recovery). */
  steps: number;
  /** Faults injected (drops, duplicates, crashes, partitions, slow writes, ...). */
  faults: number;
  /** Terms in which a leader was elected. */
  elections: number;
  /** Entries committed (highest commit index, summed over seeds). */
  commits: number;
  /** Client proposals acknowledged committed. */
  acked: number;
  /** Membership changes accepted by a leader. */
  confChanges: number;
  /** Leadership transfers accepted. */
  transfers: number;
  /** Snapshots installed by followers. */
  snapshots: number;
  /** Linearizable reads served. */
  reads: number;
  /** Seeds with a safety or liveness violation. */
  violations: number;
}

/** Outcome of one seed. */
export interface SimResult {
  /** Counters of this run. */
  readonly stats: SimStats;
  /** The violation, when one was found. */
  readonly violation?: { readonly step: number; readonly message: string };
  /** Trace lines (only with `trace: true`). */
  readonly trace: readonly string[];
}

/** Zeroed counters. */
export function emptyStats(): SimStats {
  return {
    seeds: 0,
    steps: 0,
    faults: 0,
    elections: 0,
    commits: 0,
    acked: 0,
    confChanges: 0,
    transfers: 0,
    snapshots: 0,
    reads: 0,
    violations: 0,
  };
}

/** Adds `b` into `a`. */
export function addStats(a: SimStats, b: SimStats): void {
  for (const k of Object.keys(a) as (keyof SimStats)[]) a[k] += b[k];
}

/** Runs one seed and returns its stats and (if any) the first violation. */
export function runSimulation(options: SimOptions): SimResult {
  return new Simulation(options).run();
}

const GROUP_ID = 1;
const ELECTION_TIMEOUT_TICKS = 10;
const HEARTBEAT_INTERVAL_TICKS = 2;
const MAX_READIES_PER_STEP = 16;

interface AppState {
  index: number;
  chain: number;
}

interface Durable {
  hardState: HardState;
  snapshot: SnapshotMeta;
  snapshotState: AppState;
  entries: Entry[];
}

interface SimNode {
  readonly id: number;
  raft: RaftNode | undefined;
  durable: Durable;
  app: AppState;
  pendingWrite: { ready: Ready; completeAt: number } | undefined;
  /** Snapshot bytes received (by snapshot index), as cluster/ would stream them. */
  incomingSnapshots: Map<number, AppState>;
  shadow: ShadowLog;
  lastCommit: number;
  leaderTerm: number;
  leaderCommitChecked: number;
  crashedAt: number;
}

interface Envelope {
  readonly message: Message;
  readonly snapshotState: AppState | undefined;
}

/** Per-seed fault and workload intensities, drawn from the seed. */
export interface Profile {
  /** Probability a message is dropped. */
  lossRate: number;
  /** Probability a message is delivered twice. */
  duplicateRate: number;
  /** Normal delivery delay is 1 to this many ticks. */
  maxDelayTicks: number;
  /** Messages due in one step arrive shuffled (else per-link FIFO, like TCP). */
  reorder: boolean;
  /** Probability a message is delayed by up to 4 election timeouts. */
  longDelayRate: number;
  /** A Ready's write completes 0 to this many ticks late. */
  maxDiskDelayTicks: number;
  /** Probability per step that a live node crashes. */
  crashRate: number;
  /** Probability per step of a new partition. */
  partitionRate: number;
  /** Probability per step that a client proposes. */
  proposalRate: number;
  /** Probability per step of a membership change request. */
  confChangeRate: number;
  /** Probability per step of a leadership transfer request. */
  transferRate: number;
  /** Probability per step of a linearizable read. */
  readRate: number;
  /** Nodes compact their log once this many entries past the snapshot are applied twice over. */
  compactEveryEntries: number;
  /** The core's `maxSizePerMsgBytes` (1 = one entry per message). */
  maxSizePerMsgBytes: number;
  /** The core's `maxInflightMsgs`. */
  maxInflightMsgs: number;
  /** The core's `leaseReads`. */
  leaseReads: boolean;
}

/**
 * Election storms: frequent short partitions and crashes, one entry per
 * message, long delays. This is where logs of many terms diverge (the Raft
 * paper's Figure 8), so a quarter of the seeds run it.
 */
export const STORM_PROFILE: Partial<Profile> = {
  maxSizePerMsgBytes: 1,
  partitionRate: 0.1,
  crashRate: 0.03,
  longDelayRate: 0.05,
};

class Simulation {
  readonly #options: SimOptions;
  readonly #rng: Prng;
  readonly #checker = new Checker();
  readonly #stats = emptyStats();
  readonly #trace: string[] = [];
  readonly #tracing: boolean;
  readonly #nodes = new Map<number, SimNode>();
  readonly #inFlight = new Map<number, Envelope[]>();
  readonly #blocked = new Set<string>();
  readonly #spareIds: number[] = [];
  readonly #removed = new Set<number>();
  readonly #pendingReads = new Map<string, number>();
  readonly #linkClock = new Map<string, number>();
  #profile: Profile;
  #now = 0;
  #chaos = true;
  #nextPayload = 1;
  #nextRead = 1;

  constructor(options: SimOptions) {
    this.#options = options;
    this.#rng = createPrng(options.seed);
    this.#tracing = options.trace ?? false;
    this.#options = options;
    this.#profile = this.#drawProfile();
    const voters: number[] = [];
    for (let id = 1; id <= options.nodes; id++) voters.push(id);
    for (let id = options.nodes + 1; id <= options.nodes + 2; id++) this.#spareIds.push(id);
    for (const id of voters) this.#startNode(id, { voters, learners: [] });
  }

  run(): SimResult {
    const { steps } = this.#options;
    const livenessSteps = this.#options.livenessSteps ?? Math.max(800, 2 * steps);
    let violation: { step: number; message: string } | undefined;
    try {
      for (; this.#now < steps; this.#now++) this.#step();
      this.#heal();
      let live = false;
      for (let i = 0; i < livenessSteps && !live; i++, this.#now++) {
        this.#step();
        live = this.#converged() === undefined;
      }
      if (!live) {
        throw new SafetyViolation(
          `Liveness: ${this.#converged()} after ${livenessSteps} fault-free steps`,
        );
      }
    } catch (e) {
      if (!(e instanceof SafetyViolation || e instanceof RaftInvariantError)) throw e;
      violation = { step: this.#now, message: `${e.name}: ${e.message}` };
      this.#log(`VIOLATION ${violation.message}`);
      this.#stats.violations = 1;
    }
    this.#stats.seeds = 1;
    this.#stats.steps = this.#now;
    this.#stats.elections = this.#checker.leaderOfTerm.size;
    this.#stats.commits = this.#checker.maxCommit;
    this.#stats.acked = this.#checker.acked;
    return { stats: this.#stats, violation, trace: this.#trace };
  }

  // ------------------------------------------------------------------ setup

  #drawProfile(): Profile {
    const r = this.#rng;
    const pick = <T>(xs: readonly T[]): T => xs[r.int(xs.length)];
    const profile: Profile = {
      lossRate: pick([0, 0.01, 0.05, 0.15]),
      duplicateRate: pick([0, 0.01, 0.05]),
      maxDelayTicks: pick([1, 2, 4]),
      reorder: r.chance(0.5),
      longDelayRate: pick([0, 0.01, 0.05]),
      maxDiskDelayTicks: pick([0, 1, 3, 8]),
      crashRate: pick([0, 0.002, 0.01, 0.03]),
      partitionRate: pick([0, 0.005, 0.02, 0.06]),
      proposalRate: pick([0.1, 0.4, 0.9]),
      confChangeRate: pick([0, 0.005, 0.02]),
      transferRate: pick([0, 0.003, 0.01]),
      readRate: pick([0, 0.05, 0.3]),
      compactEveryEntries: pick([8, 32, 1_000_000]),
      maxSizePerMsgBytes: pick([1, 100, 1 << 20]),
      maxInflightMsgs: pick([1, 4, 256]),
      leaseReads: r.chance(0.5),
    };
    if (r.chance(0.25)) Object.assign(profile, STORM_PROFILE);
    Object.assign(profile, this.#options.profile);
    // One entry per message and one message in flight cannot keep up with clients.
    if (profile.maxSizePerMsgBytes === 1 && profile.maxInflightMsgs === 1) {
      profile.maxInflightMsgs = 4;
    }
    return profile;
  }

  #config(id: number) {
    return {
      id,
      groupId: GROUP_ID,
      randomInt: (n: number) => this.#rng.int(n),
      electionTimeoutTicks: ELECTION_TIMEOUT_TICKS,
      heartbeatIntervalTicks: HEARTBEAT_INTERVAL_TICKS,
      maxSizePerMsgBytes: this.#profile.maxSizePerMsgBytes,
      maxInflightMsgs: this.#profile.maxInflightMsgs,
      leaseReads: this.#profile.leaseReads,
      testingMutation: this.#options.mutation,
    };
  }

  #startNode(id: number, conf: { voters: number[]; learners: number[] }): void {
    const snapshot: SnapshotMeta = { index: 0, term: 0, conf };
    const node: SimNode = {
      id,
      raft: undefined,
      durable: {
        hardState: { term: 0, vote: 0, commit: 0 },
        snapshot,
        snapshotState: { index: 0, chain: 0 },
        entries: [],
      },
      app: { index: 0, chain: 0 },
      pendingWrite: undefined,
      incomingSnapshots: new Map(),
      shadow: new ShadowLog(),
      lastCommit: 0,
      leaderTerm: 0,
      leaderCommitChecked: 0,
      crashedAt: -1,
    };
    this.#nodes.set(id, node);
    this.#boot(node);
    this.#log(`start ${id} voters=${conf.voters} learners=${conf.learners}`);
  }

  /** (Re)creates the RaftNode from durable state: everything else is lost. */
  #boot(node: SimNode): void {
    const d = node.durable;
    node.raft = new RaftNode(this.#config(node.id), {
      hardState: d.hardState,
      snapshot: d.snapshot,
      entries: d.entries.slice(),
      applied: d.snapshot.index,
    });
    node.app = { ...d.snapshotState };
    node.pendingWrite = undefined;
    node.incomingSnapshots = new Map();
    node.shadow = new ShadowLog();
    this.#checker.installSnapshot(node.id, node.shadow, d.snapshot);
    this.#checker.appendEntries(node.id, node.shadow, d.entries);
    node.lastCommit = node.raft.commitIndex;
    node.leaderTerm = 0;
    node.crashedAt = -1;
  }

  // ------------------------------------------------------------------ steps

  #step(): void {
    if (this.#chaos) {
      this.#injectFaults();
      this.#clientOps();
    }
    this.#deliver();
    this.#completeWrites();
    for (const node of this.#nodes.values()) node.raft?.tick();
    for (const node of this.#nodes.values()) this.#drainReadies(node);
    this.#checkStep();
  }

  #deliver(): void {
    const due = this.#inFlight.get(this.#now);
    if (due === undefined) return;
    this.#inFlight.delete(this.#now);
    // Shuffle: on a reordering network, messages due in the same step arrive in any order.
    const shuffle = this.#chaos && this.#profile.reorder;
    for (let i = shuffle ? due.length - 1 : 0; i > 0; i--) {
      const j = this.#rng.int(i + 1);
      [due[i], due[j]] = [due[j], due[i]];
    }
    for (const env of due) {
      const m = env.message;
      const node = this.#nodes.get(m.to);
      if (node?.raft === undefined) continue;
      if (m.type === "snap" && env.snapshotState !== undefined) {
        node.incomingSnapshots.set(m.snapshot.index, env.snapshotState);
        this.#nodes.get(m.from)?.raft?.reportSnapshot(m.to, true);
      }
      if (this.#tracing) this.#log(`recv ${formatMessage(m)}`);
      node.raft.step(m);
    }
  }

  #send(m: Message): void {
    const p = this.#profile;
    const from = this.#nodes.get(m.from)!;
    this.#checkDurableBeforeSend(from, m);
    if (this.#blocked.has(`${m.from}>${m.to}`) || (this.#chaos && this.#rng.chance(p.lossRate))) {
      this.#stats.faults++;
      if (this.#tracing) this.#log(`drop ${formatMessage(m)}`);
      // The transport notices a failed snapshot stream.
      if (m.type === "snap" && this.#rng.chance(0.5)) from.raft?.reportSnapshot(m.to, false);
      return;
    }
    const env: Envelope = {
      message: m,
      snapshotState: m.type === "snap" ? { ...from.durable.snapshotState } : undefined,
    };
    if (m.type === "snap" && from.durable.snapshot.index !== m.snapshot.index) {
      throw new SafetyViolation(
        `Snapshot: node ${m.from} sent snapshot ${m.snapshot.index} but holds ${from.durable.snapshot.index}`,
      );
    }
    let copies = 1;
    if (this.#chaos && this.#rng.chance(p.duplicateRate)) {
      copies = 2;
      this.#stats.faults++;
    }
    for (let c = 0; c < copies; c++) {
      let at = this.#now + 1;
      if (this.#chaos) {
        at += this.#rng.int(p.maxDelayTicks);
        if (this.#rng.chance(p.longDelayRate)) {
          at += 1 + this.#rng.int(4 * ELECTION_TIMEOUT_TICKS);
          this.#stats.faults++;
        }
        if (!p.reorder) {
          // A TCP-like link: never overtake an earlier message on the same link.
          const link = `${m.from}>${m.to}`;
          at = Math.max(at, this.#linkClock.get(link) ?? 0);
          this.#linkClock.set(link, at);
        }
      }
      let bucket = this.#inFlight.get(at);
      if (bucket === undefined) this.#inFlight.set(at, bucket = []);
      bucket.push(env);
    }
  }

  #drainReadies(node: SimNode): void {
    for (let i = 0; i < MAX_READIES_PER_STEP; i++) {
      const raft = node.raft;
      if (raft === undefined || node.pendingWrite !== undefined || !raft.hasReady()) return;
      const ready = raft.ready();
      if (ready.snapshot !== undefined) {
        this.#checker.installSnapshot(node.id, node.shadow, ready.snapshot);
      }
      this.#checker.appendEntries(node.id, node.shadow, ready.entries);
      if (this.#tracing && ready.entries.length > 0) {
        this.#log(`${node.id} append ${ready.entries.map(formatEntry).join(" ")}`);
      }
      for (const m of ready.messages) this.#send(m);
      const needsDisk = ready.entries.length > 0 || ready.hardState !== undefined ||
        ready.snapshot !== undefined;
      let delay = 0;
      if (needsDisk && this.#chaos && this.#profile.maxDiskDelayTicks > 0) {
        delay = this.#rng.int(this.#profile.maxDiskDelayTicks + 1);
        if (delay > 0) this.#stats.faults++;
      }
      if (delay > 0) {
        node.pendingWrite = { ready, completeAt: this.#now + delay };
        return;
      }
      this.#finishWrite(node, ready);
    }
  }

  #completeWrites(): void {
    for (const node of this.#nodes.values()) {
      const w = node.pendingWrite;
      if (w !== undefined && w.completeAt <= this.#now) {
        node.pendingWrite = undefined;
        this.#finishWrite(node, w.ready);
      }
    }
  }

  /** The Ready's write is durable: send what waited for it, apply, advance. */
  #finishWrite(node: SimNode, ready: Ready): void {
    const d = node.durable;
    const raft = node.raft!;
    if (ready.snapshot !== undefined) {
      const state = node.incomingSnapshots.get(ready.snapshot.index);
      if (state === undefined) {
        throw new SafetyViolation(
          `Snapshot: node ${node.id} must install snapshot ${ready.snapshot.index} it never received`,
        );
      }
      this.#checker.checkSnapshotState(node.id, state.index, state.chain);
      d.snapshot = ready.snapshot;
      d.snapshotState = { ...state };
      d.entries = [];
      node.app = { ...state };
      this.#stats.snapshots++;
      if (this.#tracing) this.#log(`${node.id} install snapshot ${state.index}`);
    }
    if (ready.entries.length > 0) {
      const first = ready.entries[0].index;
      const keep = first - d.snapshot.index - 1;
      if (keep < 0 || keep > d.entries.length) {
        throw new SafetyViolation(
          `Storage: node ${node.id} was asked to write entry ${first} with durable entries ${
            d.snapshot.index + 1
          }..${d.snapshot.index + d.entries.length}`,
        );
      }
      d.entries.length = keep;
      for (const e of ready.entries) d.entries.push(e);
    }
    if (ready.hardState !== undefined) d.hardState = ready.hardState;
    for (const m of ready.messagesAfterPersist) this.#send(m);
    for (const e of ready.committedEntries) {
      node.app.chain = this.#checker.applyEntry(node.id, node.app.index, node.app.chain, e);
      node.app.index = e.index;
    }
    for (const rs of ready.readStates) {
      const key = new TextDecoder().decode(rs.context);
      const minIndex = this.#pendingReads.get(key);
      if (minIndex !== undefined) {
        if (rs.index < minIndex) {
          throw new SafetyViolation(
            `Linearizability: read ${key} got index ${rs.index}, below ${minIndex} committed before it was issued`,
          );
        }
        this.#pendingReads.delete(key);
        this.#stats.reads++;
      }
    }
    raft.advance();
    this.#maybeCompact(node);
  }

  #maybeCompact(node: SimNode): void {
    const raft = node.raft!;
    const every = this.#profile.compactEveryEntries;
    if (node.app.index - raft.snapshot.index < 2 * every) return;
    const index = node.app.index - every;
    // The application's state at `index`: the applied chain is the log chain there.
    const chain = node.shadow.chainAt(index);
    if (chain === undefined) return;
    const snapshot = raft.compact(index);
    const d = node.durable;
    d.entries = d.entries.slice(index - d.snapshot.index);
    d.snapshot = snapshot;
    d.snapshotState = { index, chain };
    if (this.#tracing) this.#log(`${node.id} compact to ${index}`);
  }

  // ------------------------------------------------------------------ faults

  #injectFaults(): void {
    const p = this.#profile;
    const r = this.#rng;
    if (r.chance(p.crashRate)) {
      const node = this.#randomNode((n) => n.raft !== undefined);
      if (node !== undefined) {
        node.raft = undefined;
        node.pendingWrite = undefined; // the unsynced write is lost
        node.crashedAt = this.#now;
        this.#stats.faults++;
        this.#log(`crash ${node.id}`);
      }
    }
    for (const node of this.#nodes.values()) {
      if (node.raft === undefined && this.#now - node.crashedAt > 10 && r.chance(0.05)) {
        this.#boot(node);
        this.#log(`restart ${node.id} term=${node.raft!.term} last=${node.raft!.lastIndex}`);
      }
    }
    if (r.chance(p.partitionRate)) {
      this.#stats.faults++;
      this.#partition();
    } else if (this.#blocked.size > 0 && r.chance(0.04)) {
      this.#blocked.clear();
      this.#log("heal partitions");
    }
  }

  #partition(): void {
    const ids = [...this.#nodes.keys()];
    const r = this.#rng;
    const kind = r.int(3);
    this.#blocked.clear();
    if (kind === 0) {
      // Symmetric split into two sides.
      const side = new Set(ids.filter(() => r.chance(0.5)));
      for (const a of ids) {
        for (const b of ids) if (side.has(a) !== side.has(b)) this.#blocked.add(`${a}>${b}`);
      }
      this.#log(`partition {${[...side]}} | {${ids.filter((i) => !side.has(i))}}`);
    } else if (kind === 1) {
      // Isolate one node.
      const x = ids[r.int(ids.length)];
      for (const b of ids) if (b !== x) this.#blocked.add(`${x}>${b}`).add(`${b}>${x}`);
      this.#log(`isolate ${x}`);
    } else {
      // Asymmetric: some directed links fail.
      for (const a of ids) {
        for (const b of ids) if (a !== b && r.chance(0.25)) this.#blocked.add(`${a}>${b}`);
      }
      this.#log(`asymmetric partition ${[...this.#blocked].join(",")}`);
    }
  }

  #heal(): void {
    this.#chaos = false;
    this.#blocked.clear();
    for (const node of this.#nodes.values()) {
      if (node.raft === undefined) {
        this.#boot(node);
        this.#log(`restart ${node.id}`);
      }
    }
    this.#log("faults stop");
  }

  // ------------------------------------------------------------------ clients

  #clientOps(): void {
    const p = this.#profile;
    const r = this.#rng;
    if (r.chance(p.proposalRate)) {
      const node = this.#randomNode((n) => n.raft?.role === "leader");
      if (node !== undefined) {
        const data = new Uint8Array(8);
        new DataView(data.buffer).setUint32(0, this.#nextPayload++, true);
        new DataView(data.buffer).setUint32(4, r.int(0xffff_ffff), true);
        const res = node.raft!.propose(data);
        if (this.#tracing && res.accepted) {
          this.#log(`${node.id} propose p${this.#nextPayload - 1} at ${res.index}`);
        }
      }
    }
    if (r.chance(p.readRate)) {
      // Half the reads go to a node that believes it leads: stale leaders are the risk.
      const leaderOnly = r.chance(0.5);
      const node = this.#randomNode((n) =>
        n.raft !== undefined && (!leaderOnly || n.raft.role === "leader")
      );
      if (node !== undefined) {
        const key = `r${this.#nextRead++}`;
        const res = node.raft!.readIndex(new TextEncoder().encode(key));
        if (res.accepted) this.#pendingReads.set(key, this.#checker.maxCommit);
      }
    }
    if (r.chance(p.confChangeRate)) this.#confChange();
    if (r.chance(p.transferRate)) {
      const leader = this.#randomNode((n) => n.raft?.role === "leader");
      if (leader !== undefined) {
        const voters = leader.raft!.conf.voters.filter((v) => v !== leader.id);
        if (voters.length > 0) {
          const to = voters[r.int(voters.length)];
          if (leader.raft!.transferLeadership(to).accepted) {
            this.#stats.transfers++;
            this.#log(`${leader.id} transfer leadership to ${to}`);
          }
        }
      }
    }
  }

  #confChange(): void {
    const r = this.#rng;
    const leader = this.#randomNode((n) => n.raft?.role === "leader");
    if (leader === undefined) return;
    const conf = leader.raft!.conf;
    const options: ConfChange[] = [];
    if (this.#spareIds.length > 0) options.push({ type: "addLearner", nodeId: this.#spareIds[0] });
    for (const l of conf.learners) {
      options.push({ type: "promoteLearner", nodeId: l });
      options.push({ type: "removeNode", nodeId: l });
    }
    if (conf.voters.length > 3) {
      for (const v of conf.voters) options.push({ type: "removeNode", nodeId: v });
    }
    if (options.length === 0) return;
    const change = options[r.int(options.length)];
    const res = leader.raft!.proposeConfChange(change);
    if (!res.accepted) {
      if (this.#tracing) {
        this.#log(`${leader.id} refuses ${change.type} ${change.nodeId}: ${res.reason}`);
      }
      return;
    }
    this.#stats.confChanges++;
    this.#log(`${leader.id} proposes ${change.type} ${change.nodeId} at ${res.index}`);
    if (change.type === "addLearner") {
      this.#spareIds.shift();
      this.#startNode(change.nodeId, { voters: [], learners: [] });
    }
    if (change.type === "removeNode") this.#removed.add(change.nodeId);
  }

  // ------------------------------------------------------------------ checks

  #checkStep(): void {
    for (const node of this.#nodes.values()) {
      const raft = node.raft;
      if (raft === undefined) continue;
      this.#checker.checkCommit(node.id, node.lastCommit, raft.commitIndex, raft.persistedIndex);
      node.lastCommit = raft.commitIndex;
      if (raft.role === "leader") {
        if (this.#checker.observeLeader(node.id, raft.term)) {
          this.#log(`${node.id} leads term ${raft.term} (last ${raft.lastIndex})`);
        }
        if (node.leaderTerm !== raft.term) {
          node.leaderTerm = raft.term;
          node.leaderCommitChecked = raft.commitIndex;
          this.#checker.checkLeaderCompleteness(node.id, raft.term, node.shadow);
        }
        if (raft.commitIndex > node.leaderCommitChecked) {
          node.leaderCommitChecked = raft.commitIndex;
          this.#checkCommitDurable(node);
        }
        this.#checker.observeLeaderCommit(raft.term, raft.commitIndex, node.shadow);
      }
    }
  }

  /**
   * The Ready contract, checked from outside: an acknowledgement or a vote
   * leaves a node only once what it promises is on that node's disk.
   */
  #checkDurableBeforeSend(from: SimNode, m: Message): void {
    const d = from.durable;
    if (m.type === "appResp" && !m.reject) {
      const durableLast = d.snapshot.index + d.entries.length;
      if (durableLast < m.index || d.hardState.term < m.term) {
        throw new SafetyViolation(
          `Durability: node ${m.from} acknowledged index ${m.index} in term ${m.term} with only ${durableLast} entries and term ${d.hardState.term} on disk`,
        );
      }
    }
    if (m.type === "voteResp" && !m.reject) {
      // A later term on disk also binds: the node can never vote in m.term again.
      const bound = d.hardState.term > m.term ||
        (d.hardState.term === m.term && d.hardState.vote === m.to);
      if (!bound) {
        throw new SafetyViolation(
          `Durability: node ${m.from} granted its term-${m.term} vote to ${m.to} with term ${d.hardState.term} vote ${d.hardState.vote} on disk`,
        );
      }
    }
  }

  /** What a leader just committed is on the disks of a majority of its voters. */
  #checkCommitDurable(leader: SimNode): void {
    const raft = leader.raft!;
    const index = raft.commitIndex;
    const term = raft.termAt(index);
    if (term === undefined) return; // compacted at once: checked when it was committed
    const voters = raft.conf.voters;
    let holders = 0;
    for (const id of voters) {
      const d = this.#nodes.get(id)?.durable;
      if (d === undefined) continue;
      // Inside a snapshot means committed state; else the entry itself must be on disk.
      const held = index <= d.snapshot.index ||
        d.entries[index - d.snapshot.index - 1]?.term === term;
      if (held) holders++;
    }
    if (holders < Math.floor(voters.length / 2) + 1) {
      throw new SafetyViolation(
        `Durability: leader ${leader.id} committed ${index}/${term} held durably by only ${holders} of ${voters.length} voters`,
      );
    }
  }

  /** Undefined when the cluster has converged, else what is still missing. */
  #converged(): string | undefined {
    let leader: SimNode | undefined;
    for (const n of this.#nodes.values()) {
      if (n.raft?.role === "leader" && (leader === undefined || n.raft.term > leader.raft!.term)) {
        leader = n;
      }
    }
    if (leader === undefined) return "no leader";
    const raft = leader.raft!;
    if (raft.termAt(raft.commitIndex) !== raft.term) {
      return `leader ${leader.id} has not committed in its term`;
    }
    if (raft.commitIndex !== raft.lastIndex) {
      return `leader ${leader.id} commit ${raft.commitIndex} is behind its last index ${raft.lastIndex}`;
    }
    if (this.#checker.maxAckedIndex > raft.commitIndex) {
      return `acknowledged entry ${this.#checker.maxAckedIndex} is past leader ${leader.id}'s commit ${raft.commitIndex}`;
    }
    const conf = raft.conf;
    for (const id of [...conf.voters, ...conf.learners]) {
      const n = this.#nodes.get(id);
      if (n?.raft === undefined) return `member ${id} is down`;
      if (n.app.index < raft.commitIndex) {
        return `member ${id} applied ${n.app.index} of ${raft.commitIndex}`;
      }
    }
    return undefined;
  }

  // ------------------------------------------------------------------ helpers

  #randomNode(filter: (n: SimNode) => boolean): SimNode | undefined {
    const xs = [...this.#nodes.values()].filter(filter);
    return xs.length === 0 ? undefined : xs[this.#rng.int(xs.length)];
  }

  #log(line: string): void {
    if (this.#tracing) this.#trace.push(`${this.#now} ${line}`);
  }
}
