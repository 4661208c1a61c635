/**
 * Released events through the runtime socket of a 3-node Seguro cluster on
 * loopback, beside etcd 3.4 and dqlite 1.11 (../shared/bench/anchors) in the
 * same run.
 *
 *     deno task bench:runtime [--events 20000] [--k quorum,0,all] [--inflight 1,64,1024]
 *                             [--warmup 100000] [--anchors] [--no-plaintext] [--json]
 *
 * Each cluster first handles 100,000 events that are not measured
 * (`--warmup`): the rows measure a node in its steady state, its hot code
 * optimized and its heap grown. Seguro runs twice: with TLS (`seguro3`), and
 * with `--insecure-plaintext` (`seguro3-plain`), to show what TLS costs (skip the second with
 * `--no-plaintext`).
 * 1 KiB events; 1, 64 and 1024 planned-but-unreleased in flight; optimism K
 * = quorum, 0 and all (`--k` and `--inflight` pick fewer rows, e.g. `--k
 * quorum --inflight 1024 --no-plaintext` for a quick run). A release is the
 * master's `%done`: the event is durable on the master and K replicas.
 * Reports events/s, p50/p99 release latency, fsyncs per event on the master,
 * and CPU microseconds per released event of every process: the leader, each
 * follower, and the load (this process, which plans the events). CPU is user
 * + system time of all threads from /proc/PID/stat, read before a row and
 * after it once both followers applied the row's last entry; its step is one
 * 10 ms tick, 0.5 us per event over 20,000 events (Linux only; elsewhere the
 * columns are empty).
 * @module
 */

import { parseArgs } from "node:util";
import { join } from "node:path";
import { ClusterClient } from "../cluster/api.ts";
import { cpuMicrosPerEvent, processCpuMicros } from "../server/process_cpu.ts";
import { runRuntimeLoad } from "../server/runtime_load.ts";
import { TestCluster } from "../tests/e2e/harness.ts";
import { runAnchors } from "./anchors.ts";

const { values } = parseArgs({
  args: Deno.args,
  options: {
    events: { type: "string", default: "20000" },
    warmup: { type: "string", default: "100000" },
    k: { type: "string", default: "quorum,0,all" },
    inflight: { type: "string", default: "1,64,1024" },
    anchors: { type: "boolean", default: false },
    "no-plaintext": { type: "boolean", default: false },
    json: { type: "boolean", default: false },
  },
});
const EVENTS = Number(values.events);

/** Optimism of each `--k` name (ships.set: -2 is quorum). */
const OPTIMISM_OF: Readonly<Record<string, number>> = { quorum: -2, "0": 0, all: 2 };
const K_ROWS = values.k.split(",").map((k) => {
  if (!(k in OPTIMISM_OF)) {
    throw new Error(`--k takes quorum, 0 or all, comma-separated (got ${k})`);
  }
  return k;
});
const INFLIGHT_ROWS = values.inflight.split(",").map((s) => {
  const n = Number(s);
  if (!Number.isSafeInteger(n) || n < 1) {
    throw new Error(`--inflight takes positive integers, comma-separated (got ${s})`);
  }
  return n;
});

/**
 * Events planned, and not measured, before the first row (`--warmup`): 1,000
 * at 64 in flight, then all but 1,000 of the rest at 1,024, then 1,000 at 64
 * again. A node reaches its steady CPU per event only
 * after V8 has optimized its hot code for both shapes of batch, and its heap
 * has grown to its working size: with 5,000 warm-up events, the rows of 20,000
 * measured a node's first seconds (the leader at 64 in flight: 86 us per event
 * there, 57 us in a run of 200,000 events).
 */
const WARMUP_EVENTS = Number(values.warmup);
if (!Number.isSafeInteger(WARMUP_EVENTS) || WARMUP_EVENTS < 2000) {
  throw new Error(`--warmup takes an integer of at least 2000 (got ${values.warmup})`);
}

/** Longest a row waits after its last release for both followers to apply the row's entries. */
const SETTLE_MS_MAX = 10_000;

interface Row {
  system: string;
  k: string;
  inflight: number;
  per_s: number;
  p50_ms: number;
  p99_ms: number;
  fsyncs_per_event: number | null;
  /** CPU us per released event of the leader, each follower, their max, and the load (this process). */
  leader_cpu_us: number | null;
  follower1_cpu_us: number | null;
  follower2_cpu_us: number | null;
  follower_max_cpu_us: number | null;
  load_cpu_us: number | null;
}
const rows: Row[] = [];

/** CPU microseconds so far of each of `pids`. */
function cpuOf(pids: readonly number[]): (number | undefined)[] {
  return pids.map(processCpuMicros);
}

