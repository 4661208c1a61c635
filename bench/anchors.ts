/**
 * Runs the etcd and dqlite anchors of ../shared/bench/anchors (3 nodes on
 * loopback, 1 KiB values, 1/16/64 in flight) with a small budget, in this
 * run, and returns their rows. Needs `apt-get install etcd-server
 * etcd-client go-dqlite`.
 * @module
 */

import { fileURLToPath } from "node:url";

/** One anchor measurement. */
export interface AnchorRow {
  /** etcd3 or dqlite3. */
  system: string;
  /** Writes in flight. */
  c: number;
  /** Writes done. */
  ops: number;
  /** Writes per second. */
  ops_per_s: number;
  /** Median latency, ms. */
  p50_ms: number;
  /** 99th percentile latency, ms. */
  p99_ms: number;
}

async function anchor(
  script: string,
  prefix: string,
  n: number,
  seconds: number,
): Promise<AnchorRow[]> {
  const dir = fileURLToPath(new URL("../../shared/bench/anchors/", import.meta.url));
  const jsonl = await Deno.makeTempFile({ suffix: ".jsonl" });
  console.error(`${prefix}: running ${dir}${script} (REPEATS=1)...`);
  const run = await new Deno.Command("bash", {
    args: [dir + script],
    env: {
      RESULTS_JSONL: jsonl,
      REPEATS: "1",
      DUR: String(seconds),
      N_C1: String(Math.min(n, 2000)),
      N_C16: String(n),
      N_C64: String(n),
      BACKOFF_SWEEP: "0",
      NATIVE: "0",
      STRACE: "0",
    },
    stdout: "null",
    stderr: "piped",
  }).output();
  if (!run.success) {
    console.error(
      `${prefix}: ${script} failed:\n${new TextDecoder().decode(run.stderr).slice(-2000)}`,
    );
  }
  const rows: AnchorRow[] = [];
  for (const line of (await Deno.readTextFile(jsonl)).split("\n")) {
    if (!line.trim()) continue;
    const r = JSON.parse(line);
    const m = new RegExp(`^${prefix}-c(\\d+)$`).exec(r.label ?? "");
    if (!m || !r.lat_ms) continue;
    rows.push({
      system: prefix,
      c: Number(m[1]),
      ops: r.ok,
      ops_per_s: r.ops_per_s,
      p50_ms: r.lat_ms.p50,
      p99_ms: r.lat_ms.p99,
    });
  }
  await Deno.remove(jsonl);
  return rows;
}

/** etcd then dqlite, 3 members each. */
export async function runAnchors(n: number, seconds: number): Promise<AnchorRow[]> {
  return [
    ...await anchor("run-etcd.sh", "etcd3", n, seconds),
    ...await anchor("run-dqlite.sh", "dqlite3", n, seconds),
  ];
}
