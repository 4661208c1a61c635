/**
 * `--metrics HOST:PORT`: a running node's Prometheus metrics, in the text
 * exposition format, at `GET /metrics` (404 elsewhere). prom-client writes
 * them from a private registry; nothing here formats the exposition by hand.
 *
 * Why in server/: the metrics read both the cluster node and the runtime
 * socket, and server/ is where cluster/ and vere/ meet. The Raft core and the
 * driver never see prom-client: the driver calls a plain
 * {@linkcode DriverObserver} with its timings, and the runtime node is
 * wrapped here to time plans to their releases.
 *
 * Gauges are read when Prometheus scrapes (prom-client `collect` callbacks
 * over one snapshot of the node per scrape); only latencies and release
 * counts are recorded as they happen.
 *
 * @example
 * ```text
 * seguro run --metrics 127.0.0.1:9770
 * curl -s 127.0.0.1:9770/metrics | grep seguro_raft_commit_index
 * ```
 * @module
 */

import { collectDefaultMetrics, Counter, Gauge, Histogram, Registry, Summary } from "prom-client";
import { EventLoopLag } from "./event_loop_lag.ts";
import type { DriverObserver } from "../cluster/driver.ts";
import type { ClusterNode } from "../cluster/node.ts";
import type { NodeStatus } from "../cluster/admin_protocol.ts";
import type { Loss } from "../cluster/release.ts";
import type { RuntimeNode } from "../cluster/runtime_backend.ts";
import { formatAddress, parseAddress } from "../cluster/address.ts";
import type { RuntimeServer } from "../vere/runtime_server.ts";
import { NodeError } from "./errors.ts";

/** A release still waiting this long after its plan counts as stalled. */
export const RELEASE_STALL_MS = 1000;
/** Unreleased events timed per ship; plans beyond it are counted but not timed. */
export const RELEASE_TIMED_EVENTS_MAX = 65_536;

function invariant(ok: boolean, message: () => string): void {
  if (!ok) throw new Error(`Metrics invariant broken: ${message()}`);
}

// ------------------------------------------------------------ release timing

interface ShipTiming {
  /** Last event counted as released on this master. */
  releasedEve: number;
  /** Last event accepted at the ship's tail on this master. */
  plannedEve: number;
  /** Event number of `times[head]`. */
  firstTimed: number;
  /** Plan times (ms, non-decreasing) of unreleased events `firstTimed`.., from `head` on. */
  times: number[];
  head: number;
}

function timedCount(s: ShipTiming): number {
  return s.times.length - s.head;
}

/**
 * Times each planned event from its plan to the release that covers it, on
 * the master, per ship. Pure: the clock is passed in. Only plans at the
 * ship's tail (the ones the master will log) are counted; a role change
 * forgets everything (a new master starts afresh).
 */
export class ReleaseTimer {
  readonly #now: () => number;
  readonly #ships = new Map<bigint, ShipTiming>();

  /** `now`: monotonic milliseconds. */
  constructor(now: () => number) {
    this.#now = now;
  }

  /** A plan of `eve`, the event after the ship's tail on this master, was received. */
  planned(ship: bigint, eve: number): void {
    invariant(Number.isSafeInteger(eve) && eve >= 1, () => `planned event ${eve} of ${ship}`);
    let s = this.#ships.get(ship);
    // The master's tail went back (a batch it could not log): its events are replanned.
    if (s !== undefined && eve <= s.plannedEve) this.dropAbove(ship, eve - 1);
    if (s === undefined || eve !== s.plannedEve + 1) {
      s = { releasedEve: eve - 1, plannedEve: eve - 1, firstTimed: eve, times: [], head: 0 };
      this.#ships.set(ship, s);
    }
    s.plannedEve = eve;
    if (timedCount(s) === 0) {
      s.times.length = 0;
      s.head = 0;
      s.firstTimed = eve;
    }
    const count = timedCount(s);
    if (s.firstTimed + count === eve && count < RELEASE_TIMED_EVENTS_MAX) {
      const now = this.#now();
      const last = count === 0 ? now : s.times[s.times.length - 1];
      invariant(now >= last, () => `the clock went back from ${last} to ${now}`);
      s.times.push(now);
    }
  }