async function seguro(plaintext: boolean): Promise<void> {
  const system = plaintext ? "seguro3-plain" : "seguro3";
  const cluster = await TestCluster.init(plaintext ? ["--insecure-plaintext"] : []);
  const clients: ClusterClient[] = [];
  try {
    await cluster.join();
    await cluster.join();
    const leader = cluster.leader()!;
    const followers = [...cluster.members.values()].filter((m) => m !== leader);
    const client = await ClusterClient.connect(leader.address, cluster.credentials);
    clients.push(client);
    const followerClients: ClusterClient[] = [];
    for (const f of followers) {
      followerClients.push(await ClusterClient.connect(f.address, cluster.credentials));
    }
    clients.push(...followerClients);
    // Leader, follower 1, follower 2, the load.
    const pids = [leader, ...followers].map((m) => m.proc!.child.pid).concat(Deno.pid);
    const status = async () => (await client.status()).store.fsyncs;
    // A row's CPU includes its followers' work on its last entries (K=quorum releases before one of them has it).
    const settle = async () => {
      const last = (await client.status()).lastIndex;
      const deadline = performance.now() + SETTLE_MS_MAX;
      for (const f of followerClients) {
        while ((await f.status()).appliedIndex < last && performance.now() < deadline) {
          await new Promise((r) => setTimeout(r, 20));
        }
      }
    };
    await client.ships.add(0n, { fake: true, life: 0 });
    // Not measured: the first events a cluster handles also pay for compiling its hot code.
    for (const [events, inflight] of [[1000, 64], [WARMUP_EVENTS - 2000, 1024], [1000, 64]]) {
      if (events === 0) continue;
      await runRuntimeLoad(join(leader.dir, "runtime.sock"), 0n, {
        events,
        sizeBytes: 1024,
        inflight,
      });
    }
    await settle();
    for (const k of K_ROWS) {
      await client.ships.set(0n, OPTIMISM_OF[k]);
      for (const inflight of INFLIGHT_ROWS) {
        const events = inflight === 1 ? Math.min(EVENTS, 2000) : EVENTS;
        const before = await status();
        const cpuBefore = cpuOf(pids);
        const r = await runRuntimeLoad(join(leader.dir, "runtime.sock"), 0n, {
          events,
          sizeBytes: 1024,
          inflight,
        });
        const fsyncs = (await status()) - before;
        await settle();
        const cpuAfter = cpuOf(pids);
        const [lead, f1, f2, load] = cpuBefore.map((b, i) =>
          cpuMicrosPerEvent(b, cpuAfter[i], events) ?? null
        );
        const fMax = f1 === null || f2 === null ? null : Math.max(f1, f2);
        rows.push({
          system,
          k,
          inflight,
          per_s: r.eventsPerSecond,
          p50_ms: r.p50Ms,
          p99_ms: r.p99Ms,
          fsyncs_per_event: fsyncs / events,
          leader_cpu_us: lead,
          follower1_cpu_us: f1,
          follower2_cpu_us: f2,
          follower_max_cpu_us: fMax,
          load_cpu_us: load,
        });
        console.error(
          `${system} K=${k} inflight=${inflight}: ${r.eventsPerSecond.toFixed(0)}/s p50 ${
            r.p50Ms.toFixed(2)
          } p99 ${r.p99Ms.toFixed(2)} ms, ${(fsyncs / events).toFixed(3)} fsyncs/event; ` +
            `CPU us/event leader ${us(lead)}, followers ${us(f1)} ${us(f2)}, load ${us(load)}`,
        );
      }
    }
  } finally {
    for (const c of clients) c.close();
    await cluster.destroy();
  }
}

/** A CPU figure for the table: whole microseconds, `-` when there is none. */
function us(v: number | null): string {
  return v === null ? "-" : v.toFixed(0);
}

await seguro(false);
if (!values["no-plaintext"]) await seguro(true);

if (values.anchors) {
  for (const a of await runAnchors(Math.min(EVENTS, 20000), 10)) {
    rows.push({
      system: a.system,
      k: "-",
      inflight: a.c,
      per_s: a.ops_per_s,
      p50_ms: a.p50_ms,
      p99_ms: a.p99_ms,
      fsyncs_per_event: null,
      leader_cpu_us: null,
      follower1_cpu_us: null,
      follower2_cpu_us: null,
      follower_max_cpu_us: null,
      load_cpu_us: null,
    });
  }
}

if (values.json) {
  console.log(JSON.stringify(rows, null, 2));
} else {
  console.log(
    "system         K       in flight   per s    p50 ms    p99 ms  fsyncs/event  " +
      "CPU us/event: leader follower(max) load",
  );
  for (const r of rows) {
    console.log(
      `${r.system.padEnd(14)} ${r.k.padEnd(7)} ${String(r.inflight).padStart(9)} ${
        r.per_s.toFixed(0).padStart(7)
      } ${r.p50_ms.toFixed(2).padStart(9)} ${r.p99_ms.toFixed(2).padStart(9)}  ${
        (r.fsyncs_per_event === null ? "-" : r.fsyncs_per_event.toFixed(3)).padStart(12)
      }  ${us(r.leader_cpu_us).padStart(19)} ${us(r.follower_max_cpu_us).padStart(14)} ${
        us(r.load_cpu_us).padStart(4)
      }`,
    );
  }
}
