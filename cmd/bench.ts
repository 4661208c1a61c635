/**
 * `seguro bench`: drives a node's runtime socket like a busy runtime and
 * reports released events/s and release latency.
 * @module
 */

import { Command, type CommandUnknownOpts } from "@commander-js/extra-typings";
import { join } from "node:path";
import { Op } from "../cluster/api.ts";
import type { NodeStatus, ShipJson } from "../cluster/node.ts";
import { daFromMillis, renderShip } from "../vere/event.ts";
import { cord, jam, list, tuple } from "../vere/noun.ts";
import { RuntimeClient } from "../vere/runtime_client.ts";
import { CliError, positiveOption as positive } from "./errors.ts";
import {
  dataDirOf,
  RUNTIME_SOCKET,
  targetFlags,
  targetOf,
  type TargetOptions,
} from "./cluster_options.ts";
import { optimismOption, shipArgument, withNode } from "./ship.ts";
import { count, note, print, toJson } from "./output.ts";

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

/** An event job of about `sizeBytes` bytes of jam. */
function jobOf(n: number, sizeBytes: number): Uint8Array {
  const text = "x".repeat(Math.max(1, sizeBytes - 40));
  return jam(
    tuple(daFromMillis(Date.now()) + BigInt(n), list([cord("bench")]), cord("load"), cord(text)),
  );
}

/**
 * Plans `events` events of `ship` from its next event on, keeping `inflight`
 * planned but not yet released, and measures each event's plan-to-release time.
 */
export async function runRuntimeLoad(
  socketPath: string,
  ship: bigint,
  options: { events: number; sizeBytes: number; inflight: number; progress?: (s: string) => void },
): Promise<LoadResult> {
  const rt = await RuntimeClient.connect({ path: socketPath });
  try {
    const head = rt.next((m) => m.type === "head" || m.type === "oops");
    rt.send({ type: "head", ship });
    const h = await head;
    if (h.type !== "head") {
      throw new CliError(
        `${renderShip(ship)} is not on this cluster; add it with 'seguro ship add'`,
      );
    }
    const first = h.eve + 1;
    const last = h.eve + options.events;
    const sentAt = new Float64Array(options.events);
    const latencies: number[] = [];
    let released = h.eve;
    let next = first;
    const job = jobOf(0, options.sizeBytes);
    let refused: string | undefined;
    let wake: (() => void) | undefined;
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
    const t0 = performance.now();
    let lastShown = t0;
    while (released < last) {
      if (refused !== undefined) throw new CliError(`the load stopped: ${refused}`);
      while (next <= last && next - released <= options.inflight) {
        sentAt[next - first] = performance.now();
        rt.plan(ship, next, next & 0x7fff_ffff, job);
        next++;
      }
      await new Promise<void>((r) => wake = r);
      if (options.progress && performance.now() - lastShown > 1000) {
        lastShown = performance.now();
        options.progress(`released ${count(released - h.eve)} of ${count(options.events)}`);
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
    rt.close();
  }
}

/** Builds the `bench` command. */
export function benchCommand(): CommandUnknownOpts {
  return targetFlags(
    new Command("bench")
      .description(
        "plan events through this node's runtime socket and report released events/s and latency",
      )
      .requiredOption(
        "--ship <ship>",
        "a ship on the cluster (add it first with 'seguro ship add ~ship --fake')",
        shipArgument,
      )
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
  ).action(
    async (
      options: TargetOptions & {
        ship: bigint;
        events: number;
        size: number;
        inflight: number;
        optimism?: number;
        json?: boolean;
      },
    ) => {
      const target = targetOf(options);
      const dir = dataDirOf(options);
      if (options.optimism !== undefined) {
        await withNode(target, (c) =>
          c.requestJson(Op.ship, {
            action: "set",
            ship: String(options.ship),
            optimism: options.optimism,
          }));
      }
      const before = await withNode(target, (c) => c.requestJson<NodeStatus>(Op.status));
      if (before.role !== "leader") {
        throw new CliError(
          `this node is not the master; run 'seguro bench' on node ${before.leaderId} (${
            before.leaderAddress ?? "address unknown"
          })`,
        );
      }
      const ships = await withNode(
        target,
        (c) => c.requestJson<ShipJson[]>(Op.ship, { action: "list" }),
      );
      const info = ships.find((s) => s.ship === String(options.ship));
      const result = await runRuntimeLoad(join(dir, RUNTIME_SOCKET), options.ship, {
        events: options.events,
        sizeBytes: options.size,
        inflight: options.inflight,
        progress: (s) => note(s),
      });
      const after = await withNode(target, (c) => c.requestJson<NodeStatus>(Op.status));
      const fsyncs = (after.store.fsyncs - before.store.fsyncs) / result.events;
      const summary = {
        ...result,
        fsyncsPerEvent: fsyncs,
        optimism: options.optimism ?? info?.optimism ?? -1,
        inflight: options.inflight,
        sizeBytes: options.size,
      };
      if (options.json) {
        print(toJson(summary));
        return;
      }
      print(
        `${count(result.events)} events of ~${options.size} B, ${options.inflight} in flight: ${
          result.eventsPerSecond.toFixed(0)
        } released/s, ` +
          `release latency p50 ${result.p50Ms.toFixed(2)} ms, p99 ${result.p99Ms.toFixed(2)} ms; ${
            fsyncs.toFixed(3)
          } fsyncs per event on the master`,
      );
    },
  );
}