  /**
   * Events of `ship` up to `eve` were released. Calls `observe` with the
   * latency (ms) of each timed event it covers; returns how many events it
   * released for the first time on this master.
   */
  released(ship: bigint, eve: number, observe: (ms: number) => void): number {
    const s = this.#ships.get(ship);
    if (s === undefined) return 0;
    const top = Math.min(eve, s.plannedEve);
    if (top <= s.releasedEve) return 0;
    const n = top - s.releasedEve;
    s.releasedEve = top;
    const now = this.#now();
    while (timedCount(s) > 0 && s.firstTimed <= top) {
      observe(now - s.times[s.head]);
      s.head++;
      s.firstTimed++;
    }
    if (s.head > 1024 && s.head * 2 > s.times.length) {
      s.times = s.times.slice(s.head);
      s.head = 0;
    }
    invariant(
      timedCount(s) === 0 || s.firstTimed > s.releasedEve,
      () => `event ${s.firstTimed} of ${ship} is timed but released up to ${s.releasedEve}`,
    );
    return n;
  }

  /** The master's tail of `ship` is `eve`: plans above it will not be released (refused). */
  dropAbove(ship: bigint, eve: number): void {
    const s = this.#ships.get(ship);
    if (s === undefined) return;
    s.plannedEve = Math.min(s.plannedEve, eve);
    s.releasedEve = Math.min(s.releasedEve, eve);
    const keep = Math.max(0, Math.min(timedCount(s), eve - s.firstTimed + 1));
    s.times.length = s.head + keep;
  }

  /** Planned events of `ship` waiting for their release for `RELEASE_STALL_MS` or more. */
  stalled(ship: bigint): number {
    const s = this.#ships.get(ship);
    if (s === undefined) return 0;
    const before = this.#now() - RELEASE_STALL_MS;
    let n = 0;
    // Plan times do not decrease: the stalled ones are a prefix.
    for (let i = s.head; i < s.times.length && s.times[i] <= before; i++) n++;
    return n;
  }

  /** Forgets everything (this node became or stopped being master). */
  clear(): void {
    this.#ships.clear();
  }
}

// ------------------------------------------------------------ the registry

/** What the metrics read from a node when scraped. */
export interface MetricsSource {
  /** The node's status, as `seguro status` shows it. */
  status(): NodeStatus;
  /** Every ship with its last applied event. */
  ships(): { ship: bigint; lastEve: number }[];
  /** Released-but-lost findings recorded by this node. */
  losses(): readonly Loss[];
  /** Runtime connections on this node, and per ship their last role notice. */
  runtimes(): { connections: number; notices: ReadonlyMap<bigint, "lead" | "fence"> };
}

/** The source of a running node and its runtime socket server. */
export function nodeSource(node: ClusterNode, runtime: RuntimeServer): MetricsSource {
  return {
    status: () => node.status(),
    ships: () => node.appliedShips.list(),
    losses: () => node.losses(),
    runtimes: () => ({
      connections: runtime.hub?.size ?? 0,
      notices: runtime.hub?.notices() ?? new Map(),
    }),
  };
}

/** Roles as `seguro status` reports them. */
const ROLES = ["leader", "follower", "candidate", "preCandidate", "learner", "removed"] as const;
/** A ship's runtime on this node (see docs/operations.md, Metrics). */
const RUNTIME_STATES = ["none", "connected", "fenced", "master"] as const;
/** Histogram bounds of the 1, 2.5, 5 series (times powers of ten) from `low` to `high`. */
function buckets125(low: number, high: number): number[] {
  const out: number[] = [];
  for (let exp = -6; exp <= 3; exp++) {
    for (const m of [1, 2.5, 5]) {
      const v = Number((m * 10 ** exp).toPrecision(3));
      if (v >= low && v <= high) out.push(v);
    }
  }
  return out;
}
/** Seconds: 0.25 ms to 2.5 s (an fsync, one Ready). */
const DISK_BUCKETS = buckets125(0.00025, 2.5);
/** Seconds: 0.5 ms to 10 s (a release waits for replicas, and for a failover). */
const RELEASE_BUCKETS = buckets125(0.0005, 10);

interface Snapshot {
  status: NodeStatus;
  ships: { ship: bigint; lastEve: number }[];
}

