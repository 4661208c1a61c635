/**
 * The whole-node simulator: the real {@linkcode NodeDriver} (Raft core,
 * SQLite store in memory, state machine, ship master, release tracker) and
 * the real runtime protocol logic ({@linkcode RuntimeHub}) of every node,
 * under one seeded PRNG, with a simulated clock and network, and a runtime
 * ({@linkcode RuntimeModel}) that follows docs/runtime-protocol.md to the
 * letter. Faults: message loss, duplication, delay and reordering;
 * partitions (one node isolated, or a minority/majority split); crashes that
 * kill a node as kill -9 does (what SQLite committed survives; memory, the
 * commit-only hard state and connections do not) and restart it later;
 * runtime connections dropped. Meanwhile an admin client writes epoch images
 * (`imageChunk`, `imageDone`) through whichever node is master, as
 * `seguro ship import` does. Nodes keep a log tail of a few entries (or
 * all), so followers behind it catch up by snapshot streaming, and in half
 * the seeds a new node joins mid-run (a learner, promoted once caught up)
 * and gets the state by snapshot under the same faults. {@linkcode ReleaseChecker} checks after every
 * step; once the faults stop, the cluster must recover and release again,
 * and every node must hold the same images.
 *
 * One seed replays exactly: nothing here reads a clock or `Math.random`.
 * @module
 */

import { createPrng, type Prng, RaftInvariantError } from "../../core/mod.ts";
import { type CompactionPolicy, NodeDriver, type NodeMutation } from "../../cluster/driver.ts";
import { isStreamMessage, type PeerMessage } from "../../cluster/snapshot_stream.ts";
import { Store } from "../../cluster/store.ts";
import { encodeAddress, encodeCommand } from "../../cluster/machine.ts";
import { sha256 } from "../../cluster/images.ts";
import { sameBytes } from "../../cluster/codec.ts";
import { runtimeNodeOf } from "../../cluster/runtime_backend.ts";
import type { Loss } from "../../cluster/release.ts";
import { RuntimeHub, type RuntimeSession } from "../../vere/runtime_hub.ts";
import type { NodeToRuntimeMessage, RuntimeToNodeMessage } from "../../vere/runtime_protocol.ts";
import { type ModelAction, RuntimeModel } from "./runtime_model.ts";
import { type AppliedLog, PromiseViolation, ReleaseChecker } from "./release_checker.ts";

/** What to simulate. */
export interface NodeSimOptions {
  /** Seed; equal options replay exactly. */
  readonly seed: number;
  /** Steps with faults (one step is one tick). */
  readonly steps: number;
  /** Voters (3 or 5); default 3. */
  readonly nodes?: number;
  /** The ship's optimism: "quorum" (default) or a replica count. */
  readonly optimism?: "quorum" | number;
  /** Break the node on purpose (mutation test). */
  readonly mutation?: NodeMutation;
  /** Plans in flight the runtime keeps (default from the seed: 4 to 32). */
  readonly window?: number;
  /** Record a trace. */
  readonly trace?: boolean;
}

/** Counters of one or many runs. */
export interface NodeSimStats {
  /** Seeds run. */
  seeds: number;
  /** Steps simulated. */
  steps: number;
  /** Events the runtime released. */
  released: number;
  /** Plans the runtime sent. */
  plans: number;
  /** Times the runtime re-synced. */
  resyncs: number;
  /** Node crashes. */
  crashes: number;
  /** Partitions begun. */
  partitions: number;
  /** Times a node became master. */
  masters: number;
  /** Losses reported (only below a quorum). */
  losses: number;
  /** Complete images every node holds at the end. */
  images: number;
  /** Snapshots installed by followers behind the compacted log. */
  snapshots: number;
  /** Nodes that joined mid-run and became voters. */
  joins: number;
  /** Seeds with a violation. */
  violations: number;
}

/** Outcome of one seed. */
export interface NodeSimResult {
  /** Counters. */
  readonly stats: NodeSimStats;
  /** The violation, if any. */
  readonly violation?: { readonly step: number; readonly message: string };
  /** Trace lines (with `trace`). */
  readonly trace: readonly string[];
}

