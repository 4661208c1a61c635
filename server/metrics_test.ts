/**
 * The metrics of `--metrics`: the flag's parsing, release timing on a hand
 * clock, the registry over a hand-made node (parsed back with a real
 * Prometheus parser), and the HTTP endpoint.
 */

import assert from "node:assert/strict";
import type { NodeStatus } from "../cluster/admin_protocol.ts";
import type { RuntimeNode } from "../cluster/runtime_backend.ts";
import type { Loss } from "../cluster/release.ts";
import { NodeError } from "./errors.ts";
import {
  MetricsServer,
  type MetricsSource,
  NodeMetrics,
  RELEASE_STALL_MS,
  ReleaseTimer,
} from "./metrics.ts";
import { parsePrometheus, sample, scrape, value } from "../tests/prometheus.ts";

Deno.test("release timer: latency from plan to the release covering it; stalls; refusals", () => {
  let now = 0;
  const t = new ReleaseTimer(() => now);
  t.planned(0n, 11);
  now = 2;
  t.planned(0n, 12);
  now = 5;
  t.planned(0n, 13);
  const seen: number[] = [];
  now = 10;
  assert.equal(t.released(0n, 12, (ms) => seen.push(ms)), 2);
  assert.deepEqual(seen, [10, 8]);
  // A release below or at what was released counts nothing (a replan answered from the log).
  assert.equal(t.released(0n, 12, (ms) => seen.push(ms)), 0);
  assert.equal(t.released(0n, 3, (ms) => seen.push(ms)), 0);
  assert.equal(t.stalled(0n), 0);
  now = 5 + RELEASE_STALL_MS;
  assert.equal(t.stalled(0n), 1, "event 13, planned at 5, waits for a second");
  // The master dropped event 13 (its tail went back to 12): not stalled, not released later.
  t.dropAbove(0n, 12);
  assert.equal(t.stalled(0n), 0);
  assert.equal(t.released(0n, 13, (ms) => seen.push(ms)), 0);
  // Replanned: timed afresh.
  t.planned(0n, 13);
  now += 4;
  assert.equal(t.released(0n, 13, (ms) => seen.push(ms)), 1);
  assert.deepEqual(seen, [10, 8, 4]);
  // A plan that does not follow the last one starts the ship afresh.
  t.planned(0n, 40);
  assert.equal(t.released(0n, 40, () => {}), 1);
  // A role change forgets everything.
  t.planned(0n, 41);
  t.clear();
  assert.equal(t.released(0n, 41, () => {}), 0);
  assert.equal(t.stalled(0n), 0);
});

function status(over: Partial<NodeStatus>): NodeStatus {
  return {
    version: "test",
    clusterId: "c",
    nodeId: 1,
    address: "127.0.0.1:1",
    role: "leader",
    term: 7,
    leaderId: 1,
    leaderAddress: "127.0.0.1:1",
    firstIndex: 1,
    lastIndex: 100,
    commitIndex: 98,
    appliedIndex: 97,
    conf: { voters: [1, 2, 3], learners: [] },
    members: [1, 2, 3].map((id) => ({
      id,
      address: null,
      membership: "voter" as const,
      match: id === 1 ? 100 : id === 2 ? 100 : 60,
      state: null,
      lastContactMs: 0,
      connected: true,
    })),
    uptimeMs: 0,
    release: { master: true, released: 0, stalled: null, losses: [] },
    store: { fsyncs: 0, transactions: 0, entriesWritten: 0, bytesWritten: 0 },
    ...over,
  } as NodeStatus;
}

function fakeRuntime() {
  let listener: Parameters<RuntimeNode["subscribe"]>[0] | undefined;
  const heads = new Map<bigint, number>();
  const node: RuntimeNode = {
    nodeId: 1,
    isMaster: () => true,
    masterAddress: () => "",
    ships: () => [...heads.keys()],
    plan: (p) => heads.set(p.ship, p.eve),
    head: (ship) => heads.has(ship) ? { eve: heads.get(ship)!, mug: 0 } : undefined,
    read: () => [],
    subscribe: (l) => {
      listener = l;
      return () => listener = undefined;
    },
  };
  return { node, heads, emit: () => listener! };
}

