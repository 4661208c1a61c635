/**
 * The running node (`seguro run`, and `init`/`join` when they run the node
 * they create): binds its endpoints, opens the store, and composes the
 * cluster node, the runtime socket, standby piers, the exec supervisor and
 * metrics, until SIGINT or SIGTERM.
 * @module
 */

import type { LogSink } from "../cluster/log_event.ts";
import { join, resolve } from "node:path";
import { readNodeFile } from "../cluster/datadir.ts";
import { parseAddress } from "../cluster/address.ts";
import { NodeSecurity } from "../cluster/node_identity.ts";
import { ClusterNode, ELECTION_TICKS_DEFAULT, TICK_MS_DEFAULT } from "../cluster/node.ts";
import type { ShipRuntimeJson } from "../cluster/admin_protocol.ts";
import { removalOf } from "../cluster/membership.ts";
import { Store } from "../cluster/store.ts";
import { cue, jam } from "../vere/noun.ts";
import { renderShip } from "../vere/event.ts";
import { RuntimeServer } from "../vere/runtime_server.ts";
import { NodeError, NodeUsageError } from "./errors.ts";
import { StandbyPiers } from "./standby.ts";
import { runtimeVersion } from "./runtime_version.ts";
import { Alarms } from "./alarms.ts";
import { parseExec, supervisedNodeOf, Supervisor } from "./supervisor.ts";
import { MetricsServer, NodeMetrics, nodeSource } from "./metrics.ts";

/** Default SIGTERM-to-SIGKILL grace for a runtime started with --exec. */
export const EXEC_GRACE_MS_DEFAULT = 5000;

/** The runtime socket's name in a data dir. */
export const RUNTIME_SOCKET = "runtime.sock";

/**
 * Longest the cluster node may take to stop: the Ready loop's batch in
 * flight, the transport's flush of queued answers (at most a second) and
 * closing the store.
 */
export const CLUSTER_STOP_MS_MAX = 10_000;

/** Longest the metrics server may take to stop (the scrapes in flight). */
export const METRICS_STOP_MS_MAX = 2_000;

/**
 * Binds `address` for a node, or throws a NodeError; `hint` says what to do
 * when the address is in use.
 */
export function listenOn(address: string, hint: string): Deno.TcpListener {
  try {
    return Deno.listen(parseAddress(address));
  } catch (e) {
    if (e instanceof Deno.errors.AddrInUse) {
      throw new NodeError(`${address} is already in use; ${hint}`);
    }
    if (e instanceof Deno.errors.NotCapable) throw e; // cmd/mod.ts names the permission
    throw new NodeError(`cannot listen on ${address}: ${(e as Error).message}`);
  }
}

/** What a node listens on, bound before anything is created: its peer port and its metrics. */
export interface NodeEndpoints {
  /** Peers and clients. */
  listener: Deno.TcpListener;
  /** Prometheus metrics (`--metrics`), when asked for. */
  metrics?: MetricsServer;
}

/**
 * Binds `listen` and, when given, the `metrics` address: both or neither (a
 * {@linkcode NodeError} names the busy one; `hint` says what to do about `listen`).
 */
export function bindEndpoints(
  listen: string,
  metrics: string | undefined,
  hint: string,
): NodeEndpoints {
  const listener = listenOn(listen, hint);
  const bound: NodeEndpoints = { listener };
  try {
    if (metrics !== undefined) bound.metrics = new MetricsServer(metrics);
    return bound;
  } catch (e) {
    closeEndpoints(bound);
    throw e;
  }
}

/** Releases endpoints that will not be used. */
export function closeEndpoints(endpoints: NodeEndpoints | undefined): void {
  endpoints?.listener.close();
  endpoints?.metrics?.close();
}

/**
 * Why `run` refuses --listen or --advertise: a node's address is part of the
 * cluster's membership, recorded when it joined, and changes only by removing
 * the node and joining again. Undefined when they match what is recorded.
 */
function addressChangeRefusal(
  dir: string,
  nodeId: number,
  recorded: { listen?: string; advertise?: string },
  asked: { listen?: string; advertise?: string },
): string | undefined {
  for (const flag of ["listen", "advertise"] as const) {
    const was = recorded[flag];
    const now = asked[flag];
    if (was === undefined || now === undefined || now === was) continue;
    return `--${flag} ${now} differs from ${was}, node ${nodeId}'s recorded ${flag} address (${dir}/node.json), and a node's address cannot change in place; run without --${flag}, or move the node: 'seguro member remove ${nodeId}', then 'seguro join' from an empty data dir with the new address`;
  }
  return undefined;
}

