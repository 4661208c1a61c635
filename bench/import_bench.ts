/**
 * Importing a stock vere pier into a 3-node cluster, beside the cluster's own
 * append throughput and the pier-reading speeds, all in one run:
 *
 *     deno task bench:import [--events 1000000] [--anchors] [--json]
 *
 * 1. writes a synthetic pier of N events of 1 KiB jobs (vere's format, via
 *    vere/pier.ts), and times it;
 * 2. walks it with the C oracle's cursor (`lmdb_oracle bench`, compiled from
 *    ../shared/tools when gcc and liblmdb-dev are present) and with
 *    `readEvents`;
 * 3. on a fresh 3-node cluster (real processes, every write flushed before it is acknowledged):
 *    appends N events of the same size from memory with `events` requests
 *    of IMPORT_BATCH_BYTES, IMPORT_IN_FLIGHT in flight, as the importer
 *    sends them (the cluster's append throughput);
 *    then runs the real `seguro ship import` of the pier; then
 *    `seguro ship export` of it;
 *    During the append and the import, the leader's event-loop lag (p99 over
 *    the last minute, and the longest, from `seguro_event_loop_lag_seconds`
 *    on its `--metrics`, sampled every 5 s) and the elections (leader
 *    changes in the nodes' JSON logs) are recorded: bulk work must not
 *    starve heartbeats (targets: p99 <= 50 ms, 0 elections);
 * 4. with --anchors, etcd and dqlite 1 KiB writes from ../shared/bench.
 * @module
 */

import { parseArgs } from "node:util";
import { join } from "node:path";
import { type AnchorRow, runAnchors } from "./anchors.ts";
import { ClusterClient } from "../cluster/api.ts";
import type { PlannedEvent } from "../cluster/machine.ts";
import { LOG_VERSION, logDir, type PierEvent, readEvents, writePier } from "../vere/pier.ts";
import { freePort, NodeProcess, TestCluster } from "../tests/e2e/harness.ts";
import { oraclePath, runOracle } from "../tests/pier/oracle.ts";
import { IMPORT_BATCH_BYTES, IMPORT_IN_FLIGHT } from "../server/pier_import.ts";

const { values } = parseArgs({
  args: Deno.args,
  options: {
    events: { type: "string", default: "1000000" },
    anchors: { type: "boolean", default: false },
    json: { type: "boolean", default: false },
  },
});
const N = Number(values.events);

/** Whether bulk work starved the leader's event loop during one step. */
interface Starvation {
  step: string;
  /** Highest p99 of the leader's event-loop lag (over its last minute) seen while sampling. */
  lagP99Ms: number;
  /** Longest single lag the leader saw. */
  lagMaxMs: number;
  /** Leader changes during the step. */
  elections: number;
}

/** Samples the leader's event-loop lag every 5 s and counts elections, until stopped. */
class StarvationWatch {
  readonly #cluster: TestCluster;
  readonly #leaders: number;
  readonly #timer: ReturnType<typeof setInterval>;
  #p99 = 0;
  #max = 0;

  constructor(cluster: TestCluster) {
    this.#cluster = cluster;
    this.#leaders = this.#leaderEvents();
    this.#timer = setInterval(() => this.#sample(), 5000);
  }

  #leaderEvents(): number {
    let n = 0;
    for (const m of this.#cluster.members.values()) {
      n += m.proc?.events().filter((e) => e.event === "leader").length ?? 0;
    }
    return n;
  }

  async #sample(): Promise<void> {
    const leader = this.#cluster.leader();
    const address = leader?.proc?.events().find((e) => e.event === "metrics")?.address;
    if (address === undefined) return;
    try {
      const text = await (await fetch(`http://${address}/metrics`)).text();
      const q = (quantile: string) =>
        Number(
          new RegExp(`^seguro_event_loop_lag_seconds\\{quantile="${quantile}"\\} (\\S+)$`, "m")
            .exec(text)?.[1] ?? 0,
        ) * 1000;
      this.#p99 = Math.max(this.#p99, q("0.99"));
      this.#max = Math.max(this.#max, q("1"));
    } catch {
      // The leader just changed or stopped: the next sample finds the new one.
    }
  }

  async stop(step: string): Promise<Starvation> {
    clearInterval(this.#timer);
    await this.#sample();
    return {
      step,
      lagP99Ms: this.#p99,
      lagMaxMs: this.#max,
      elections: this.#leaderEvents() - this.#leaders,
    };
  }
}
const JOB_BYTES = 1024;

const MB = 1e6;

interface Row {
  step: string;
  events: number;
  seconds: number;
  events_per_s: number;
  mb_per_s: number;
}
const rows: Row[] = [];

function record(step: string, events: number, bytes: number, seconds: number): void {
  const row = {
    step,
    events,
    seconds: Math.round(seconds * 100) / 100,
    events_per_s: Math.round(events / seconds),
    mb_per_s: Math.round(bytes / MB / seconds),
  };
  rows.push(row);
  console.error(
    `${step}: ${events} events in ${row.seconds} s = ${row.events_per_s} events/s, ${row.mb_per_s} MB/s`,
  );
}

function job(eve: number): Uint8Array {
  const out = new Uint8Array(JOB_BYTES);
  const view = new DataView(out.buffer);
  for (let i = 0; i < JOB_BYTES; i += 4) view.setUint32(i, Math.imul(eve, 2654435761) ^ i, true);
  return out;
}