Deno.test("registry: node, ship and runtime metrics, read on scrape", async () => {
  let now = 1000;
  const names = new Map([[0n, "~zod"], [256n, "~marzod"]]);
  const metrics = new NodeMetrics((ship) => names.get(ship)!, () => now);
  let current = status({});
  const losses: Loss[] = [{ ship: 256n, firstEve: 4, lastEve: 6, index: 9, term: 2 }];
  const source: MetricsSource = {
    status: () => current,
    ships: () => [{ ship: 0n, lastEve: 3 }, { ship: 256n, lastEve: 8 }],
    losses: () => losses,
    runtimes: () => ({ connections: 1, notices: new Map([[0n, "lead" as const]]) }),
  };
  metrics.watch(source);
  const rt = fakeRuntime();
  rt.heads.set(0n, 3);
  const served = metrics.timeReleases(rt.node);
  for (let eve = 4; eve <= 6; eve++) served.plan({ ship: 0n, eve, mug: 0, job: new Uint8Array() });
  served.plan({ ship: 0n, eve: 5, mug: 0, job: new Uint8Array() }); // a replan: not counted
  now += 3;
  rt.emit().release({ ship: 0n, eve: 5 });
  metrics.observer.persisted(2);
  metrics.observer.readyHandled(3);
  metrics.observer.readyHandled(4);

  let m = await parsePrometheus(await metrics.scrape());
  assert.equal(value(m, "seguro_node_role", { role: "leader" }), 1);
  assert.equal(value(m, "seguro_node_role", { role: "follower" }), 0);
  assert.equal(value(m, "seguro_raft_term"), 7);
  assert.equal(value(m, "seguro_raft_commit_index"), 98);
  assert.equal(value(m, "seguro_raft_applied_index"), 97);
  assert.equal(value(m, "seguro_raft_last_index"), 100);
  assert.equal(value(m, "seguro_raft_leader_id"), 1);
  assert.equal(value(m, "seguro_raft_peer_match_lag", { peer: "2" }), 0);
  assert.equal(value(m, "seguro_raft_peer_match_lag", { peer: "3" }), 40);
  assert.throws(() => sample(m, "seguro_raft_peer_match_lag", { peer: "1" }), /0 samples/);
  assert.equal(value(m, "seguro_ship_last_eve", { ship: "~zod" }), 3);
  assert.equal(value(m, "seguro_ship_last_eve", { ship: "~marzod" }), 8);
  assert.equal(value(m, "seguro_ship_released_events_total", { ship: "~zod" }), 2);
  const latency = sample(m, "seguro_ship_release_seconds", { ship: "~zod" });
  assert.equal(latency.count, 2);
  assert.equal(latency.sum, 0.006);
  assert.equal(latency.buckets!["0.0025"], 0);
  assert.equal(latency.buckets!["0.005"], 2);
  assert.equal(value(m, "seguro_ship_released_lost_events", { ship: "~zod" }), 0);
  assert.equal(value(m, "seguro_ship_released_lost_events", { ship: "~marzod" }), 3);
  assert.equal(value(m, "seguro_ship_runtime_state", { ship: "~zod", state: "master" }), 1);
  assert.equal(value(m, "seguro_ship_runtime_state", { ship: "~zod", state: "none" }), 0);
  assert.equal(value(m, "seguro_ship_runtime_state", { ship: "~marzod", state: "connected" }), 1);
  assert.equal(value(m, "seguro_ship_release_stalled_events", { ship: "~zod" }), 0);
  assert.equal(sample(m, "seguro_storage_persist_seconds").count, 1);
  assert.equal(sample(m, "seguro_raft_ready_seconds").count, 2);
  assert.equal(sample(m, "seguro_raft_ready_seconds").sum, 0.007);
  assert.equal(m.find((f) => f.name === "seguro_event_loop_lag_seconds")?.type, "summary");

  // Event 6 waits past the threshold; then the node is a follower: no lag, another role.
  now += RELEASE_STALL_MS;
  current = status({ role: "follower", leaderId: 2, term: 8 });
  m = await parsePrometheus(await metrics.scrape());
  assert.equal(value(m, "seguro_ship_release_stalled_events", { ship: "~zod" }), 1);
  assert.equal(value(m, "seguro_node_role", { role: "leader" }), 0);
  assert.equal(value(m, "seguro_node_role", { role: "follower" }), 1);
  assert.equal(value(m, "seguro_raft_leader_id"), 2);
  assert.equal(value(m, "seguro_raft_term"), 8);
  assert.equal(m.find((f) => f.name === "seguro_raft_peer_match_lag")?.samples.length ?? 0, 0);
  metrics.close();
});

Deno.test("metrics server: 503 until it serves, GET /metrics, 404 elsewhere, a busy port is one line", async () => {
  const metrics = new NodeMetrics(String);
  const server = new MetricsServer("127.0.0.1:0");
  try {
    const early = await fetch(`http://${server.address}/metrics`);
    await early.body?.cancel();
    assert.equal(early.status, 503);
    server.serve(metrics);
    const families = await scrape(server.address);
    assert.ok(families.some((f) => f.name === "seguro_node_role"));
    for (const path of ["/", "/metric", "/metrics/x"]) {
      const r = await fetch(`http://${server.address}${path}`);
      await r.body?.cancel();
      assert.equal(r.status, 404, path);
    }
    const post = await fetch(`http://${server.address}/metrics`, { method: "POST" });
    await post.body?.cancel();
    assert.equal(post.status, 405);
    assert.throws(
      () => new MetricsServer(server.address),
      (e: Error) =>
        e instanceof NodeError && /already in use/.test(e.message) && !e.message.includes("\n"),
    );
  } finally {
    await server.close();
  }
});
