/**
 * A running cluster node: the node driver (cluster/driver.ts, which handles
 * each Ready) brought to life with real timers and TCP, plus the admin
 * service (cluster/admin_service.ts) and membership changes
 * (cluster/membership.ts) on the same port.
 *
 * {@linkcode ClusterNode} is the facade server/ composes: its lifecycle, what
 * the runtime side and the exec supervisor read (leadership, mastership, run
 * flags, the applied ships), proposals, and status. The Raft core, the state
 * machine, the ship master and the transport stay inside.
 *
 * The loop: a tick every `tickMs` (heartbeats, elections), and a Ready
 * handled whenever the driver has work, yielding to the event loop between
 * batches so that network input and new proposals join the next one (group
 * commit).
 * @module
 */

import type { LogSink } from "./log_event.ts";
import { setImmediate } from "node:timers";
import type { PeerMessage } from "./snapshot_stream.ts";
import {
  ApiError,
  type MemberStatus,
  type NodeStatus,
  type ShipRuntimeJson,
  Status,
} from "./admin_protocol.ts";
import { AdminService, type JobCheck } from "./admin_service.ts";
import { COMPACTION_DEFAULT, type DriverObserver, NodeDriver } from "./driver.ts";
import { Membership } from "./membership.ts";
import type { ApplyResult, ShipLayout } from "./machine.ts";
import type { Loss } from "./release.ts";
import { type RuntimeNode, runtimeNodeOf } from "./runtime_backend.ts";
import type { ShipReader } from "./ships.ts";
import type { ImageReader } from "./images.ts";
import type { Store } from "./store.ts";
import { Transport } from "./transport.ts";
import type { Security } from "./connect.ts";
import { VERSION } from "./version.ts";

/** Default milliseconds per tick: heartbeats every tick, elections after 10 to 20 ticks. */
export const TICK_MS_DEFAULT = 50;

/** Default election timeout in ticks (the real one is uniform in [this, 2 * this)). */
export const ELECTION_TICKS_DEFAULT = 10;

/** Ticks between two looks for learners to promote (leader only). */
const PROMOTE_EVERY_TICKS = 5;

/** How a node is started. */
export interface NodeConfig {
  /** The node's open store (the node closes it on stop). */
  store: Store;
  /** A bound listener for peers and clients. */
  listener: Deno.TcpListener;
  /** TLS with this node's certificate, or `--insecure-plaintext` with the cluster secret. */
  security: Security;
  /** Where other nodes reach this one. */
  advertise: string;
  /** Log sink (one line per event). */
  log: LogSink;
  /** Milliseconds per tick. */
  tickMs?: number;
  /** Election timeout in ticks. */
  electionTicks?: number;
  /** Log entries kept behind the applied index (default {@linkcode COMPACTION_DEFAULT}'s). */
  logTailEntries?: number;
  /** Renders a ship in messages (e.g. `~zod`); cluster/ does not depend on vere/. */
  shipName?: (ship: bigint) => string;
  /**
   * Checks one stored job for `seguro log verify` (server/ passes vere's jam
   * round trip); without it, verify checks numbering and digests only.
   */
  checkJob?: JobCheck;
  /** Called after each batch of committed entries is applied (e.g. to keep standby piers). */
  onApplied?: () => void;
  /** Where this node runs a ship's runtime (`seguro run --exec`), for `ship list`. */
  shipRuntime?: (ship: bigint) => ShipRuntimeJson | undefined;
  /** Active alarms of this node's side jobs (standby piers, exec), for `status`. */
  alarms?: () => string[];
  /** This node's certificate and the CA's expiry, for `status` (null in plaintext). */
  certificates?: () => NodeStatus["certificates"];
  /** Replaces this node's TLS certificate (`seguro cert rotate`); absent in plaintext. */
  rotateCertificate?: () => Promise<{ serial: string; notAfter: Date }>;
  /** Timings of the Ready loop (`seguro run --metrics`). */
  observer?: DriverObserver;
}

function cryptoRandomInt(maxExclusive: number): number {
  const buf = new Uint32Array(1);
  crypto.getRandomValues(buf);
  return buf[0] % maxExclusive;
}