/** Empty counters. */
export function emptyNodeStats(): NodeSimStats {
  return {
    seeds: 0,
    steps: 0,
    released: 0,
    plans: 0,
    resyncs: 0,
    crashes: 0,
    partitions: 0,
    masters: 0,
    losses: 0,
    images: 0,
    snapshots: 0,
    joins: 0,
    violations: 0,
  };
}

/** Adds `b` into `a`. */
export function addNodeStats(a: NodeSimStats, b: NodeSimStats): void {
  for (const k of Object.keys(a) as (keyof NodeSimStats)[]) a[k] += b[k];
}

const SHIP = 0n;
const ELECTION_TICKS = 10;
const CLUSTER_ID = "5e".repeat(16);

interface Slot {
  id: number;
  store: Store;
  driver: NodeDriver | undefined;
  hub: RuntimeHub | undefined;
  restartAt: number;
  /** Ticks this node's clock skips now and then (clock drift). */
  drift: number;
  /** It applied entries since the checker last read it. */
  dirty: boolean;
}

interface InFlightMessage {
  at: number;
  to: number;
  m: PeerMessage;
}

interface RuntimeLink {
  node: number;
  session: RuntimeSession;
  toNode: { at: number; msg: RuntimeToNodeMessage }[];
  toRuntime: { at: number; msg: NodeToRuntimeMessage }[];
}

/** Runs one seed. */
export function runNodeSimulation(options: NodeSimOptions): NodeSimResult {
  return new NodeSim(options).run();
}

