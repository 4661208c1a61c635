/**
 * `seguro bench`: runs a runtime load (server/runtime_load.ts) on the
 * master's runtime socket, by default into a scratch fake ship it adds and
 * removes again, also when the load fails or `options.signal` aborts: the
 * events a bench plans are permanent in whatever ship they go to.
 *
 * @example
 * ```ts ignore
 * const r = await benchShip(target, { socket, events: 10_000, sizeBytes: 1024, inflight: 64 });
 * console.log(`${r.eventsPerSecond.toFixed(0)} released/s`);
 * ```
 * @module
 */

import { withLeader } from "../cluster/api.ts";
import type { ShipJson } from "../cluster/admin_protocol.ts";

import { renderShip } from "../vere/event.ts";

import { NodeError, NodeUsageError } from "./errors.ts";

import { type ClusterTarget, withNode } from "./pier_client.ts";

import { cpuMicrosPerEvent, processCpuMicros } from "./process_cpu.ts";

import { type LoadResult, runRuntimeLoad } from "./runtime_load.ts";

/** Random names tried for the scratch ship before giving up (each is almost surely free). */
const SCRATCH_NAME_TRIES_MAX = 100;

/** How a bench goes. */
export type BenchProgress =
  /** The ship to bench is chosen; from now on a scratch one is removed at the end. */
  | { kind: "chosen"; ship: bigint; scratch: boolean }
  /** The scratch ship is on the cluster. */
  | { kind: "added"; ship: bigint }
  /** A progress line of the load, about once a second. */
  | { kind: "load"; line: string }
  /** The scratch ship and its events are removed. */
  | { kind: "removed"; ship: bigint }
  /** The scratch ship could not be removed after the bench failed (the failure follows). */
  | { kind: "notRemoved"; ship: bigint; reason: string };

/** Options of {@linkcode benchShip}. */
export interface BenchShipOptions {
  /** Path of the master's runtime socket. */
  socket: string;
  /** The pid of the node serving `socket`, when it runs on this machine: its CPU is measured too. */
  nodePid?: number;
  /** Bench this ship instead of a scratch one (its events stay): a fake one unless `realOk`. */
  ship?: bigint;
  /** With `ship`: a real ship may take the bench events for good. */
  realOk?: boolean;
  /** Events to plan. */
  events: number;
  /** Approximate jam size of each event, bytes. */
  sizeBytes: number;
  /** Events planned but not yet released, at most. */
  inflight: number;
  /** Set the ship's optimism first. */
  optimism?: number;
  /** Stops the load; a scratch ship is still removed, then the bench rejects. */
  signal?: AbortSignal;
  /** Told how the bench goes. */
  progress?: (p: BenchProgress) => void;
}

/** What a bench measured, and of which ship. */
export interface BenchResult extends LoadResult {
  /** The ship benched. */
  ship: bigint;
  /** Whether it was a scratch ship (now removed). */
  scratch: boolean;
  /** The master's fsyncs per released event during the load. */
  fsyncsPerEvent: number;
  /**
   * CPU microseconds per released event of the node serving the socket (all
   * its threads, 10 ms steps), or null without `nodePid` or /proc.
   */
  nodeCpuMicrosPerEvent: number | null;
  /** The ship's optimism during the load (-1: the cluster default). */
  optimism: number;
}

/** The scratch ship of a bench could not be removed; the message says how to remove it. */
export class ScratchNotRemovedError extends NodeError {
  /** A failed removal of `ship`, with the `reason` it failed. */
  constructor(ship: bigint, reason: string) {
    super(`the scratch ship ${renderShip(ship)} was not removed (${reason}); ${removeHint(ship)}`);
    this.name = "ScratchNotRemovedError";
  }
}

/** How to remove a scratch ship left behind. */
export function removeHint(ship: bigint): string {
  return `remove it with 'seguro ship remove ${renderShip(ship)} --yes'`;
}

/** A random planet that is not in `ships`, for the scratch ship. */
export function scratchShipOf(ships: readonly ShipJson[]): bigint {
  const taken = new Set(ships.map((s) => s.ship));
  for (let i = 0; i < SCRATCH_NAME_TRIES_MAX; i++) {
    const [n] = crypto.getRandomValues(new Uint32Array(1));
    if (n >= 0x1_0000 && !taken.has(String(n))) return BigInt(n);
  }
  throw new Error(`invariant: ${SCRATCH_NAME_TRIES_MAX} random planets are all on the cluster`);
}