/** Why `run` refuses a node that was removed from its cluster; undefined if it was not. */
function removedRefusal(store: Store, dir: string): string | undefined {
  const removal = removalOf(store);
  if (removal === undefined) return undefined;
  const id = store.identity.nodeId;
  return `node ${id} was removed from cluster ${store.identity.clusterId.slice(0, 8)}... (${
    removal.by === 0 ? "by a membership change in its log" : `node ${removal.by} said so`
  }), so ${dir} cannot run again; to bring this machine back, 'seguro join' from an empty data dir (it gets a new id), then delete ${dir}`;
}

/**
 * The check `seguro log verify` makes of each stored job (injected into the
 * cluster node, which knows no nouns): it is a valid jam that re-jams to the
 * same bytes. The problem found, or undefined.
 */
function jobProblem(job: Uint8Array): string | undefined {
  try {
    const again = jam(cue(job));
    if (again.length !== job.length || again.some((b, i) => b !== job[i])) {
      return "the stored jam does not re-jam to the same bytes";
    }
    return undefined;
  } catch (err) {
    return `the stored job is not a valid jam: ${(err as Error).message}`;
  }
}

/** A log line with a timestamp, to stderr. */
/** How a node writes its log: lines for people, or one JSON object per line. */
export type LogFormat = "text" | "json";

/** The log formats, for the flag's help and its check. */
export const LOG_FORMATS: readonly LogFormat[] = ["text", "json"];

/**
 * The node's log sink, to stderr (or `write`): `TIME seguro[node N] LINE`, or with `json`
 * one object per line, `{"ts", "node", "msg"}` plus the event's name and
 * fields when the line has one.
 */
export function nodeLog(
  nodeId: number,
  format: LogFormat,
  write: (text: string) => void = (text) => console.error(text),
): LogSink {
  const label = `seguro[node ${nodeId}]`;
  if (format === "json") {
    return (line, event) =>
      write(JSON.stringify({ ts: new Date().toISOString(), node: nodeId, msg: line, ...event }));
  }
  return (line) => write(`${new Date().toISOString()} ${label} ${line}`);
}

/**
 * Runs one step of a node's stop, for at most `ms`. Resolves true when it
 * finished in time; false when it failed or overran, after a log line that
 * names the step (the stop goes on without it, so a stop never hangs).
 */
export async function stopStep(
  step: string,
  work: () => Promise<unknown> | undefined,
  ms: number,
  log: LogSink,
): Promise<boolean> {
  let timer: ReturnType<typeof setTimeout> | undefined;
  const overrun = new Promise<"overrun">((resolve) => {
    timer = setTimeout(() => resolve("overrun"), ms);
  });
  try {
    if (await Promise.race([Promise.resolve().then(work), overrun]) !== "overrun") return true;
    log(`stop: ${step} did not finish within ${ms} ms; going on without it`);
    return false;
  } catch (e) {
    log(`stop: ${step} failed (${(e as Error)?.message ?? e}); going on without it`);
    return false;
  } finally {
    clearTimeout(timer);
  }
}

/**
 * Opens the store in `dir` and runs its node in the foreground until SIGINT or
 * SIGTERM (or until it stops by itself: a fatal error, its removal), then
 * shuts down gracefully, each step within a deadline (a step that overruns
 * is logged by name and left behind); a second signal ends the stop at once.
 * Returns the process exit code: 1 after a fatal error, else 0.
 */
