/**
 * Measures the store's write path on the local disk: the latency of a
 * one-entry persist (one fsync each) and the time of a 1,000 x 1 KiB batch.
 *
 * ```sh
 * deno run --allow-read --allow-write --allow-env cluster/store_bench.ts [parent-dir]
 * ```
 *
 * @module
 */

import type { Entry } from "../core/mod.ts";
import { Store } from "./store.ts";

const SINGLE_PERSISTS = 1000;
const BATCH_ENTRIES = 1000;
const BATCH_ROUNDS = 20;
const ENTRY_BYTES = 1024;

function percentile(sortedMs: readonly number[], p: number): number {
  return sortedMs[Math.min(sortedMs.length - 1, Math.floor((p / 100) * sortedMs.length))];
}

function summary(label: string, ms: number[]): void {
  ms.sort((a, b) => a - b);
  const mean = ms.reduce((a, b) => a + b, 0) / ms.length;
  console.log(
    `${label}: n=${ms.length} p50=${percentile(ms, 50).toFixed(3)} ms p99=${
      percentile(ms, 99).toFixed(3)
    } ms max=${ms[ms.length - 1].toFixed(3)} ms mean=${mean.toFixed(3)} ms`,
  );
}

function main(parent: string | undefined): void {
  const root = Deno.makeTempDirSync({ dir: parent, prefix: "seguro_store_bench_" });
  const store = Store.create(`${root}/data`, {
    identity: { clusterId: "0".repeat(32), nodeId: 1, groupId: 0 },
    secret: crypto.getRandomValues(new Uint8Array(32)),
    conf: { voters: [1], learners: [] },
  });
  try {
    const data = crypto.getRandomValues(new Uint8Array(ENTRY_BYTES));
    let last = 0;
    const single: number[] = [];
    for (let i = 0; i < SINGLE_PERSISTS; i++) {
      last++;
      const t0 = performance.now();
      store.persist({
        entries: [{ index: last, term: 1, type: "normal", data }],
        hardState: { term: 1, vote: 1, commit: last - 1 },
      });
      single.push(performance.now() - t0);
    }
    summary(`persist of 1 x ${ENTRY_BYTES} B + hard state`, single);

    const batch: number[] = [];
    for (let r = 0; r < BATCH_ROUNDS; r++) {
      const entries: Entry[] = [];
      for (let i = 1; i <= BATCH_ENTRIES; i++) {
        entries.push({ index: last + i, term: 1, type: "normal", data });
      }
      const t0 = performance.now();
      store.persist({ entries, hardState: { term: 1, vote: 1, commit: last } });
      batch.push(performance.now() - t0);
      last += BATCH_ENTRIES;
    }
    summary(`persist of ${BATCH_ENTRIES} x ${ENTRY_BYTES} B in one batch`, batch);
    console.log("stats:", store.stats());
    console.log(`database: ${Deno.statSync(`${root}/data/seguro.db`).size} bytes (+ WAL)`);
  } finally {
    store.close();
    Deno.removeSync(root, { recursive: true });
  }
}

if (import.meta.main) main(Deno.args[0]);
