/**
 * `seguro bench`: drives a node's runtime socket like a busy runtime and
 * reports released events/s and release latency. By default it benches a
 * scratch fake ship it adds and removes (also on failure and Ctrl-C): the
 * events it plans are permanent in whatever ship they go to.
 * @module
 */

import { Command, type CommandUnknownOpts } from "@commander-js/extra-typings";
import { join } from "node:path";
import { type ClusterClient, withLeader } from "../cluster/api.ts";
import type { ShipJson } from "../cluster/admin_protocol.ts";
import { daFromMillis, renderShip } from "../vere/event.ts";
import { cord, jam, list, tuple } from "../vere/noun.ts";
import { RuntimeClient } from "../vere/runtime_client.ts";
import { CliError, positiveOption as positive, UsageError } from "./lib/errors.ts";
import {
  cliErrorOf,
  dataDirOf,
  type Target,
  targetFlags,
  targetOf,
  type TargetOptions,
} from "./lib/options.ts";
import { RUNTIME_SOCKET } from "../server/node.ts";
import { optimismOption, shipArgument, withNode } from "./lib/ships.ts";
import { count, note, print, toJson } from "./lib/output.ts";

/** Longest the load waits for the node's `%lead` for the ship (a new leader catching up). */
const LEAD_WAIT_MS_MAX = 30_000;

/** Random names tried for the scratch ship before giving up (each is almost surely free). */
const SCRATCH_NAME_TRIES_MAX = 100;

/** Exit code after Ctrl-C (128 + SIGINT), as shells report it. */
const EXIT_INTERRUPTED = 130;

/** What one load run measured. */
export interface LoadResult {
  /** Events released. */
  events: number;
  /** Released events per second. */
  eventsPerSecond: number;
  /** Median plan-to-release latency, ms. */
  p50Ms: number;
  /** 99th percentile plan-to-release latency, ms. */
  p99Ms: number;
  /** Seconds the run took. */
  seconds: number;
}

/** Options of {@linkcode runRuntimeLoad}. */
export interface LoadOptions {
  /** Events to plan. */
  events: number;
  /** Approximate jam size of each event, bytes. */
  sizeBytes: number;
  /** Events planned but not yet released, at most. */
  inflight: number;
  /** Called about once a second with a progress line. */
  progress?: (s: string) => void;
  /** Stops the load: it rejects with the signal's reason. */
  signal?: AbortSignal;
}

/** An event job of about `sizeBytes` bytes of jam. */
function jobOf(n: number, sizeBytes: number): Uint8Array {
  const text = "x".repeat(Math.max(1, sizeBytes - 40));
  return jam(
    tuple(daFromMillis(Date.now()) + BigInt(n), list([cord("bench")]), cord("load"), cord(text)),
  );
}

/** The node's head of `ship` (its last event); the ship is followed from then on. */
async function headOf(rt: RuntimeClient, ship: bigint): Promise<number> {
  const answer = rt.next((m) => (m.type === "head" && m.ship === ship) || m.type === "oops");
  rt.send({ type: "head", ship });
  const h = await answer;
  if (h.type !== "head") {
    throw new CliError(
      `${renderShip(ship)} is not on this cluster; add it with 'seguro ship add'`,
    );
  }
  return h.eve;
}

/**
 * Resolves once the connection's last notice for `ship` is `%lead`: only then
 * is the node's head the log's tail (rules 2, 4 and 8 of the runtime protocol).
 */
async function leadOf(rt: RuntimeClient, ship: bigint, signal?: AbortSignal): Promise<void> {
  signal?.throwIfAborted();
  if (rt.isLead(ship)) return;
  const name = renderShip(ship);
  let cleanup = () => {};
  try {
    await new Promise<void>((resolve, reject) => {
      const off = rt.on((m) => {
        if (m.type === "lead" && m.ship === ship) resolve();
        if (m.type === "away" && m.ship === ship && m.master !== "") {
          reject(
            new CliError(
              `this node is not the master of ${name} (${m.master} is); run 'seguro bench' on the master's node`,
            ),
          );
        }
      });
      const timer = setTimeout(() =>
        reject(
          new CliError(
            `this node did not become master of ${name} within ${
              LEAD_WAIT_MS_MAX / 1000
            } s; see 'seguro status' and run 'seguro bench' on the leader's node`,
          ),
        ), LEAD_WAIT_MS_MAX);
      const onAbort = () => reject(signal!.reason);
      signal?.addEventListener("abort", onAbort, { once: true });
      rt.closed.then(() =>
        reject(new CliError("the node closed the runtime socket; check it with 'seguro status'"))
      );
      cleanup = () => {
        off();
        clearTimeout(timer);
        signal?.removeEventListener("abort", onAbort);
      };
    });
  } finally {
    cleanup();
  }
}

