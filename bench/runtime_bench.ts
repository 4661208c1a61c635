/**
 * Released events through the runtime socket of a 3-node Seguro cluster on
 * loopback, beside etcd 3.4 and dqlite 1.11 (../shared/bench/anchors) in the
 * same run.
 *
 *     deno task bench:runtime [--events 20000] [--anchors] [--no-plaintext] [--json]
 *
 * Seguro runs twice: with TLS (`seguro3`), and with `--insecure-plaintext`
 * (`seguro3-plain`), to show what TLS costs (skip the second with
 * `--no-plaintext`).
 * 1 KiB events; 1, 64 and 1024 planned-but-unreleased in flight; optimism K
 * = quorum, 0 and all. A release is the master's `%done`: the event is
 * durable on the master and K replicas. Reports events/s, p50/p99 release
 * latency and fsyncs per event on the master.
 * @module
 */

import { parseArgs } from "node:util";
import { join } from "node:path";
import { ClusterClient } from "../cluster/api.ts";
import { runRuntimeLoad } from "../server/runtime_load.ts";
import { TestCluster } from "../tests/e2e/harness.ts";
import { runAnchors } from "./anchors.ts";

const { values } = parseArgs({
  args: Deno.args,
  options: {
    events: { type: "string", default: "20000" },
    anchors: { type: "boolean", default: false },
    "no-plaintext": { type: "boolean", default: false },
    json: { type: "boolean", default: false },
  },
});
const EVENTS = Number(values.events);

interface Row {
  system: string;
  k: string;
  inflight: number;
  per_s: number;
  p50_ms: number;
  p99_ms: number;
  fsyncs_per_event: number | null;
}
const rows: Row[] = [];

async function seguro(plaintext: boolean): Promise<void> {
  const system = plaintext ? "seguro3-plain" : "seguro3";
  const cluster = await TestCluster.init(plaintext ? ["--insecure-plaintext"] : []);
  try {
    await cluster.join();
    await cluster.join();
    const leader = cluster.leader()!;
    const client = await ClusterClient.connect(leader.address, cluster.credentials);
    const status = async () => (await client.status()).store.fsyncs;
    await client.ships.add(0n, { fake: true, life: 0 });
    for (const [k, optimism] of [["quorum", -2], ["0", 0], ["all", 2]] as const) {
      await client.ships.set(0n, optimism);
      for (const inflight of [1, 64, 1024]) {
        const events = inflight === 1 ? Math.min(EVENTS, 2000) : EVENTS;
        const before = await status();
        const r = await runRuntimeLoad(join(leader.dir, "runtime.sock"), 0n, {
          events,
          sizeBytes: 1024,
          inflight,
        });
        const fsyncs = (await status()) - before;
        rows.push({
          system,
          k,
          inflight,
          per_s: r.eventsPerSecond,
          p50_ms: r.p50Ms,
          p99_ms: r.p99Ms,
          fsyncs_per_event: fsyncs / events,
        });
        console.error(
          `${system} K=${k} inflight=${inflight}: ${r.eventsPerSecond.toFixed(0)}/s p50 ${
            r.p50Ms.toFixed(2)
          } p99 ${r.p99Ms.toFixed(2)} ms, ${(fsyncs / events).toFixed(3)} fsyncs/event`,
        );
      }
    }
    client.close();
  } finally {
    await cluster.destroy();
  }
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
    });
  }
}

if (values.json) {
  console.log(JSON.stringify(rows, null, 2));
} else {
  console.log(
    "system         K       in flight   per s    p50 ms    p99 ms  fsyncs/event (master)",
  );
  for (const r of rows) {
    console.log(
      `${r.system.padEnd(14)} ${r.k.padEnd(7)} ${String(r.inflight).padStart(9)} ${
        r.per_s.toFixed(0).padStart(7)
      } ${r.p50_ms.toFixed(2).padStart(9)} ${r.p99_ms.toFixed(2).padStart(9)}  ${
        r.fsyncs_per_event === null ? "-" : r.fsyncs_per_event.toFixed(3)
      }`,
    );
  }
}