/** One node's metrics: a private prom-client registry, written on scrape. */
export class NodeMetrics {
  /** Timings of the Ready loop; pass it to the node (`NodeConfig.observer`). */
  readonly observer: DriverObserver;
  readonly #registry = new Registry();
  readonly #shipName: (ship: bigint) => string;
  readonly #timer: ReleaseTimer;
  readonly #released: Counter<"ship">;
  readonly #releaseSeconds: Histogram<"ship">;
  #source: MetricsSource | undefined;
  #snapshot: Snapshot | undefined;
  readonly #lagSeconds: Summary;
  #lag: EventLoopLag | undefined;

  /** `now`: monotonic milliseconds; `shipName` renders the `ship` label (e.g. `~zod`). */
  constructor(shipName: (ship: bigint) => string, now: () => number = () => performance.now()) {
    this.#shipName = shipName;
    this.#timer = new ReleaseTimer(now);
    const registers = [this.#registry];
    // The process's CPU, memory and file descriptors (prom-client's own metrics); not its
    // event-loop lag, which Deno's monitorEventLoopDelay does not measure (see event_loop_lag.ts).
    collectDefaultMetrics({ register: this.#registry });
    for (const name of this.#registry.getMetricsAsArray().map((m) => m.name)) {
      if (name.startsWith("nodejs_eventloop_lag")) this.#registry.removeSingleMetric(name);
    }
    // Read by the collect callbacks below (prom-client binds `this` to the metric there).
    const view = () => this.#view();
    const name = (ship: bigint) => this.#name(ship);
    const source = () => this.#source;
    const timer = this.#timer;

    new Gauge({
      name: "seguro_node_role",
      help: "This node's role as seguro status shows it: 1 for the current role, 0 for the others",
      labelNames: ["role"] as const,
      registers,
      collect() {
        const now = view()?.status.role;
        for (const role of ROLES) this.set({ role }, role === now ? 1 : 0);
      },
    });
    new Gauge({
      name: "seguro_certificate_expiry_seconds",
      help:
        "Seconds until this node's TLS certificate (kind=node) or the cluster CA (kind=ca) expires; absent in plaintext",
      labelNames: ["kind"] as const,
      registers,
      collect() {
        const certificates = view()?.status.certificates;
        if (certificates === undefined || certificates === null) return;
        const left = (iso: string) => (Date.parse(iso) - Date.now()) / 1000;
        this.set({ kind: "node" }, left(certificates.node.notAfter));
        this.set({ kind: "ca" }, left(certificates.caNotAfter));
      },
    });
    const node = (metric: string, help: string, value: (s: NodeStatus) => number) =>
      new Gauge({
        name: metric,
        help,
        registers,
        collect() {
          const v = view();
          if (v !== undefined) this.set(value(v.status));
        },
      });
    node("seguro_raft_term", "Current Raft term", (s) => s.term);
    node("seguro_raft_commit_index", "Raft commit index", (s) => s.commitIndex);
    node(
      "seguro_raft_applied_index",
      "Index of the last entry applied here",
      (s) => s.appliedIndex,
    );
    node(
      "seguro_raft_last_index",
      "Index of the last entry in this node's log",
      (s) => s.lastIndex,
    );
    node(
      "seguro_raft_leader_id",
      "Node id of the leader this node knows, 0 when none",
      (s) => s.leaderId,
    );
    new Gauge({
      name: "seguro_raft_peer_match_lag",
      help:
        "Leader only: entries a member's durable log is behind the leader's last index (peer = node id)",
      labelNames: ["peer"] as const,
      registers,
      collect() {
        this.reset();
        const s = view()?.status;
        if (s === undefined || s.role !== "leader") return;
        for (const m of s.members) {
          if (m.id === s.nodeId || m.match === null) continue;
          this.set({ peer: String(m.id) }, Math.max(0, s.lastIndex - m.match));
        }
      },
    });
    const persist = new Histogram({
      name: "seguro_storage_persist_seconds",
      help:
        "Time from a Raft Ready's SQLite transaction until a flush (one fdatasync of the WAL) made it durable",
      buckets: DISK_BUCKETS,
      registers,
    });
    const ready = new Histogram({
      name: "seguro_raft_ready_seconds",
      help: "Time to handle one Raft Ready: send, persist, apply, advance and release",
      buckets: DISK_BUCKETS,
      registers,
    });
    this.#lagSeconds = new Summary({
      name: "seguro_event_loop_lag_seconds",
      help:
        "How late the event loop ran a 20 ms timer (time it was busy), over the last minute; a lag near the election timeout costs elections",
      percentiles: [0.5, 0.99, 1],
      maxAgeSeconds: 60,
      ageBuckets: 6,
      registers,
    });
    this.observer = {
      now,
      persisted: (ms) => persist.observe(ms / 1000),
      readyHandled: (ms) => ready.observe(ms / 1000),
    };

    new Gauge({
      name: "seguro_ship_last_eve",
      help: "Last event of the ship applied on this node",
      labelNames: ["ship"] as const,
      registers,
      collect() {
        this.reset();
        for (const s of view()?.ships ?? []) this.set({ ship: name(s.ship) }, s.lastEve);
      },
    });
    this.#released = new Counter({
      name: "seguro_ship_released_events_total",
      help: "Events whose effects this node released to runtimes (%done) while master",
      labelNames: ["ship"] as const,
      registers,
    });
    this.#releaseSeconds = new Histogram({
      name: "seguro_ship_release_seconds",
      help: "On the master: time from a runtime's %plan of an event to the %done that releases it",
      labelNames: ["ship"] as const,
      buckets: RELEASE_BUCKETS,
      registers,
    });
    new Gauge({
      name: "seguro_ship_release_stalled_events",
      help:
        `On the master: events planned ${RELEASE_STALL_MS} ms ago or more whose %done has not been sent`,
      labelNames: ["ship"] as const,
      registers,
      collect() {
        this.reset();
        for (const s of view()?.ships ?? []) {
          this.set({ ship: name(s.ship) }, timer.stalled(s.ship));
        }
      },
    });
    new Gauge({
      name: "seguro_ship_released_lost_events",
      help:
        "Events released before commit and then erased by a failover (RELEASED BUT LOST), as recorded by this node",
      labelNames: ["ship"] as const,
      registers,
      collect() {
        this.reset();
        const count = new Map<bigint, number>();
        for (const s of view()?.ships ?? []) count.set(s.ship, 0);
        for (const l of source()?.losses() ?? []) {
          count.set(l.ship, (count.get(l.ship) ?? 0) + l.lastEve - l.firstEve + 1);
        }
        for (const [ship, n] of count) this.set({ ship: name(ship) }, n);
      },
    });
    new Gauge({
      name: "seguro_ship_runtime_state",
      help:
        "The ship's runtime on this node, 1 for the current state: none (no runtime connected here), connected (connected, not following the ship), fenced (told %fence), master (told %lead)",
      labelNames: ["ship", "state"] as const,
      registers,
      collect() {
        this.reset();
        const r = source()?.runtimes();
        for (const s of view()?.ships ?? []) {
          const notice = r?.notices.get(s.ship);
          const now = notice === "lead"
            ? "master"
            : notice === "fence"
            ? "fenced"
            : (r?.connections ?? 0) > 0
            ? "connected"
            : "none";
          const ship = name(s.ship);
          for (const state of RUNTIME_STATES) this.set({ ship, state }, state === now ? 1 : 0);
        }
      },
    });
  }

  /** The names cached per ship (few ships; rendering a @p is not free). */
  readonly #names = new Map<bigint, string>();

  #name(ship: bigint): string {
    let name = this.#names.get(ship);
    if (name === undefined) {
      name = this.#shipName(ship);
      this.#names.set(ship, name);
    }
    return name;
  }

  /** The snapshot of the node taken for the current scrape. */
  #view(): Snapshot | undefined {
    return this.#snapshot;
  }

  /** Reads the node through `source` from now on, on each scrape, and samples its event loop. */
  watch(source: MetricsSource): void {
    invariant(this.#source === undefined, () => "the metrics watch a node already");
    this.#source = source;
    this.#lag = new EventLoopLag((ms) => this.#lagSeconds.observe(ms / 1000));
  }

  /** Stops sampling the event loop (the node stopped). */
  close(): void {
    this.#lag?.stop();
    this.#lag = undefined;
  }

  /**
   * Times plans through `runtime` to their releases and counts the events
   * released; returns the runtime node to serve on the runtime socket (the
   * same, with plans timed).
   */
  timeReleases(runtime: RuntimeNode): RuntimeNode {
    const timer = this.#timer;
    runtime.subscribe({
      release: ({ ship, eve }) => {
        const name = this.#name(ship);
        const seconds = this.#releaseSeconds.labels({ ship: name });
        const n = timer.released(ship, eve, (ms) => seconds.observe(ms / 1000));
        if (n > 0) this.#released.inc({ ship: name }, n);
      },
      // A refused plan, or a batch the master dropped: its tail says what is still planned.
      refuse: (ship) => timer.dropAbove(ship, runtime.head(ship)?.eve ?? 0),
      role: () => timer.clear(),
      leader: () => {},
    });
    return {
      nodeId: runtime.nodeId,
      isMaster: () => runtime.isMaster(),
      masterAddress: () => runtime.masterAddress(),
      ships: () => runtime.ships(),
      plan: (p) => {
        // Only a plan at the tail will be logged; replans are answered from the log.
        const head = runtime.isMaster() ? runtime.head(p.ship) : undefined;
        if (head !== undefined && p.eve === head.eve + 1) timer.planned(p.ship, p.eve);
        runtime.plan(p);
      },
      head: (ship) => runtime.head(ship),
      read: (ship, from, count) => runtime.read(ship, from, count),
      subscribe: (listener) => runtime.subscribe(listener),
    };
  }

  /** The metrics in Prometheus text format, read from the node now. */
  scrape(): Promise<string> {
    // One snapshot per scrape, so the gauges agree with each other.
    const source = this.#source;
    this.#snapshot = source && { status: source.status(), ships: source.ships() };
    return this.#registry.metrics();
  }

  /** The exposition's content type. */
  get contentType(): string {
    return this.#registry.contentType;
  }
}

