/**
 * A runtime's load on a node's runtime socket, for `seguro bench` and
 * bench/runtime_bench.ts: plans events as a runtime would (waiting for
 * `%lead`, planning at the head), keeps a number in flight, and measures
 * released events per second, release latency and its own CPU per event.
 *
 * The load must cost little CPU, so as not to take it from the node it
 * measures: every event carries the same job, so a `%plan` frame is
 * spliced rather than jammed (vere/plan_frames.ts); frames are encoded
 * ahead in runs of {@linkcode PLAN_RUN_BYTES} (the first before the clock
 * starts) into reused buffers, and the plans that go out together leave in
 * one write of a slice of a run.
 * @module
 */

import process from "node:process";
import { daFromMillis, renderShip } from "../vere/event.ts";
import { cord, jam, list, tuple } from "../vere/noun.ts";
import { PlanFrameEncoder, type PlanFrameRun } from "../vere/plan_frames.ts";
import { RuntimeClient } from "../vere/runtime_client.ts";
import { NodeError } from "./errors.ts";

/** A count with thousands separators, as the CLI prints counts. */
function grouped(n: number): string {
  return n.toLocaleString("en-US");
}

/** Longest the load waits for the node's `%lead` for the ship (a new leader catching up). */
const LEAD_WAIT_MS_MAX = 30_000;

/**
 * Bytes of `%plan` frames encoded together in one run (about a thousand 1
 * KiB events): small enough that encoding one in the loop is a pause of a
 * millisecond or so, large enough that a window of a thousand events in
 * flight spans two.
 */
export const PLAN_RUN_BYTES = 1024 * 1024;

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
  /**
   * CPU microseconds per released event of this process (user + system, all
   * threads) from connecting to the last release, encoding included.
   */
  loadCpuMicrosPerEvent: number;
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
    throw new NodeError(
      `${renderShip(ship)} is not on this cluster; add it with 'seguro ship add'`,
    );
  }
  return h.eve;
}

/** The mug the load gives event `eve`: the protocol leaves it to the runtime, and nodes only store it. */
function mugOf(eve: number): number {
  return eve & 0x7fff_ffff;
}

/**
 * `%plan` frames of events `first` to `last`, encoded a run of about
 * {@linkcode PLAN_RUN_BYTES} at a time as the window reaches them. A run's
 * buffer is reused once all its events are released (the node has read
 * them, so no write still needs its bytes): the buffers in use cover the
 * events in flight plus one run, and fresh memory's page faults are paid
 * only once per buffer.
 */
class PlanFrameQueue {
  readonly #encoder: PlanFrameEncoder;
  readonly #last: number;
  readonly #runEvents: number;
  /** Runs with events not yet released, oldest first; the last is the newest. */
  readonly #runs: PlanFrameRun[] = [];
  readonly #spare: ArrayBuffer[] = [];
  readonly #runsMax: number;

  constructor(encoder: PlanFrameEncoder, first: number, last: number, inflight: number) {
    this.#encoder = encoder;
    this.#last = last;
    this.#runEvents = Math.max(1, Math.floor(PLAN_RUN_BYTES / encoder.frameBytesMax));
    this.#runsMax = Math.ceil(inflight / this.#runEvents) + 2;
    this.#runs.push(this.#encode(first));
  }

  #encode(first: number): PlanFrameRun {
    const count = Math.min(this.#runEvents, this.#last - first + 1);
    const buffer = this.#spare.pop() ??
      new ArrayBuffer(this.#runEvents * this.#encoder.frameBytesMax);
    return this.#encoder.frames(first, count, mugOf, new Uint8Array(buffer));
  }

  /**
   * The frames of events `from` to `to` as slices of runs (one unless they
   * span two), in order; `from` is the event after the last one asked for,
   * and events up to `released` are released.
   */
  slices(from: number, to: number, released: number): Uint8Array[] {
    if (from > to || to > this.#last || released >= from) {
      throw new Error(`invariant: plans ${from} to ${to} with ${released} released`);
    }
    const runs = this.#runs;
    while (runs.length > 0 && runs[0].first + runs[0].count - 1 <= released) {
      this.#spare.push(runs.shift()!.bytes.buffer as ArrayBuffer);
    }
    const out: Uint8Array[] = [];
    let e = from;
    while (e <= to) {
      let run = runs[runs.length - 1];
      if (run === undefined || e >= run.first + run.count) {
        run = this.#encode(e);
        runs.push(run);
        if (runs.length > this.#runsMax) {
          throw new Error(
            `invariant: ${runs.length} runs of plans in use, at most ${this.#runsMax}`,
          );
        }
      }
      if (e < run.first) throw new Error(`invariant: event ${e} is before the run at ${run.first}`);
      const end = Math.min(to, run.first + run.count - 1);
      out.push(run.bytes.subarray(run.starts[e - run.first], run.starts[end + 1 - run.first]));
      e = end + 1;
    }
    return out;
  }
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
            new NodeError(
              `this node is not the master of ${name} (${m.master} is); run 'seguro bench' on the master's node`,
            ),
          );
        }
      });
      const timer = setTimeout(() =>
        reject(
          new NodeError(
            `this node did not become master of ${name} within ${
              LEAD_WAIT_MS_MAX / 1000
            } s; see 'seguro status' and run 'seguro bench' on the leader's node`,
          ),
        ), LEAD_WAIT_MS_MAX);
      const onAbort = () => reject(signal!.reason);
      signal?.addEventListener("abort", onAbort, { once: true });
      rt.closed.then(() =>
        reject(new NodeError("the node closed the runtime socket; check it with 'seguro status'"))
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

/** Connects to a node's runtime socket; a missing or dead socket is a NodeError. */
async function connectRuntime(socketPath: string): Promise<RuntimeClient> {
  try {
    return await RuntimeClient.connect({ path: socketPath });
  } catch (e) {
    if (e instanceof Deno.errors.NotFound || e instanceof Deno.errors.ConnectionRefused) {
      throw new NodeError(
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
  const cpuBefore = process.cpuUsage();
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
    const plans = new PlanFrameQueue(
      new PlanFrameEncoder(ship, jobOf(0, options.sizeBytes)),
      first,
      last,
      options.inflight,
    );
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
      if (refused !== undefined) throw new NodeError(`the load stopped: ${refused}`);
      const upto = Math.min(last, released + options.inflight);
      if (next <= upto) {
        const slices = plans.slices(next, upto, released);
        sentAt.fill(performance.now(), next - first, upto - first + 1);
        for (const s of slices) rt.sendFrames(s);
        next = upto + 1;
      }
      await new Promise<void>((r) => wake = r);
      if (options.progress && performance.now() - lastShown > 1000) {
        lastShown = performance.now();
        options.progress(`released ${grouped(released - head)} of ${grouped(options.events)}`);
      }
    }
    const seconds = (performance.now() - t0) / 1000;
    const cpu = process.cpuUsage(cpuBefore);
    latencies.sort((a, b) => a - b);
    const q = (p: number) =>
      latencies[Math.min(latencies.length - 1, Math.floor(p * latencies.length))];
    return {
      events: options.events,
      eventsPerSecond: options.events / seconds,
      p50Ms: q(0.5),
      p99Ms: q(0.99),
      seconds,
      loadCpuMicrosPerEvent: (cpu.user + cpu.system) / options.events,
    };
  } finally {
    options.signal?.removeEventListener("abort", onAbort);
    rt.close();
  }
}
