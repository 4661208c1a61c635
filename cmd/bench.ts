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

import { renderShip } from "../vere/event.ts";

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

import { type LoadResult, runRuntimeLoad } from "../server/runtime_load.ts";

import { optimismOption, shipArgument, withNode } from "./lib/ships.ts";

import { count, note, print, toJson } from "./lib/output.ts";

/** Random names tried for the scratch ship before giving up (each is almost surely free). */
const SCRATCH_NAME_TRIES_MAX = 100;

/** Exit code after Ctrl-C (128 + SIGINT), as shells report it. */
const EXIT_INTERRUPTED = 130;

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