/** Connects to a node's runtime socket; a missing or dead socket is a CliError. */
async function connectRuntime(socketPath: string): Promise<RuntimeClient> {
  try {
    return await RuntimeClient.connect({ path: socketPath });
  } catch (e) {
    if (e instanceof Deno.errors.NotFound || e instanceof Deno.errors.ConnectionRefused) {
      throw new CliError(
        `no node listens on the runtime socket ${socketPath}; pass the --data-dir of the master's node`,
      );
    }
    throw e;
  }
}

/**
 * Plans `options.events` events of `ship` from its head on (after the node's
 * `%lead`), keeping `options.inflight` planned but not yet released, and
 * measures each event's plan-to-release time. The events are permanent.
 */
export async function runRuntimeLoad(
  socketPath: string,
  ship: bigint,
  options: LoadOptions,
): Promise<LoadResult> {
  const rt = await connectRuntime(socketPath);
  let wake: (() => void) | undefined;
  const onAbort = () => wake?.();
  options.signal?.addEventListener("abort", onAbort);
  try {
    await headOf(rt, ship); // an unknown ship fails here; a known one gets its %lead or %fence
    await leadOf(rt, ship, options.signal);
    const head = await headOf(rt, ship);
    const first = head + 1;
    const last = head + options.events;
    const sentAt = new Float64Array(options.events);
    const latencies: number[] = [];
    let released = head;
    let next = first;
    const job = jobOf(0, options.sizeBytes);
    let refused: string | undefined;
    rt.on((m) => {
      if (m.type === "done" && m.ship === ship && m.eve > released) {
        const now = performance.now();
        for (let e = released + 1; e <= m.eve; e++) latencies.push(now - sentAt[e - first]);
        released = m.eve;
        wake?.();
      } else if (
        (m.type === "nope" || m.type === "away" || m.type === "fence") && m.ship === ship
      ) {
        refused = m.type === "nope"
          ? m.why
          : m.type === "away"
          ? `this node is not the master (${m.master})`
          : "the node was fenced";
        wake?.();
      }
    });
    rt.closed.then(() => {
      refused ??= "the node closed the runtime socket";
      wake?.();
    });
    const t0 = performance.now();
    let lastShown = t0;
    while (released < last) {
      options.signal?.throwIfAborted();
      if (refused !== undefined) throw new CliError(`the load stopped: ${refused}`);
      while (next <= last && next - released <= options.inflight) {
        sentAt[next - first] = performance.now();
        rt.plan(ship, next, next & 0x7fff_ffff, job);
        next++;
      }
      await new Promise<void>((r) => wake = r);
      if (options.progress && performance.now() - lastShown > 1000) {
        lastShown = performance.now();
        options.progress(`released ${count(released - head)} of ${count(options.events)}`);
      }
    }
    const seconds = (performance.now() - t0) / 1000;
    latencies.sort((a, b) => a - b);
    const q = (p: number) =>
      latencies[Math.min(latencies.length - 1, Math.floor(p * latencies.length))];
    return {
      events: options.events,
      eventsPerSecond: options.events / seconds,
      p50Ms: q(0.5),
      p99Ms: q(0.99),
      seconds,
    };
  } finally {
    options.signal?.removeEventListener("abort", onAbort);
    rt.close();
  }
}

/** A random planet that is not on the cluster, for the scratch ship. */
function scratchShipOf(ships: readonly ShipJson[]): bigint {
  const taken = new Set(ships.map((s) => s.ship));
  for (let i = 0; i < SCRATCH_NAME_TRIES_MAX; i++) {
    const [n] = crypto.getRandomValues(new Uint32Array(1));
    if (n >= 0x1_0000 && !taken.has(String(n))) return BigInt(n);
  }
  throw new Error(`invariant: ${SCRATCH_NAME_TRIES_MAX} random planets are all on the cluster`);
}

/** Sends one ship request to the leader; errors become one-line CliErrors. */
async function shipRequest(
  target: Target,
  request: (c: ClusterClient) => Promise<unknown>,
): Promise<void> {
  try {
    await withLeader(target.address, target.credentials, request);
  } catch (e) {
    throw cliErrorOf(e);
  }
}

/** The options of `seguro bench`. */
interface BenchOptions extends TargetOptions {
  ship?: bigint;
  yes?: boolean;
  events: number;
  size: number;
  inflight: number;
  optimism?: number;
  json?: boolean;
}

/** The ship to bench: `--ship` if it is fake or `--yes` says so, else undefined (a scratch one). */
function chosenShip(options: BenchOptions, ships: readonly ShipJson[]): bigint | undefined {
  if (options.ship === undefined) return undefined;
  const name = renderShip(options.ship);
  const info = ships.find((s) => s.ship === String(options.ship));
  if (info === undefined) {
    throw new CliError(
      `${name} is not on this cluster; leave out --ship to bench a scratch ship, or add ${name} with 'seguro ship add ${name} --fake'`,
    );
  }
  if (!info.fake && !options.yes) {
    throw new UsageError(
      `${name} is a real ship and the ${
        count(options.events)
      } /bench events would stay in its log for good; leave out --ship to bench a scratch ship, or pass --yes to write them into ${name}`,
    );
  }
  return options.ship;
}