/** A running cluster node: the driver under real timers, TCP and the admin service. */
export class ClusterNode {
  readonly #driver: NodeDriver;
  readonly #transport: Transport;
  readonly #membership: Membership;
  readonly #admin: AdminService;
  readonly #store: Store;
  readonly #cfg: NodeConfig;
  readonly #tickMs: number;
  readonly #electionTicks: number;
  readonly #startedAt = Date.now();
  #wake: (() => void) | undefined;
  #timer: ReturnType<typeof setInterval> | undefined;
  #loop: Promise<void> | undefined;
  #stopping = false;
  #peersSignature = "";
  readonly #readyWatchers = new Set<() => void>();
  #ticks = 0;
  #fatal: Error | undefined;
  #stopped: Promise<void>;
  #resolveStopped!: () => void;
  #removed = false;
  /** Removed nodes known at the last Ready: more means tell them. */
  #removedCount = 0;
  /** Revoked certificates known at the last Ready: more means close their connections. */
  #revokedCount = 0;

  /** Restores the node from its store. Call {@linkcode start} to run it. */
  constructor(config: NodeConfig) {
    this.#cfg = config;
    this.#store = config.store;
    this.#tickMs = config.tickMs ?? TICK_MS_DEFAULT;
    this.#electionTicks = config.electionTicks ?? ELECTION_TICKS_DEFAULT;
    const identity = this.#store.identity;
    this.#driver = new NodeDriver({
      store: config.store,
      send: (m) => this.#transport.send(m),
      log: config.log,
      electionTicks: this.#electionTicks,
      compaction: config.logTailEntries === undefined
        ? undefined
        : { ...COMPACTION_DEFAULT, keepEntries: config.logTailEntries },
      randomInt: cryptoRandomInt,
      now: () => Date.now(),
      advertise: config.advertise,
      shipName: config.shipName,
      wake: () => this.#kick(),
      observer: config.observer,
      afterReady: (applied) => this.#afterReady(applied),
      fatal: (e) => this.#die(e),
    });
    const machine = this.#driver.machine;
    this.#transport = new Transport({
      clusterId: identity.clusterId,
      nodeId: identity.nodeId,
      security: config.security,
      listener: config.listener,
      advertise: config.advertise,
      onRaft: (m) => this.#step(m),
      onClient: (fc, hello) => {
        // The handshake sets a client's role (its certificate's, or admin in plaintext).
        if (hello.role === undefined) {
          throw new Error(`A client connection from ${fc.remote} has no role after its handshake`);
        }
        this.#admin.serve(fc, hello.role);
      },
      log: config.log,
      isRemoved: (id) => machine.removed.has(id),
      isRevoked: (serial) => machine.revoked.has(serial),
      onRemoved: (by) => this.#removedFromCluster(by),
    });
    const waitFor = (ready: () => boolean, waitMs: number) => this.#waitFor(ready, waitMs);
    this.#membership = new Membership({
      driver: this.#driver,
      peers: () => this.#transport.peers(),
      electionMs: this.#electionTicks * this.#tickMs,
      waitFor,
      wake: () => this.#kick(),
      log: config.log,
    });
    this.#admin = new AdminService({
      driver: this.#driver,
      membership: this.#membership,
      clusterId: identity.clusterId,
      status: () => this.status(),
      waitFor,
      shipName: (ship) => this.#shipName(ship),
      shipRuntime: config.shipRuntime,
      checkJob: config.checkJob,
      log: config.log,
      rotateCertificate: config.rotateCertificate,
    });
    this.#stopped = new Promise((resolve) => this.#resolveStopped = resolve);
  }

  // ---------------------------------------------------------------- facade

  /** This node's id. */
  get id(): number {
    return this.#driver.id;
  }

  /** True while this node is the Raft leader (it may not be master yet: see {@linkcode isMaster}). */
  get isLeader(): boolean {
    return this.#driver.raft.role === "leader";
  }

  /** The current Raft term. */
  get term(): number {
    return this.#driver.raft.term;
  }

  /** True while this node may release effects: it leads and has applied an entry of its term. */
  get isMaster(): boolean {
    return this.#driver.ships.isMaster;
  }

  /**
   * Calls `listener` when this node becomes (true) or stops being (false)
   * master; returns the function that stops the calls.
   */
  onMasterChange(listener: (master: boolean) => void): () => void {
    return this.#driver.ships.subscribe({
      release: () => {},
      refuse: () => {},
      lost: () => {},
      role: listener,
    });
  }

  /** True when the master runs its `--exec` command for `ship` (`seguro ship run`). */
  runs(ship: bigint): boolean {
    return this.#driver.machine.runs(ship);
  }

  /** The ships the master runs its `--exec` command for. */
  runShips(): bigint[] {
    return this.#driver.machine.runShips();
  }

  /** The applied ships and their events, read only. */
  get appliedShips(): ShipReader {
    return this.#driver.machine.ships;
  }

  /** The ships' applied epoch images, read only. */
  get appliedImages(): ImageReader {
    return this.#driver.machine.images;
  }

  /** The layout of `ship`'s pier, as its import recorded it (undefined when none did). */
  layout(ship: bigint): ShipLayout | undefined {
    return this.#driver.machine.layout(ship);
  }

  /** Released-but-lost findings of this node (this run's and those recorded earlier). */
  losses(): readonly Loss[] {
    return this.#driver.ships.losses;
  }

  /** The node as the runtime protocol sees it (vere/runtime_server.ts serves it). */
  runtimeNode(): RuntimeNode {
    return runtimeNodeOf(this.#driver);
  }

  /** Proposes opaque bytes; resolves with the index once committed and applied here. */
  propose(data: Uint8Array): Promise<number> {
    return this.#driver.propose(data);
  }

  /** Proposes a command; resolves once applied here, rejects with the reason if it was refused. */
  proposeCommand(data: Uint8Array): Promise<ApplyResult & { ok: true }> {
    return this.#driver.proposeCommand(data);
  }

  /** Resolves when the node has stopped (after {@linkcode stop}, or a fatal error). */
  get stopped(): Promise<void> {
    return this.#stopped;
  }

  /** The fatal error that stopped the node, if any. */
  get fatal(): Error | undefined {
    return this.#fatal;
  }

  /** True once this node learned it was removed from the cluster (it then stops). */
  get removed(): boolean {
    return this.#removed;
  }

  /** The status this node reports (`seguro status`, metrics). */
  status(): NodeStatus {
    const raft = this.#driver.raft;
    const machine = this.#driver.machine;
    const master = this.#driver.ships;
    const conf = raft.conf;
    const peers = new Map(this.#transport.peers().map((p) => [p.id, p]));
    const leader = raft.role === "leader";
    const member = (id: number, membership: "voter" | "learner"): MemberStatus => {
      const pr = leader ? raft.progressOf(id) : undefined;
      const peer = peers.get(id);
      return {
        id,
        address: machine.addresses.get(id) ?? null,
        membership,
        match: id === this.id ? raft.persistedIndex : pr?.match ?? null,
        state: id === this.id ? null : pr?.state ?? null,
        lastContactMs: id === this.id ? 0 : peer?.lastHeardMs ?? null,
        connected: id === this.id || (peer?.connected ?? false),
      };
    };
    const members = [
      ...conf.voters.map((id) => member(id, "voter")),
      ...conf.learners.map((id) => member(id, "learner")),
    ].sort((a, b) => a.id - b.id);
    const isMember = conf.voters.includes(this.id) || conf.learners.includes(this.id);
    const role = !isMember && conf.voters.length > 0
      ? "removed"
      : conf.learners.includes(this.id)
      ? "learner"
      : raft.role;
    const leaderId = raft.leaderId;
    return {
      version: VERSION,
      clusterId: this.#store.identity.clusterId,
      nodeId: this.id,
      address: this.#cfg.advertise,
      role,
      term: raft.term,
      leaderId,
      leaderAddress: machine.addresses.get(leaderId) ?? null,
      firstIndex: raft.firstIndex,
      lastIndex: raft.lastIndex,
      commitIndex: raft.commitIndex,
      appliedIndex: raft.appliedIndex,
      conf,
      members,
      uptimeMs: Date.now() - this.#startedAt,
      electionTimeoutMs: this.#electionTicks * this.#tickMs,
      release: {
        master: master.isMaster,
        released: master.released,
        stalled: master.stalled ?? null,
        losses: master.losses.map((loss) => ({ ...loss, ship: String(loss.ship) })),
      },
      store: this.#store.stats(),
      alarms: this.#cfg.alarms?.() ?? [],
      certificates: this.#cfg.certificates?.() ?? null,
    };
  }

  /** Starts the timers, the network and the Ready loop. */
  start(): void {
    this.#updatePeers();
    this.#transport.start();
    this.#timer = setInterval(() => this.#tick(), this.#tickMs);
    this.#loop = this.#run();
    this.#cfg.log(
      `node ${this.id} of cluster ${
        this.#store.identity.clusterId.slice(0, 8)
      } listening at ${this.#cfg.advertise} (term ${this.#driver.raft.term}, last index ${this.#driver.raft.lastIndex})`,
      { event: "listening", node: this.id, address: this.#cfg.advertise },
    );
  }

  /** Stops gracefully: finishes the batch in flight, closes sockets, releases the data dir. */
  async stop(): Promise<void> {
    if (this.#stopping) return this.#stopped;
    this.#stopping = true;
    clearInterval(this.#timer);
    this.#wake?.();
    this.#notifyReadyWatchers();
    await this.#loop;
    await this.#transport.close();
    this.#driver.failAll(
      new ApiError(Status.error, "The node is shutting down; retry on another node"),
    );
    try {
      if (!this.#fatal) this.#driver.flushHardState();
    } finally {
      this.#store.close();
      this.#resolveStopped();
    }
  }

  // ------------------------------------------------------------ internals

  #afterReady(applied: boolean): void {
    const machine = this.#driver.machine;
    this.#updatePeers();
    this.#notifyReadyWatchers();
    if (applied) this.#cfg.onApplied?.();
    if (machine.removed.has(this.id)) this.#removedFromCluster(0);
    if (machine.removed.size !== this.#removedCount) {
      this.#removedCount = machine.removed.size;
      this.#transport.tellRemovedPeers();
    }
    if (machine.revoked.size !== this.#revokedCount) {
      this.#revokedCount = machine.revoked.size;
      this.#transport.dropRevoked();
    }
  }

  /**
   * This node was removed from the cluster: its own log applied the removal
   * (`by` 0), or peer `by`, which applied it, said so. Either way the removal
   * is committed, and the node has nothing left to do: it records that (so a
   * later `seguro run` refuses at once) and stops.
   */
  #removedFromCluster(by: number): void {
    if (this.#removed || this.#stopping) return;
    this.#removed = true;
    this.#store.localSettings.setRemovedBy(by);
    this.#cfg.log(
      `this node (${this.id}) was removed from the cluster (${
        by === 0 ? "its log applied the membership change" : `node ${by} says so`
      }); stopping`,
      { event: "removed", node: this.id, by },
    );
    this.stop();
  }

  #die(e: Error): void {
    if (this.#fatal) return;
    this.#fatal = e;
    this.#cfg.log(`FATAL: ${e.stack ?? e.message}`);
    this.stop();
  }

  #kick(): void {
    const wake = this.#wake;
    this.#wake = undefined;
    wake?.();
  }

  #tick(): void {
    try {
      this.#driver.tick();
    } catch (e) {
      this.#die(e as Error);
      return;
    }
    this.#ticks++;
    if (this.isLeader && this.#ticks % PROMOTE_EVERY_TICKS === 0) {
      this.#membership.promoteCaughtUpLearners();
    }
    this.#kick();
  }

  #step(m: PeerMessage): void {
    if (this.#stopping) return;
    try {
      this.#driver.step(m);
    } catch (e) {
      this.#die(e as Error);
      return;
    }
    this.#kick();
  }

  async #run(): Promise<void> {
    while (!this.#stopping) {
      if (!this.#driver.hasWork()) {
        await new Promise<void>((resolve) => this.#wake = resolve);
        continue;
      }
      try {
        this.#driver.handleReady();
      } catch (e) {
        this.#die(e as Error);
        return;
      }
      // Let network input and new proposals in, so the next batch gathers them.
      await new Promise((resolve) => setImmediate(resolve));
    }
  }

  #updatePeers(): void {
    const raft = this.#driver.raft;
    const conf = raft.conf;
    const ids = new Set([...conf.voters, ...conf.learners, raft.leaderId]);
    const peers = new Map<number, string>();
    for (const id of ids) {
      const address = this.#driver.machine.addresses.get(id);
      if (id !== 0 && id !== this.id && address !== undefined) peers.set(id, address);
    }
    const signature = [...peers].map(([id, a]) => `${id}@${a}`).sort().join(",");
    if (signature === this.#peersSignature) return;
    this.#peersSignature = signature;
    this.#transport.setPeers(peers);
  }

  /** Resolves when `ready()` holds after a Ready is handled, or after `waitMs`, or at stop. */
  #waitFor(ready: () => boolean, waitMs: number): Promise<void> {
    return new Promise((resolve) => {
      const finish = () => {
        clearTimeout(timer);
        this.#readyWatchers.delete(check);
        resolve();
      };
      const check = () => {
        if (ready() || this.#stopping) finish();
      };
      const timer = setTimeout(finish, waitMs);
      this.#readyWatchers.add(check);
    });
  }

  #notifyReadyWatchers(): void {
    for (const check of [...this.#readyWatchers]) check();
  }

  #shipName(ship: bigint): string {
    return this.#cfg.shipName?.(ship) ?? `ship ${ship}`;
  }
}