/**
 * The ship to bench: `options.ship` if it is on the cluster and fake (or
 * `realOk`), undefined without one (a scratch ship). A missing ship is a
 * NodeError, a real one without `realOk` a NodeUsageError.
 */
export function chosenShip(
  options: Pick<BenchShipOptions, "ship" | "realOk" | "events">,
  ships: readonly ShipJson[],
): bigint | undefined {
  if (options.ship === undefined) return undefined;
  const name = renderShip(options.ship);
  const info = ships.find((s) => s.ship === String(options.ship));
  if (info === undefined) {
    throw new NodeError(
      `${name} is not on this cluster; leave out --ship to bench a scratch ship, or add ${name} with 'seguro ship add ${name} --fake'`,
    );
  }
  if (!info.fake && !options.realOk) {
    throw new NodeUsageError(
      `${name} is a real ship and the ${
        options.events.toLocaleString("en-US")
      } /bench events would stay in its log for good; leave out --ship to bench a scratch ship, or pass --yes to write them into ${name}`,
    );
  }
  return options.ship;
}

/**
 * Benches the runtime socket `options.socket` of the master at `target`
 * (another node is a NodeError naming the master). A scratch ship is removed
 * whatever happens; when that fails after a successful load, the bench
 * rejects with a {@linkcode ScratchNotRemovedError}.
 */
export async function benchShip(
  target: ClusterTarget,
  options: BenchShipOptions,
): Promise<BenchResult> {
  const status = await withNode(target, (c) => c.status());
  if (status.role !== "leader") {
    throw new NodeError(
      `this node is not the master; run 'seguro bench' on node ${status.leaderId} (${
        status.leaderAddress ?? "address unknown"
      })`,
    );
  }
  const ships = await withNode(target, (c) => c.ships.list());
  const chosen = chosenShip(options, ships);
  const ship = chosen ?? scratchShipOf(ships);
  const scratch = chosen === undefined;
  options.progress?.({ kind: "chosen", ship, scratch });
  let added = false;
  let result: BenchResult;
  try {
    if (scratch) {
      await withLeader(
        target.address,
        target.credentials,
        (c) => c.ships.add(ship, { fake: true, life: 0 }),
      );
      added = true;
      options.progress?.({ kind: "added", ship });
    }
    options.signal?.throwIfAborted();
    const optimism = options.optimism;
    if (optimism !== undefined) {
      await withLeader(target.address, target.credentials, (c) => c.ships.set(ship, optimism));
    }
    const before = await withNode(target, (c) => c.status());
    const nodeCpuBefore = options.nodePid === undefined
      ? undefined
      : processCpuMicros(options.nodePid);
    const load = await runRuntimeLoad(options.socket, ship, {
      events: options.events,
      sizeBytes: options.sizeBytes,
      inflight: options.inflight,
      progress: (line) => options.progress?.({ kind: "load", line }),
      signal: options.signal,
    });
    const nodeCpuAfter = options.nodePid === undefined
      ? undefined
      : processCpuMicros(options.nodePid);
    const after = await withNode(target, (c) => c.status());
    result = {
      ...load,
      ship,
      scratch,
      fsyncsPerEvent: (after.store.fsyncs - before.store.fsyncs) / load.events,
      nodeCpuMicrosPerEvent: cpuMicrosPerEvent(nodeCpuBefore, nodeCpuAfter, load.events) ?? null,
      optimism: optimism ?? ships.find((s) => s.ship === String(ship))?.optimism ?? -1,
    };
  } catch (e) {
    if (added) await removeScratch(target, ship, options.progress, e);
    throw e;
  }
  if (added) await removeScratch(target, ship, options.progress, undefined);
  return result;
}

/**
 * Removes the scratch ship. When that fails, it is a ScratchNotRemovedError
 * without an earlier `failure`; with one, a progress report, and the failure
 * stands.
 */
async function removeScratch(
  target: ClusterTarget,
  ship: bigint,
  progress: ((p: BenchProgress) => void) | undefined,
  failure: unknown,
): Promise<void> {
  try {
    await withLeader(target.address, target.credentials, (c) => c.ships.remove(ship));
    progress?.({ kind: "removed", ship });
  } catch (e) {
    const reason = (e as Error).message;
    if (failure === undefined) throw new ScratchNotRemovedError(ship, reason);
    progress?.({ kind: "notRemoved", ship, reason });
  }
}
