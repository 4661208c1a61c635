/**
 * Replicated writes through a 3-node Seguro cluster on loopback (real
 * processes, SQLite with synchronous=FULL on every node), beside etcd 3.4 and
 * dqlite 1.11 run by ../shared/bench/anchors in the same run.
 *
 *     deno task bench:cluster [--n 5000] [--seconds 15] [--anchors] [--no-plaintext] [--json]
 *
 * Seguro runs twice: with TLS (`seguro3`), and with `--insecure-plaintext`
 * (`seguro3-plain`), to show what TLS costs (skip the second with
 * `--no-plaintext`).
 * Closed loop like the anchors' load.mjs: c clients (1, 16, 64), one
 * connection and one write in flight each, 1 KiB values, to the leader; a
 * write counts once it is committed (fsynced on a majority) and applied on
 * the leader. Reports writes/s, p50/p99 latency, and fsyncs per write on the
 * leader and on each follower (group commit amortizes them).
 * @module
 */

import { parseArgs } from "node:util";
import { type AnchorRow, runAnchors } from "./anchors.ts";
import { ClusterClient } from "../cluster/api.ts";
import type { NodeStatus } from "../cluster/admin_protocol.ts";
import { TestCluster } from "../tests/e2e/harness.ts";

const { values } = parseArgs({
  args: Deno.args,
  options: {
    n: { type: "string", default: "5000" },
    seconds: { type: "string", default: "15" },
    anchors: { type: "boolean", default: false },
    "no-plaintext": { type: "boolean", default: false },
    json: { type: "boolean", default: false },
  },
});
const N = Number(values.n);
const SECONDS = Number(values.seconds);
const CONCURRENCY = [1, 16, 64];

/** An anchor row plus Seguro's fsync counts (null for the anchors). */
interface Row extends AnchorRow {
  fsyncs_per_write_leader: number | null;
  fsyncs_per_write_follower: number | null;
}
const rows: Row[] = [];

function quantile(sorted: number[], q: number): number {
  return sorted[Math.min(sorted.length - 1, Math.floor(q * sorted.length))];
}

function value1k(i: number): Uint8Array {
  const v = new Uint8Array(1024);
  for (let j = 0; j < v.length; j++) v[j] = 97 + ((i * 31 + j) % 26);
  return v;
}

async function storeStats(c: TestCluster): Promise<Map<number, NodeStatus>> {
  const out = new Map<number, NodeStatus>();
  for (const id of c.members.keys()) out.set(id, await c.status(id));
  return out;
}

async function seguro(plaintext: boolean): Promise<void> {
  const system = plaintext ? "seguro3-plain" : "seguro3";
  console.error(`${system}: starting a 3-node cluster on loopback...`);
  const cluster = await TestCluster.init(plaintext ? ["--insecure-plaintext"] : []);
  try {
    await cluster.join();
    await cluster.join();
    const leader = cluster.leader()!;
    let seq = 0;
    for (const c of CONCURRENCY) {
      // One after another: a burst of more than 16 handshakes from one address makes
      // the node close the oldest (cluster/admission.ts), as it would a stranger's.
      const clients: ClusterClient[] = [];
      for (let i = 0; i < c; i++) {
        clients.push(await ClusterClient.connect(leader.address, cluster.credentials));
      }
      // Warm up.
      await Promise.all(clients.map(async (cl) => {
        for (let i = 0; i < Math.ceil(200 / c); i++) await cl.propose(value1k(seq++));
      }));
      const before = await storeStats(cluster);
      const latencies: number[] = [];
      const deadline = performance.now() + SECONDS * 1000;
      let issued = 0;
      const t0 = performance.now();
      await Promise.all(clients.map(async (cl) => {
        while (issued < N && performance.now() < deadline) {
          issued++;
          const start = performance.now();
          await cl.propose(value1k(seq++));
          latencies.push(performance.now() - start);
        }
      }));
      const elapsed = (performance.now() - t0) / 1000;
      const after = await storeStats(cluster);
      for (const cl of clients) cl.close();
      latencies.sort((a, b) => a - b);
      const fsyncs = (id: number) => after.get(id)!.store.fsyncs - before.get(id)!.store.fsyncs;
      const followers = [...cluster.members.keys()].filter((id) => id !== leader.id);
      const row: Row = {
        system,
        c,
        ops: latencies.length,
        ops_per_s: latencies.length / elapsed,
        p50_ms: quantile(latencies, 0.5),
        p99_ms: quantile(latencies, 0.99),
        fsyncs_per_write_leader: fsyncs(leader.id) / latencies.length,
        fsyncs_per_write_follower: followers.reduce((s, id) => s + fsyncs(id), 0) /
          followers.length / latencies.length,
      };
      rows.push(row);
      console.error(
        `  ${system} c=${c}: ${row.ops_per_s.toFixed(0)} writes/s, p50 ${
          row.p50_ms.toFixed(2)
        } ms, p99 ${row.p99_ms.toFixed(2)} ms, fsyncs/write leader ${
          row.fsyncs_per_write_leader!.toFixed(3)
        }`,
      );
    }
  } finally {
    await cluster.destroy();
  }
}

await seguro(false);
if (!values["no-plaintext"]) await seguro(true);
if (values.anchors) {
  for (const r of await runAnchors(N, SECONDS)) {
    rows.push({ ...r, fsyncs_per_write_leader: null, fsyncs_per_write_follower: null });
  }
}

if (values.json) {
  console.log(JSON.stringify(rows, null, 2));
} else {
  const f = (n: number | null, d = 1) => n === null ? "-" : n.toFixed(d);
  console.log(
    "system          c   writes/s    p50 ms    p99 ms  fsyncs/write (leader, follower)",
  );
  for (const r of rows.sort((a, b) => a.c - b.c || a.system.localeCompare(b.system))) {
    console.log(
      `${r.system.padEnd(14)} ${String(r.c).padStart(2)} ${f(r.ops_per_s, 0).padStart(10)} ${
        f(r.p50_ms, 2).padStart(9)
      } ${f(r.p99_ms, 2).padStart(9)}  ${f(r.fsyncs_per_write_leader, 3)}, ${
        f(r.fsyncs_per_write_follower, 3)
      }`,
    );
  }
}