/** Builds the `bench` command. */
export function benchCommand(): CommandUnknownOpts {
  return targetFlags(
    new Command("bench")
      .description(
        "plan events through this node's runtime socket and report released events/s and " +
          "latency; by default into a scratch fake ship that is removed with its events afterwards " +
          "(also on failure and Ctrl-C)",
      )
      .option(
        "--ship <ship>",
        "bench this ship instead, keeping the events (permanent): a fake ship, or a real one with --yes",
        shipArgument,
      )
      .option("--yes", "with --ship: write the bench events into a real ship for good")
      .option("--events <n>", "events to plan", positive("--events"), 10_000)
      .option("--size <bytes>", "approximate jam size of each event", positive("--size"), 1024)
      .option(
        "--inflight <n>",
        "events planned but not yet released, at most",
        positive("--inflight"),
        64,
      )
      .option(
        "--optimism <k>",
        "set the ship's optimism first ('quorum' or a replica count)",
        optimismOption,
      )
      .option("--json", "print JSON"),
  ).action(async (options: BenchOptions) => {
    const target = targetOf(options);
    const dir = dataDirOf(options);
    const status = await withNode(target, (c) => c.status());
    if (status.role !== "leader") {
      throw new CliError(
        `this node is not the master; run 'seguro bench' on node ${status.leaderId} (${
          status.leaderAddress ?? "address unknown"
        })`,
      );
    }
    const ships = await withNode(target, (c) => c.ships.list());
    const chosen = chosenShip(options, ships);
    const ship = chosen ?? scratchShipOf(ships);
    const name = renderShip(ship);
    const scratch = chosen === undefined;
    const removeHint = `remove it with 'seguro ship remove ${name} --yes'`;

    const stop = new AbortController();
    const onSignal = () => {
      if (stop.signal.aborted) {
        if (scratch) note(`stopped before the scratch ship ${name} was removed; ${removeHint}`);
        Deno.exit(EXIT_INTERRUPTED);
      }
      note(scratch ? `interrupted: removing the scratch ship ${name}` : "interrupted");
      stop.abort(new CliError("the bench was interrupted", EXIT_INTERRUPTED));
    };
    Deno.addSignalListener("SIGINT", onSignal);
    Deno.addSignalListener("SIGTERM", onSignal);
    let added = false;
    let removed = false;
    let failure: unknown;
    let summary: (LoadResult & Record<string, unknown>) | undefined;
    let fsyncs = 0;
    try {
      if (scratch) {
        await shipRequest(target, (c) => c.ships.add(ship, { fake: true, life: 0 }));
        added = true;
        note(`benching the scratch ship ${name} (fake); it and its events are removed at the end`);
      }
      stop.signal.throwIfAborted();
      if (options.optimism !== undefined) {
        const optimism = options.optimism;
        await shipRequest(target, (c) => c.ships.set(ship, optimism));
      }
      const before = await withNode(target, (c) => c.status());
      const result = await runRuntimeLoad(join(dir, RUNTIME_SOCKET), ship, {
        events: options.events,
        sizeBytes: options.size,
        inflight: options.inflight,
        progress: (s) => note(s),
        signal: stop.signal,
      });
      const after = await withNode(target, (c) => c.status());
      fsyncs = (after.store.fsyncs - before.store.fsyncs) / result.events;
      summary = {
        ...result,
        ship: name,
        scratch,
        fsyncsPerEvent: fsyncs,
        optimism: options.optimism ??
          ships.find((s) => s.ship === String(ship))?.optimism ?? -1,
        inflight: options.inflight,
        sizeBytes: options.size,
      };
    } catch (e) {
      failure = e;
    }
    try {
      if (added) {
        try {
          await shipRequest(target, (c) => c.ships.remove(ship));
          removed = true;
          note(`removed the scratch ship ${name} and its events`);
        } catch (e) {
          const why = `the scratch ship ${name} was not removed (${
            (e as Error).message
          }); ${removeHint}`;
          if (failure === undefined) throw new CliError(why);
          note(why);
        }
      }
    } finally {
      Deno.removeSignalListener("SIGINT", onSignal);
      Deno.removeSignalListener("SIGTERM", onSignal);
    }
    if (stop.signal.aborted) {
      throw new CliError(
        `the bench was interrupted${
          removed ? `; the scratch ship ${name} and its events were removed` : ""
        }`,
        EXIT_INTERRUPTED,
      );
    }
    if (failure !== undefined) throw failure;
    if (summary === undefined) throw new Error("invariant: a bench without failure has a summary");
    if (options.json) {
      print(toJson(summary));
      return;
    }
    print(
      `${name}${scratch ? " (scratch, removed)" : ""}: ${
        count(summary.events)
      } events of ~${options.size} B, ${options.inflight} in flight: ${
        summary.eventsPerSecond.toFixed(0)
      } released/s, ` +
        `release latency p50 ${summary.p50Ms.toFixed(2)} ms, p99 ${summary.p99Ms.toFixed(2)} ms; ${
          fsyncs.toFixed(3)
        } fsyncs per event on the master`,
    );
  });
}