function* synthetic(from: number, to: number): Generator<PierEvent> {
  for (let eve = from; eve <= to; eve++) {
    yield { eve, mug: Math.imul(eve, 40503) >>> 1, job: job(eve) };
  }
}

function seconds(since: number): number {
  return (performance.now() - since) / 1000;
}

const root = Deno.makeTempDirSync({ prefix: "seguro-import-bench-" });
const pier = join(root, "zod");
const bytes = N * JOB_BYTES;
try {
  console.error(`writing a ${N}-event pier of ${JOB_BYTES}-byte jobs...`);
  let t = performance.now();
  writePier(pier, {
    meta: { version: LOG_VERSION, who: 0n, fake: true, life: 0 },
    events: synthetic(1, N),
    vereVersion: "4.0",
  });
  record("writePier (1,000-event transactions)", N, bytes, seconds(t));

  if (oraclePath() !== undefined) {
    const line = runOracle(["bench", join(logDir(pier), "0i0")]).stdout.trim();
    console.error(line);
    const m = /= (\d+) ev\/s (\d+) MB\/s/.exec(line);
    const secs = /in ([0-9.]+)s/.exec(line);
    if (m && secs) {
      rows.push({
        step: "C cursor walk (lmdb_oracle bench)",
        events: N,
        seconds: Number(secs[1]),
        events_per_s: Number(m[1]),
        mb_per_s: Number(m[2]),
      });
    }
  } else {
    console.error("note: the C oracle cannot be built here (gcc, liblmdb-dev); its row is skipped");
  }

  t = performance.now();
  let walked = 0;
  for (const _ of readEvents(pier)) walked++;
  record("readEvents walk", walked, bytes, seconds(t));

  console.error("starting a 3-node cluster on loopback...");
  const metricsOf = () => ["--metrics", `127.0.0.1:${freePort()}`];
  const cluster = await TestCluster.init(metricsOf());
  const starvation: Starvation[] = [];
  try {
    await cluster.join(metricsOf());
    await cluster.join(metricsOf());
    const leader = cluster.leader()!;
    const client = await ClusterClient.connect(leader.address, cluster.credentials);
    let watch: StarvationWatch;
    try {
      await client.ships.add(1n, { fake: true, life: 0 });
      t = performance.now();
      watch = new StarvationWatch(cluster);
      let batch: PlannedEvent[] = [];
      let first = 1;
      const inFlight: Promise<unknown>[] = [];
      for (const e of synthetic(1, N)) {
        batch.push({ mug: e.mug, job: e.job });
        if (batch.length * JOB_BYTES >= IMPORT_BATCH_BYTES || e.eve === N) {
          // As many requests in flight as the importer keeps.
          inFlight.push(
            client.ships.write({ kind: "events", ship: 1n, firstEve: first, events: batch }),
          );
          if (inFlight.length >= IMPORT_IN_FLIGHT) await inFlight.shift();
          first += batch.length;
          batch = [];
        }
      }
      await Promise.all(inFlight);
      record(
        `cluster append (events requests of ${IMPORT_BATCH_BYTES / 1024} KiB, from memory)`,
        N,
        bytes,
        seconds(t),
      );
      starvation.push(await watch.stop("cluster append"));
    } finally {
      client.close();
    }

    const env = { SEGURO_TOKEN: cluster.token };
    t = performance.now();
    const imported = new NodeProcess(
      ["ship", "import", "~zod", pier, "--cluster", leader.address],
      env,
    );
    const importWatch = new StarvationWatch(cluster);
    if ((await imported.exited).code !== 0) throw new Error(imported.lines.join("\n"));
    record("seguro ship import (reads the pier, 3-node cluster)", N, bytes, seconds(t));
    starvation.push(await importWatch.stop("seguro ship import"));

    const out = join(root, "zod-export");
    t = performance.now();
    const exported = new NodeProcess(
      ["ship", "export", "~zod", out, "--cluster", leader.address],
      env,
    );
    if ((await exported.exited).code !== 0) throw new Error(exported.lines.join("\n"));
    record("seguro ship export (writes a pier)", N, bytes, seconds(t));
  } finally {
    await cluster.destroy();
  }

  const append = rows.find((r) => r.step.startsWith("cluster append"))!;
  const imp = rows.find((r) => r.step.startsWith("seguro ship import"))!;
  console.error(
    `import / append = ${
      (imp.events_per_s / append.events_per_s * 100).toFixed(0)
    }% (target >= 80%)`,
  );
  let anchors: AnchorRow[] = [];
  if (values.anchors) anchors = await runAnchors(5000, 10);
  for (const s of starvation) {
    console.error(
      `${s.step}: leader event-loop lag p99 ${s.lagP99Ms.toFixed(1)} ms (target <= 50), longest ${
        s.lagMaxMs.toFixed(1)
      } ms; ${s.elections} elections (target 0)`,
    );
  }
  if (values.json) {
    console.log(JSON.stringify({ rows, starvation, anchors }, null, 2));
  } else {
    console.log("| step | events | s | events/s | MB/s |");
    console.log("| --- | --- | --- | --- | --- |");
    for (const r of rows) {
      console.log(`| ${r.step} | ${r.events} | ${r.seconds} | ${r.events_per_s} | ${r.mb_per_s} |`);
    }
    for (const a of anchors) {
      console.log(
        `| ${a.system} 1 KiB writes, ${a.c} in flight | ${a.ops} | - | ${
          Math.round(a.ops_per_s)
        } | - |`,
      );
    }
  }
} finally {
  await Deno.remove(root, { recursive: true });
}