export async function runNode(
  dir: string,
  overrides: {
    listen?: string;
    advertise?: string;
    standbyDir?: string;
    electionTimeoutMs?: number;
    /** Raft log entries kept behind the applied index (default: the driver's). */
    logTailEntries?: number;
    exec?: string;
    execGraceMs?: number;
    /** Warm standby: run `<exec's program> play` on grown standby piers this often (ms). */
    standbyPlayMs?: number;
    /** HOST:PORT to serve Prometheus metrics on. */
    metrics?: string;
    /** How the log is written (default text). */
    logFormat?: LogFormat;
    /** Already bound (init and join bind before they create anything); else bound here. */
    endpoints?: NodeEndpoints;
  } = {},
): Promise<number> {
  let exec: string[] | undefined;
  if (overrides.exec !== undefined) {
    if (overrides.standbyDir === undefined) {
      throw new NodeUsageError(
        "--exec runs the ship on its standby pier: pass --standby-dir DIR as well",
      );
    }
    try {
      exec = parseExec(overrides.exec);
    } catch (e) {
      throw new NodeUsageError((e as Error).message);
    }
  }
  if (overrides.standbyPlayMs !== undefined && exec === undefined) {
    throw new NodeUsageError(
      "--standby-play runs the --exec runtime's own 'play' on standby piers: pass --exec (and --standby-dir) as well",
    );
  }
  // New standby epochs name the runtime's own version, so that it rolls none on start.
  const vereVersion = exec === undefined ? undefined : await runtimeVersion(exec[0]);
  const node = readNodeFile(dir);
  let store: Store;
  try {
    store = Store.open(dir);
  } catch (e) {
    closeEndpoints(overrides.endpoints);
    throw e;
  }
  const recorded = {
    listen: node?.listen ?? store.localSettings.listen(),
    advertise: node?.advertise ?? store.localSettings.advertise(),
  };
  const listen = recorded.listen ?? overrides.listen ?? "";
  const advertise = recorded.advertise ?? overrides.advertise ?? "";
  const refusal = listen === "" || advertise === ""
    ? `${dir} does not say where to listen; pass --listen and --advertise`
    : removedRefusal(store, dir) ??
      addressChangeRefusal(dir, store.identity.nodeId, recorded, overrides);
  if (refusal !== undefined) {
    closeEndpoints(overrides.endpoints);
    store.close();
    throw new NodeError(refusal);
  }
  // Bound before anything starts: a busy port (peer or metrics) leaves nothing half-done.
  let endpoints: NodeEndpoints;
  try {
    endpoints = overrides.endpoints ??
      bindEndpoints(
        listen,
        overrides.metrics,
        "is this node already running?",
      );
  } catch (e) {
    store.close();
    throw e;
  }
  // After the ports: a node that cannot start writes no certificate.
  let security: NodeSecurity;
  try {
    security = await NodeSecurity.load(dir, store.secret(), store.identity.nodeId);
  } catch (e) {
    closeEndpoints(endpoints);
    store.close();
    throw e instanceof RangeError ? new NodeError(e.message) : e;
  }
  const { listener, metrics: metricsServer } = endpoints;
  const metrics = metricsServer === undefined ? undefined : new NodeMetrics(renderShip);
  if (metrics !== undefined) metricsServer?.serve(metrics);
  const log = nodeLog(store.identity.nodeId, overrides.logFormat ?? "text");
  const alarms = new Alarms(log);
  if (overrides.electionTimeoutMs !== undefined) {
    store.localSettings.setElectionTimeoutMs(overrides.electionTimeoutMs);
  }
  const electionMs = store.localSettings.electionTimeoutMs() ?? 0;
  const electionTicks = electionMs > 0
    ? Math.max(3, Math.round(electionMs / TICK_MS_DEFAULT))
    : ELECTION_TICKS_DEFAULT;
  const cluster: ClusterNode = new ClusterNode({
    store,
    listener,
    security: security.security,
    advertise,
    electionTicks,
    logTailEntries: overrides.logTailEntries,
    log: log,
    shipName: renderShip,
    checkJob: jobProblem,
    // Never work on the consensus path: the standby writes later, in slices; the
    // supervisor only compares run flags and the term, and steps later if they changed.
    onApplied: () => {
      standby?.schedule();
      supervisor?.applied();
    },
    alarms: () => alarms.list(),
    certificates: () => security.expiry(),
    rotateCertificate: security.certificate === undefined ? undefined : () => security.rotate(),
    observer: metrics?.observer,
    shipRuntime: (ship): ShipRuntimeJson | undefined => {
      const info = supervisor?.info(ship);
      if (info !== undefined || !cluster.isLeader || !cluster.runs(ship)) {
        return info;
      }
      return {
        nodeId: cluster.id,
        state: "no-exec",
        forMs: 0,
        committedEve: cluster.appliedShips.get(ship)?.lastEve ?? 0,
        alarm: "the master has no --exec command: restart it with --standby-dir and --exec",
      };
    },
  });
  const standby: StandbyPiers | undefined = overrides.standbyDir === undefined
    ? undefined
    : new StandbyPiers(
      overrides.standbyDir,
      {
        ships: cluster.appliedShips,
        images: cluster.appliedImages,
        layout: (ship) => cluster.layout(ship),
      },
      log,
      alarms,
      {
        vereVersion,
        play: overrides.standbyPlayMs === undefined || exec === undefined
          ? undefined
          : { argv: (pier) => [exec[0], "play", pier], everyMs: overrides.standbyPlayMs },
      },
    );
  standby?.schedule();
  const supervisor: Supervisor | undefined = standby === undefined || exec === undefined
    ? undefined
    : new Supervisor({
      node: supervisedNodeOf(cluster),
      standby,
      exec,
      socket: resolve(join(dir, RUNTIME_SOCKET)),
      graceMs: overrides.execGraceMs ?? EXEC_GRACE_MS_DEFAULT,
      electionMs: electionTicks * TICK_MS_DEFAULT,
      log: log,
      alarms,
    });
  const runtimeNode = cluster.runtimeNode();
  const runtime = new RuntimeServer(metrics?.timeReleases(runtimeNode) ?? runtimeNode, {
    // The runtime protocol carries no credential: the socket's file
    // permissions (0600 in a 0700 data dir) are its boundary, so no TCP.
    socketPath: join(dir, RUNTIME_SOCKET),
    log: log,
  });
  metrics?.watch(nodeSource(cluster, runtime));
  let stopping = false;
  let signalled = () => {};
  const signal = new Promise<void>((resolve) => signalled = resolve);
  let force = () => {};
  const forced = new Promise<false>((resolve) => force = () => resolve(false));
  const onSignal = () => {
    if (stopping) {
      // Whatever the stop waits for: this process exits, and each guard, seeing its
      // stdin close, stops its runtime (SIGTERM, then SIGKILL after the grace).
      log("a second signal: exiting now, without finishing the stop");
      force();
      return;
    }
    stopping = true;
    log("stopping (signal)", { event: "stopping" });
    signalled();
  };
  Deno.addSignalListener("SIGINT", onSignal);
  Deno.addSignalListener("SIGTERM", onSignal);
  cluster.start();
  security.renewWhileRunning(log);
  runtime.start();
  supervisor?.start();
  if (supervisor !== undefined) {
    log(`runs ships marked with 'seguro ship run' while master: ${exec!.join(" ")}`);
  }
  log(`runtime socket at ${join(dir, RUNTIME_SOCKET)}`, {
    event: "runtime_socket",
    path: join(dir, RUNTIME_SOCKET),
  });
  if (metricsServer !== undefined) {
    log(`metrics at http://${metricsServer.address}/metrics`, {
      event: "metrics",
      address: metricsServer.address,
    });
  }
  await Promise.race([signal, cluster.stopped]);
  stopping = true; // from here on, a signal forces the exit
  const step = (name: string, work: () => Promise<unknown> | undefined, ms: number) =>
    stopStep(name, work, ms, log);
  const stopAll = async (): Promise<boolean> => {
    // Runtimes first: they stop before this node can lose its lease.
    const runtimes = supervisor === undefined ||
      await step(
        "the exec supervisor (stopping the runtimes)",
        () => supervisor.close(),
        supervisor.closeMs,
      );
    runtime.close();
    const node = await step("the cluster node", () => cluster.stop(), CLUSTER_STOP_MS_MAX);
    standby?.close();
    security.close();
    metrics?.close();
    const served = metricsServer === undefined ||
      await step("the metrics server", () => metricsServer.close(), METRICS_STOP_MS_MAX);
    return runtimes && node && served;
  };
  const clean = await Promise.race([stopAll(), forced]);
  Deno.removeSignalListener("SIGINT", onSignal);
  Deno.removeSignalListener("SIGTERM", onSignal);
  log(
    cluster.fatal
      ? "stopped after a fatal error"
      : !clean
      ? "stopped without finishing its stop (see the lines above)"
      : cluster.removed
      ? `stopped: removed from the cluster (delete ${dir} once you no longer need it)`
      : "stopped",
    { event: "stopped", fatal: cluster.fatal !== undefined, removed: cluster.removed },
  );
  return cluster.fatal ? 1 : 0;
}