// ------------------------------------------------------------ the HTTP server

/** The metrics endpoint of a node. */
export class MetricsServer {
  readonly #server: Deno.HttpServer<Deno.NetAddr>;
  #metrics: NodeMetrics | undefined;
  /** Where it listens, as HOST:PORT. */
  readonly address: string;

  /**
   * Binds `address` at once, so a busy port fails before anything is created
   * (a {@linkcode NodeError}); it answers 503 until {@linkcode serve} is called.
   */
  constructor(address: string) {
    const { hostname, port } = parseAddress(address);
    try {
      this.#server = Deno.serve(
        { hostname, port, onListen: () => {}, onError: (e) => serverError(e) },
        (request) => respond(request, this.#metrics),
      );
    } catch (e) {
      if (e instanceof Deno.errors.AddrInUse) {
        throw new NodeError(
          `--metrics ${address} is already in use; stop what uses it or choose another port`,
        );
      }
      if (e instanceof Deno.errors.NotCapable) throw e; // cmd/mod.ts names the permission
      throw new NodeError(`cannot serve metrics on ${address}: ${(e as Error).message}`);
    }
    this.address = formatAddress(this.#server.addr);
  }

  /** Serves `GET /metrics` from `metrics` from now on. */
  serve(metrics: NodeMetrics): void {
    this.#metrics = metrics;
  }

  /** Stops serving. */
  async close(): Promise<void> {
    await this.#server.shutdown();
  }
}

function serverError(e: unknown): Response {
  return new Response(`metrics failed: ${(e as Error).message}\n`, { status: 500 });
}

async function respond(request: Request, metrics: NodeMetrics | undefined): Promise<Response> {
  const path = new URL(request.url).pathname;
  if (path !== "/metrics") return new Response("Not found: try /metrics\n", { status: 404 });
  if (metrics === undefined) return new Response("The node is starting\n", { status: 503 });
  if (request.method !== "GET" && request.method !== "HEAD") {
    return new Response("Method not allowed: use GET\n", {
      status: 405,
      headers: { allow: "GET" },
    });
  }
  const body = await metrics.scrape();
  return new Response(request.method === "HEAD" ? null : body, {
    headers: { "content-type": metrics.contentType },
  });
}
