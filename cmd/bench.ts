/**
 * `seguro bench`: drives a node's runtime socket like a busy runtime and
 * reports released events/s and release latency. By default it benches a
 * scratch fake ship it adds and removes (also on failure and Ctrl-C): the
 * events it plans are permanent in whatever ship they go to. The workflow is
 * server/bench_scratch.ts; this module parses, handles Ctrl-C and prints.
 * @module
 */

import { Command, type CommandUnknownOpts } from "@commander-js/extra-typings";

import { join } from "node:path";

import { renderShip } from "../vere/event.ts";

import { CliError, positiveOption as positive } from "./lib/errors.ts";

import { cliErrorOf, dataDirOf, targetFlags, targetOf, type TargetOptions } from "./lib/options.ts";

import { RUNTIME_SOCKET } from "../server/node.ts";

import { nodePidOf } from "../server/process_cpu.ts";

import {
  type BenchProgress,
  type BenchResult,
  benchShip,
  removeHint,
  ScratchNotRemovedError,
} from "../server/bench_scratch.ts";

import { optimismOption, shipArgument } from "./lib/ships.ts";

import { count, note, print, toJson } from "./lib/output.ts";

/** Exit code after Ctrl-C (128 + SIGINT), as shells report it. */
const EXIT_INTERRUPTED = 130;

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

/** A bench's progress as a line for stderr, or nothing. */
function benchLine(p: BenchProgress): string | undefined {
  switch (p.kind) {
    case "chosen":
      return undefined;
    case "added":
      return `benching the scratch ship ${
        renderShip(p.ship)
      } (fake); it and its events are removed at the end`;
    case "load":
      return p.line;
    case "removed":
      return `removed the scratch ship ${renderShip(p.ship)} and its events`;
    case "notRemoved":
      return `the scratch ship ${renderShip(p.ship)} was not removed (${p.reason}); ${
        removeHint(p.ship)
      }`;
  }
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
    // Ctrl-C or SIGTERM once stops the load and removes a scratch ship; twice exits at once.
    const stop = new AbortController();
    let chosen: { ship: bigint; scratch: boolean } | undefined;
    let removed = false;
    const onSignal = () => {
      const scratch = chosen?.scratch === true;
      const name = renderShip(chosen?.ship ?? 0n);
      if (stop.signal.aborted) {
        if (scratch) {
          note(
            `stopped before the scratch ship ${name} was removed; ${removeHint(chosen!.ship)}`,
          );
        }
        Deno.exit(EXIT_INTERRUPTED);
      }
      note(scratch ? `interrupted: removing the scratch ship ${name}` : "interrupted");
      stop.abort(new CliError("the bench was interrupted", EXIT_INTERRUPTED));
    };
    const interrupted = () =>
      new CliError(
        `the bench was interrupted${
          removed
            ? `; the scratch ship ${renderShip(chosen!.ship)} and its events were removed`
            : ""
        }`,
        EXIT_INTERRUPTED,
      );
    let summary: BenchResult;
    try {
      summary = await benchShip(target, {
        socket: join(dir, RUNTIME_SOCKET),
        // The node of this data dir, when it runs here, for its CPU per event.
        nodePid: nodePidOf(dir),
        ship: options.ship,
        realOk: options.yes,
        events: options.events,
        sizeBytes: options.size,
        inflight: options.inflight,
        optimism: options.optimism,
        signal: stop.signal,
        progress: (p) => {
          if (p.kind === "chosen") {
            // Signals are ours once there is a ship to clean up after.
            chosen = p;
            Deno.addSignalListener("SIGINT", onSignal);
            Deno.addSignalListener("SIGTERM", onSignal);
          }
          if (p.kind === "removed") removed = true;
          const line = benchLine(p);
          if (line !== undefined) note(line);
        },
      });
    } catch (e) {
      if (stop.signal.aborted && !(e instanceof ScratchNotRemovedError)) throw interrupted();
      throw cliErrorOf(e);
    } finally {
      if (chosen !== undefined) {
        Deno.removeSignalListener("SIGINT", onSignal);
        Deno.removeSignalListener("SIGTERM", onSignal);
      }
    }
    if (stop.signal.aborted) throw interrupted();
    const name = renderShip(summary.ship);
    const scratch = summary.scratch;
    const fsyncs = summary.fsyncsPerEvent;
    const nodeCpu = summary.nodeCpuMicrosPerEvent;
    if (options.json) {
      print(toJson({
        ...summary,
        ship: name,
        inflight: options.inflight,
        sizeBytes: options.size,
      }));
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
        } fsyncs per event on the master; CPU per event: ${
          nodeCpu === null ? "" : `node ${nodeCpu.toFixed(0)} us, `
        }this load ${summary.loadCpuMicrosPerEvent.toFixed(0)} us`,
    );
  });
}