class NodeSim {
  readonly #o: NodeSimOptions;
  readonly #prng: Prng;
  readonly #slots = new Map<number, Slot>();
  readonly #trace: string[] = [];
  readonly #stats = emptyNodeStats();
  readonly #checker: ReleaseChecker;
  readonly #model: RuntimeModel;
  #now = 0;
  #net: InFlightMessage[] = [];
  /** Nodes in the same group reach each other; undefined: no partition. */
  #groups: Map<number, number> | undefined;
  #healAt = 0;
  #link: RuntimeLink | undefined;
  #connectAt = 0;
  #connectTo = "";
  #faults = true;
  /** The admin client's image import: the epoch it writes, and its chunks' sizes. */
  #image = { epoch: 1, chunks: [] as number[] };
  readonly #p: {
    loss: number;
    dup: number;
    maxDelay: number;
    crash: number;
    partition: number;
    dropRuntime: number;
  };
  /** How much log each node keeps: from a few entries (snapshots all the time) to all. */
  readonly #compaction: CompactionPolicy;
  /** Small chunks stream a ship's events as many ranges, several in flight. */
  readonly #snapshotChunkBytes: number;
  /** A node that joins mid-run: its id and the step it starts at. */
  readonly #joiner: { readonly id: number; readonly at: number } | undefined;

  constructor(o: NodeSimOptions) {
    this.#o = o;
    this.#prng = createPrng(o.seed);
    const r = this.#prng;
    // Fault intensities drawn from the seed, so the seed budget covers calm and stormy runs.
    this.#p = {
      loss: [0, 0.01, 0.05, 0.15][r.int(4)],
      dup: [0, 0.01, 0.05][r.int(3)],
      maxDelay: 1 + r.int(4),
      crash: [0.002, 0.01, 0.03][r.int(3)],
      partition: [0.002, 0.01, 0.03][r.int(3)],
      dropRuntime: [0, 0.005, 0.02][r.int(3)],
    };
    this.#compaction = [
      { keepEntries: 2, keepBytes: 1 << 20 },
      { keepEntries: 8, keepBytes: 4096 },
      { keepEntries: 30, keepBytes: 1 << 20 },
      { keepEntries: 1 << 30, keepBytes: 1 << 30 },
    ][r.int(4)];
    this.#snapshotChunkBytes = [1 << 20, 1024, 4096][r.int(3)];
    const n0 = o.nodes ?? 3;
    this.#joiner = r.chance(0.5)
      ? { id: n0 + 1, at: 20 + r.int(Math.max(1, o.steps >> 1)) }
      : undefined;
    const quorum = (o.optimism ?? "quorum") === "quorum";
    this.#checker = new ReleaseChecker(quorum);
    this.#model = new RuntimeModel(
      SHIP,
      createPrng(o.seed ^ 0x5eed),
      this.#checker,
      o.window ?? 4 << r.int(4),
    );
    const voters = Array.from({ length: n0 }, (_, i) => i + 1);
    for (const id of voters) this.#addSlot(id, voters);
  }

  /**
   * A node with a fresh store: `voters` the founding members (none for a
   * joiner), `known` the members whose addresses it starts with (as `seguro
   * join` hands them over).
   */
  #addSlot(id: number, voters: number[], known = voters): void {
    const store = Store.inMemory(`sim-node-${id}`, {
      identity: { clusterId: CLUSTER_ID, nodeId: id, groupId: 1 },
      secret: new Uint8Array(32).fill(id),
      conf: { voters, learners: [] },
      addresses: new Map(known.map((v) => [v, address(v)])),
    }, { manualFlush: true });
    const slot: Slot = {
      id,
      store,
      driver: undefined,
      hub: undefined,
      restartAt: 0,
      drift: this.#prng.chance(0.3) ? 5 + this.#prng.int(20) : 0,
      dirty: true,
    };
    this.#slots.set(id, slot);
    this.#start(slot);
  }

  /**
   * The joiner: created at its step; then whichever node leads adds it as a
   * learner and promotes it once it has caught up (refused, or lost with
   * leadership: tried again later), as `seguro join` and the leader do.
   */
  #join(): void {
    const j = this.#joiner;
    if (j === undefined || this.#now < j.at) return;
    if (!this.#slots.has(j.id)) {
      this.#log(`n${j.id} JOINS`);
      this.#addSlot(j.id, [], [...this.#slots.keys(), j.id]);
      return;
    }
    const leader = [...this.#slots.values()].find((s) => s.driver?.raft.role === "leader")?.driver;
    if (leader === undefined || !this.#prng.chance(0.2)) return;
    const conf = leader.raft.conf;
    if (conf.voters.includes(j.id)) return;
    if (!conf.learners.includes(j.id)) {
      // As 'seguro member add' does: its address first, then the learner.
      if (leader.machine.addresses.get(j.id) === undefined) {
        leader.raft.propose(encodeAddress(j.id, address(j.id)));
      }
      leader.raft.proposeConfChange({ type: "addLearner", nodeId: j.id });
    } else if ((leader.raft.progressOf(j.id)?.match ?? 0) >= leader.raft.commitIndex) {
      leader.raft.proposeConfChange({ type: "promoteLearner", nodeId: j.id });
    }
  }

  #log(line: string): void {
    if (this.#o.trace) this.#trace.push(`${this.#now} ${line}`);
  }

  #start(slot: Slot): void {
    const driver = new NodeDriver({
      store: slot.store,
      send: (m) => this.#send(slot.id, m),
      log: (line, event) => {
        if (event?.event === "snapshot_installed") this.#stats.snapshots++;
        this.#log(`n${slot.id} ${line}`);
      },
      compaction: this.#compaction,
      snapshotChunkBytes: this.#snapshotChunkBytes,
      electionTicks: ELECTION_TICKS,
      randomInt: (n) => this.#prng.int(n),
      now: () => this.#now * 50,
      advertise: address(slot.id),
      shipName: (ship) => `ship ${ship}`,
      mutation: this.#o.mutation,
      afterReady: (applied) => {
        if (applied) slot.dirty = true;
      },
    });
    driver.ships.subscribe({
      release: () => {},
      refuse: () => {},
      lost: () => this.#stats.losses++,
      role: (master) => {
        if (master) this.#stats.masters++;
      },
    });
    slot.driver = driver;
    slot.dirty = true;
    slot.hub = new RuntimeHub(runtimeNodeOf(driver));
  }

  #crash(slot: Slot): void {
    this.#log(`n${slot.id} CRASH`);
    this.#stats.crashes++;
    slot.hub?.close();
    slot.hub = undefined;
    slot.driver = undefined;
    // Unflushed writes survive (the OS wrote them) or are lost (a power cut).
    const keep = this.#prng.chance(0.5);
    slot.store = slot.store.crash(keep);
    if (!keep) this.#checker.lostUnflushed(slot.id);
    slot.restartAt = this.#now + 5 + this.#prng.int(40);
    if (this.#link?.node === slot.id) this.#dropLink();
  }

  #send(from: number, m: PeerMessage): void {
    if (this.#o.trace && isStreamMessage(m)) {
      const index = m.type === "snapOffer" ? m.snapshot.index : m.index;
      this.#log(`n${from} -> n${m.to} ${m.type} ${index}`);
    }
    if (!this.#reaches(from, m.to)) return;
    if (this.#faults && this.#prng.chance(this.#p.loss)) return;
    const at = this.#now + this.#prng.int(this.#p.maxDelay + 1);
    this.#net.push({ at, to: m.to, m });
    if (this.#faults && this.#prng.chance(this.#p.dup)) {
      this.#net.push({ at: at + this.#prng.int(3), to: m.to, m });
    }
  }

  #reaches(a: number, b: number): boolean {
    return this.#groups === undefined || this.#groups.get(a) === this.#groups.get(b);
  }

  run(): NodeSimResult {
    const steps = this.#o.steps;
    try {
      this.#setup();
      for (let i = 0; i < steps; i++) this.#step();
      this.#faults = false;
      this.#groups = undefined;
      for (const s of this.#slots.values()) if (s.driver === undefined) s.restartAt = this.#now;
      this.#recover();
    } catch (e) {
      this.#stats.violations++;
      const known = e instanceof PromiseViolation || e instanceof RaftInvariantError;
      const message = known ? e.message : `${(e as Error).stack ?? e}`;
      this.#log(`VIOLATION ${message}`);
      return this.#result({ step: this.#now, message });
    } finally {
      // In-memory databases live outside the JS heap: free them with the seed.
      for (const slot of this.#slots.values()) {
        slot.hub?.close();
        slot.store.close();
      }
    }
    return this.#result(undefined);
  }

  #result(violation: NodeSimResult["violation"]): NodeSimResult {
    const m = this.#model.stats;
    this.#stats.seeds = 1;
    this.#stats.steps = this.#now;
    this.#stats.released = this.#checker.releasedCount;
    this.#stats.plans = m.plans;
    const j = this.#joiner;
    const voter = j !== undefined &&
      [...this.#slots.values()].some((s) => s.driver?.raft.conf.voters.includes(j.id));
    this.#stats.joins = voter ? 1 : 0;
    this.#stats.resyncs = m.resyncs;
    return { stats: this.#stats, violation, trace: this.#trace };
  }

  /** Elect a leader and add the ship, with no faults. */
  #setup(): void {
    const faults = this.#faults;
    this.#faults = false;
    let added = false;
    for (let i = 0; i < 400; i++) {
      this.#step();
      const leader = [...this.#slots.values()].find((s) => s.driver?.ships.isMaster);
      if (leader === undefined) continue;
      const d = leader.driver!;
      if (!added) {
        // Admin writes go straight to the core: a promise would wait for a microtask
        // that this synchronous simulation never yields to (and keep the seed alive).
        d.raft.propose(encodeCommand({
          kind: "shipAdd",
          ship: SHIP,
          fake: true,
          optimism: -1,
          life: 0,
        }));
        const k = this.#o.optimism;
        if (k !== undefined && k !== "quorum") {
          d.raft.propose(encodeCommand({ kind: "shipSet", ship: SHIP, optimism: k }));
        }
        added = true;
      }
      const ready = [...this.#slots.values()].every((s) =>
        s.driver?.machine.ships.get(SHIP) !== undefined
      );
      if (ready) {
        this.#faults = faults;
        this.#connectAt = this.#now + 1;
        return;
      }
    }
    throw new PromiseViolation("setup: no leader added the ship within 400 steps");
  }

  /** Faults healed: the cluster must release again and every node catch up. */
  #recover(): void {
    const target = this.#checker.maxReleased + 1;
    const limit = this.#now + 2000;
    while (this.#now < limit && this.#model.released < target) this.#step();
    if (this.#model.released < target) {
      throw new PromiseViolation(
        `liveness: after the faults stopped, released ${this.#model.released} (needed ${target}) within 2000 steps`,
      );
    }
    // The runtime stops; every node must then hold every released event.
    this.#dropLink();
    this.#connectAt = 0;
    const all = this.#checker.maxReleased;
    const lasts = () =>
      [...this.#slots.values()].map((s) => s.driver?.machine.ships.get(SHIP)?.lastEve ?? 0);
    // Below a quorum released events may be gone: then wait for the logs to settle instead.
    const quorum = (this.#o.optimism ?? "quorum") === "quorum";
    let settled = 0;
    for (let i = 0; i < 1000 && lasts().some((l) => l < all) && settled < 50; i++) {
      this.#step();
      const now = lasts();
      settled = !quorum && now.every((l) => l === now[0]) ? settled + 1 : 0;
    }
    if (quorum && lasts().some((l) => l < all)) {
      throw new PromiseViolation(
        `liveness: the nodes end at events ${lasts().join(", ")}, short of ${all} released`,
      );
    }
    this.#checker.finish(this.#appliedLogs(), this.#losses());
    // Images: the writer stops; the nodes must converge on what was committed.
    for (let i = 0; i < 200 && !this.#imagesConverged(); i++) this.#step();
    this.#checkImages();
  }

  #imagesConverged(): boolean {
    const lists = [...this.#slots.values()].map((s) =>
      JSON.stringify(s.driver?.machine.images.list(SHIP))
    );
    return lists.every((l) => l === lists[0]);
  }

  /** Every live node's applied log (`changed`: only those that applied entries since). */
  #appliedLogs(changed = false): Map<number, AppliedLog> {
    const out = new Map<number, AppliedLog>();
    for (const s of this.#slots.values()) {
      const d = s.driver;
      if (d === undefined || (changed && !s.dirty)) continue;
      s.dirty = false;
      out.set(s.id, {
        lastEve: () => d.machine.ships.get(SHIP)?.lastEve ?? 0,
        events: (from, count) => d.machine.ships.events(SHIP, from, count),
      });
    }
    return out;
  }

  #losses(): Loss[] {
    return [...this.#slots.values()].flatMap((s) => s.driver?.ships.losses ?? []);
  }

  #step(): void {
    this.#now++;
    const r = this.#prng;
    if (this.#faults) this.#injectFaults();
    this.#join();
    for (const s of this.#slots.values()) {
      if (s.driver === undefined && this.#now >= s.restartAt && !this.#faults) this.#start(s);
      else if (s.driver === undefined && this.#now >= s.restartAt && r.chance(0.5)) this.#start(s);
    }
    // Clocks: every node ticks once per step, but a drifting one skips a tick now and then.
    for (const s of this.#slots.values()) {
      if (s.driver === undefined) continue;
      if (s.drift > 0 && this.#now % s.drift === 0) continue;
      s.driver.tick();
    }
    this.#deliverNetwork();
    this.#runtimeStep();
    if (this.#link !== undefined || this.#connectAt > 0) {
      if (r.chance(0.05)) this.#writeImage();
    }
    for (const s of this.#slots.values()) this.#process(s);
    for (const [id, log] of this.#appliedLogs(true)) this.#checker.observe(id, log);
  }

  #process(s: Slot): void {
    for (let i = 0; i < 50 && s.driver !== undefined; i++) {
      // The disk: a flush completes now or in a later step (while more Readies are handled).
      if (s.store.flushPending && this.#prng.chance(0.6)) s.store.completeFlushes();
      if (!s.driver?.hasWork()) break;
      s.driver.handleReady();
    }
  }

  #injectFaults(): void {
    const r = this.#prng;
    const slots = [...this.#slots.values()];
    if (r.chance(this.#p.crash)) {
      const up = slots.filter((s) => s.driver !== undefined);
      // Prefer the master: its crash is the failover that matters.
      const master = up.find((s) => s.driver!.raft.role === "leader");
      const victim = master !== undefined && r.chance(0.6) ? master : up[r.int(up.length)];
      if (victim !== undefined) this.#crash(victim);
    }
    if (this.#groups !== undefined && this.#now >= this.#healAt) {
      this.#groups = undefined;
      this.#log("HEAL");
    } else if (this.#groups === undefined && r.chance(this.#p.partition)) {
      this.#stats.partitions++;
      const groups = new Map<number, number>();
      const leader = slots.find((s) => s.driver?.raft.role === "leader");
      const isolated = leader !== undefined && r.chance(0.5)
        ? leader.id
        : slots[r.int(slots.length)].id;
      for (const s of slots) groups.set(s.id, s.id === isolated ? 1 : (r.chance(0.2) ? 1 : 0));
      this.#groups = groups;
      this.#healAt = this.#now + 10 + r.int(80);
      this.#log(`PARTITION ${[...groups].map(([id, g]) => `n${id}:${g}`).join(" ")}`);
    }
    if (this.#link !== undefined && r.chance(this.#p.dropRuntime)) {
      this.#log("RUNTIME connection dropped");
      this.#dropLink();
    }
  }

  #deliverNetwork(): void {
    const due: InFlightMessage[] = [];
    const later: InFlightMessage[] = [];
    for (const f of this.#net) (f.at <= this.#now ? due : later).push(f);
    this.#net = later;
    // Reordering: due messages go out in a random order.
    for (let i = due.length - 1; i > 0; i--) {
      const j = this.#prng.int(i + 1);
      [due[i], due[j]] = [due[j], due[i]];
    }
    for (const f of due) {
      const slot = this.#slots.get(f.to);
      if (slot?.driver === undefined) continue;
      if (!this.#reaches(f.m.from, f.to)) continue;
      slot.driver.step(f.m);
    }
  }

  // ------------------------------------------------------------ images

  /**
   * One admin request of an image import, to the master: the next chunk of
   * the epoch at the size the master has applied (resumable, as `ship import`
   * is), or, after 6 chunks, `imageDone`; then the next epoch. Chunk bytes
   * depend only on (epoch, offset), so a retried chunk is the same chunk.
   */
  #writeImage(): void {
    const master = [...this.#slots.values()].find((s) => s.driver?.ships.isMaster)?.driver;
    if (master === undefined) return;
    const { epoch } = this.#image;
    const held = master.machine.images.list(SHIP).find((i) => i.epoch === epoch);
    if (held?.sha256 !== undefined) {
      this.#image = { epoch: epoch + 1, chunks: [] };
      return;
    }
    const size = held?.size ?? 0;
    const whole = imageBytes(epoch, size);
    const command = size >= 6 * 64
      ? encodeCommand({ kind: "imageDone", ship: SHIP, epoch, size, sha256: sha256(whole) })
      : (() => {
        const data = imageBytes(epoch, size + 64).subarray(size);
        return encodeCommand({
          kind: "imageChunk",
          ship: SHIP,
          epoch,
          offset: size,
          sha256: sha256(data),
          data,
        });
      })();
    master.raft.propose(command); // refused, or lost with leadership: retried later
  }

  /** Every node holds the same images (epochs, sizes, checksums, chunk bytes). */
  #checkImages(): void {
    const seen = new Map<number, string>();
    for (const s of this.#slots.values()) {
      const d = s.driver!;
      const list = d.machine.images.list(SHIP);
      for (const i of list) {
        const want = imageBytes(i.epoch, i.size);
        for (let at = 0; at < i.size; at += 64) {
          const got = d.machine.images.chunk(SHIP, i.epoch, at);
          const expected = want.subarray(at, at + 64);
          if (got === undefined || !sameBytes(got, expected)) {
            throw new PromiseViolation(
              `node ${s.id}'s image of epoch ${i.epoch} has other bytes at offset ${at}`,
            );
          }
        }
      }
      seen.set(s.id, JSON.stringify(list));
    }
    const distinct = new Set(seen.values());
    if (distinct.size > 1) {
      throw new PromiseViolation(
        `images differ between nodes: ${[...seen].map(([id, l]) => `node ${id} ${l}`).join("; ")}`,
      );
    }
    this.#stats.images += JSON.parse([...distinct][0] ?? "[]").filter((
      i: { sha256?: string },
    ) => i.sha256 !== undefined).length;
  }

  // ------------------------------------------------------------ runtime link

  #dropLink(): void {
    const link = this.#link;
    if (link === undefined) return;
    this.#link = undefined;
    link.session.close();
    this.#act(this.#model.disconnected());
  }

  #act(actions: ModelAction[]): void {
    for (const a of actions) {
      if (a.kind === "connect") {
        const link = this.#link;
        this.#link = undefined;
        link?.session.close();
        this.#connectAt = this.#now + 1 + this.#prng.int(3);
        this.#connectTo = a.master;
        continue;
      }
      const link = this.#link;
      if (link === undefined) continue;
      const last = link.toNode.at(-1)?.at ?? 0;
      link.toNode.push({ at: Math.max(last, this.#now + this.#prng.int(2)), msg: a.msg });
    }
  }

  #runtimeStep(): void {
    if (this.#link === undefined && this.#connectAt > 0 && this.#now >= this.#connectAt) {
      this.#connect();
    }
    const link = this.#link;
    if (link === undefined) return;
    // Node -> runtime first, then runtime -> node; each in order.
    while (link.toRuntime.length > 0 && link.toRuntime[0].at <= this.#now && this.#link === link) {
      const { msg } = link.toRuntime.shift()!;
      if (this.#o.trace) this.#log(`RUNTIME <- n${link.node} ${show(msg)}`);
      this.#act(this.#model.receive(msg));
    }
    while (link.toNode.length > 0 && link.toNode[0].at <= this.#now && this.#link === link) {
      const { msg } = link.toNode.shift()!;
      if (this.#o.trace) this.#log(`RUNTIME -> n${link.node} ${show(msg)}`);
      link.session.receive(msg);
    }
  }

  #connect(): void {
    // A runtime runs beside a node that holds its ship (a joiner may not yet).
    const up = [...this.#slots.values()].filter((s) =>
      s.hub !== undefined && s.driver?.machine.ships.get(SHIP) !== undefined
    );
    if (up.length === 0) return;
    const named = up.find((s) => address(s.id) === this.#connectTo);
    const others = up.filter((s) => s.id !== this.#model.node);
    const pick = named ??
      (others.length > 0 ? others : up)[this.#prng.int((others.length > 0 ? others : up).length)];
    const link: RuntimeLink = {
      node: pick.id,
      session: undefined as unknown as RuntimeSession, // set just below, before any use
      toNode: [],
      toRuntime: [],
    };
    link.session = pick.hub!.open((msg) => {
      if (this.#link !== link) return;
      const last = link.toRuntime.at(-1)?.at ?? 0;
      link.toRuntime.push({ at: Math.max(last, this.#now + this.#prng.int(2)), msg });
    });
    this.#link = link;
    this.#connectAt = 0;
    this.#log(`RUNTIME connects to n${pick.id}`);
    this.#act(this.#model.connected(pick.id));
  }
}

function address(id: number): string {
  return `sim-node-${id}:7700`;
}

function show(msg: RuntimeToNodeMessage | NodeToRuntimeMessage): string {
  const { type, ...rest } = msg as unknown as Record<string, unknown>;
  const fields = Object.entries(rest).map(([k, v]) =>
    v instanceof Uint8Array
      ? `${k}=${v.length}B`
      : Array.isArray(v)
      ? `${k}=[${v.length}]`
      : `${k}=${v}`
  );
  return `%${type} ${fields.join(" ")}`;
}

/** The first `size` bytes of epoch `epoch`'s image: a function of (epoch, offset) only. */
function imageBytes(epoch: number, size: number): Uint8Array {
  const out = new Uint8Array(size);
  for (let i = 0; i < size; i++) out[i] = (epoch * 131 + i * 7 + (i >> 5)) & 0xff;
  return out;
}
