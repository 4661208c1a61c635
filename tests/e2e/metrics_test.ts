/**
 * `--metrics HOST:PORT` on real processes: a 3-node cluster started by
 * `init --metrics` and `join --metrics`, a runtime planning events on the
 * master and raw writes, then every node scraped and parsed with a real
 * Prometheus parser and held against `seguro status`; and the flag's
 * failures (a bad value, a busy port) before the node starts.
 */

import assert from "node:assert/strict";
import { join } from "node:path";
import type { NodeStatus } from "../../cluster/admin_protocol.ts";
import { RuntimeClient } from "../../vere/runtime_client.ts";
import { jam } from "../../vere/noun.ts";
import { type Family, family, sample, scrape, value } from "../prometheus.ts";
import { freePort, HANG_GUARD_MS, NodeProcess, payloads, TestCluster } from "./harness.ts";

const EVENTS = 300;
/** A hang guard, not a speed claim. */
const WAIT_MS = 60_000;
const RAW_WRITES = 50;

/** `promise`, or a rejection naming `what` after WAIT_MS. */
function within<T>(promise: Promise<T>, what: string): Promise<T> {
  let timer: ReturnType<typeof setTimeout> | undefined;
  const guard = new Promise<never>((_, reject) => {
    timer = setTimeout(() => reject(new Error(`no ${what} within ${WAIT_MS} ms`)), WAIT_MS);
  });
  return Promise.race([promise, guard]).finally(() => clearTimeout(timer));
}

/** The fields of a status that the metrics report, to check that the cluster is idle. */
function indexes(s: NodeStatus) {
  return {
    role: s.role,
    term: s.term,
    leaderId: s.leaderId,
    lastIndex: s.lastIndex,
    commitIndex: s.commitIndex,
    appliedIndex: s.appliedIndex,
    matches: s.members.map((m) => [m.id, m.match]),
  };
}

/** Scrapes member `id` between two equal statuses, so the numbers are of one state. */
async function scrapeIdle(
  c: TestCluster,
  id: number,
  address: string,
): Promise<{ m: Family[]; s: NodeStatus }> {
  for (let attempt = 0; attempt < 20; attempt++) {
    const before = await c.status(id);
    const m = await scrape(address);
    const after = await c.status(id);
    if (JSON.stringify(indexes(before)) === JSON.stringify(indexes(after))) return { m, s: after };
    // Something moved (a late acknowledgement): wait until this node has committed what it
    // holds (a long-poll read, an event), then look again.
    await c.waitCommitted(id, after.lastIndex);
  }
  throw new Error(`node ${id} did not stay idle across a scrape`);
}

function checkNode(m: Family[], s: NodeStatus, role: string): void {
  for (const r of ["leader", "follower", "candidate", "preCandidate", "learner", "removed"]) {
    assert.equal(value(m, "seguro_node_role", { role: r }), r === role ? 1 : 0, r);
  }
  assert.equal(value(m, "seguro_raft_term"), s.term);
  assert.equal(value(m, "seguro_raft_leader_id"), s.leaderId);
  assert.equal(value(m, "seguro_raft_commit_index"), s.commitIndex);
  assert.equal(value(m, "seguro_raft_applied_index"), s.appliedIndex);
  assert.equal(value(m, "seguro_raft_last_index"), s.lastIndex);
  // At least one entry per raw write, plus the events' entries.
  assert.ok(s.commitIndex >= RAW_WRITES + 1, `commit index ${s.commitIndex}`);
  assert.equal(value(m, "seguro_ship_last_eve", { ship: "~zod" }), EVENTS);
  assert.ok(sample(m, "seguro_storage_persist_seconds").count! > 0);
  assert.ok(sample(m, "seguro_raft_ready_seconds").count! > 0);
  assert.equal(value(m, "seguro_ship_released_lost_events", { ship: "~zod" }), 0);
  assert.equal(value(m, "seguro_ship_release_stalled_events", { ship: "~zod" }), 0);
}

Deno.test({
  name: "metrics: init/join --metrics on 3 nodes; role, indexes, lag, ships and latencies",
  sanitizeResources: false,
  sanitizeOps: false,
  async fn() {
    const addresses = [1, 2, 3].map(() => `127.0.0.1:${freePort()}`);
    const c = await TestCluster.init(["--metrics", addresses[0]]);
    const guard = setTimeout(() => c.destroy(), HANG_GUARD_MS);
    let rt: RuntimeClient | undefined;
    try {
      const metricsOf = new Map([[1, addresses[0]]]);
      for (const address of addresses.slice(1)) {
        metricsOf.set((await c.join(["--metrics", address])).id, address);
      }
      for (const [id, address] of metricsOf) {
        await c.members.get(id)!.proc!.waitForEvent("metrics", { address });
      }
      const add = new NodeProcess(["ship", "add", "~zod", "--fake", "--cluster", c.anyAddress()], {
        SEGURO_TOKEN: c.token,
      });
      assert.equal((await add.exited).code, 0, add.lines.join("\n"));
      const leaderId = (await c.status(1)).leaderId;
      const leader = c.members.get(leaderId)!;

      // A runtime plans EVENTS events on the master and waits for their release.
      rt = await RuntimeClient.connect({ path: join(leader.dir, "runtime.sock") });
      await within(rt.lead(0n), "%lead");
      const done = rt.next((msg) => msg.type === "done" && msg.eve >= EVENTS);
      for (let eve = 1; eve <= EVENTS; eve++) rt.plan(0n, eve, eve, jam(BigInt(eve)));
      await within(done, `%done of event ${EVENTS}`);
      await c.write(payloads("metrics", RAW_WRITES));
      const commit = (await c.status(leaderId)).commitIndex;
      for (const id of metricsOf.keys()) await c.waitCommitted(id, commit);

      const { m, s } = await scrapeIdle(c, leaderId, metricsOf.get(leaderId)!);
      checkNode(m, s, "leader");
      assert.equal(value(m, "seguro_ship_released_events_total", { ship: "~zod" }), EVENTS);
      const latency = sample(m, "seguro_ship_release_seconds", { ship: "~zod" });
      assert.equal(latency.count, EVENTS);
      assert.ok(latency.sum! > 0);
      assert.equal(value(m, "seguro_ship_runtime_state", { ship: "~zod", state: "master" }), 1);
      assert.equal(value(m, "seguro_ship_runtime_state", { ship: "~zod", state: "none" }), 0);
      const peers = family(m, "seguro_raft_peer_match_lag").samples.map((x) => x.labels.peer);
      assert.deepEqual(
        peers.sort(),
        [...metricsOf.keys()].filter((id) => id !== leaderId).map(String),
      );
      for (const member of s.members.filter((x) => x.id !== leaderId)) {
        assert.equal(
          value(m, "seguro_raft_peer_match_lag", { peer: String(member.id) }),
          s.lastIndex - member.match!,
        );
      }

      for (const [id, address] of metricsOf) {
        if (id === leaderId) continue;
        const f = await scrapeIdle(c, id, address);
        checkNode(f.m, f.s, "follower");
        assert.equal(f.s.leaderId, leaderId);
        assert.equal(family(f.m, "seguro_raft_peer_match_lag").samples.length, 0);
        assert.equal(family(f.m, "seguro_ship_released_events_total").samples.length, 0);
        assert.equal(value(f.m, "seguro_ship_runtime_state", { ship: "~zod", state: "none" }), 1);
      }

      const elsewhere = await fetch(`http://${metricsOf.get(leaderId)}/`);
      await elsewhere.body?.cancel();
      assert.equal(elsewhere.status, 404);
    } finally {
      rt?.close();
      clearTimeout(guard);
      await c.destroy();
    }
  },
});

Deno.test({
  name: "metrics: a bad --metrics is a usage error; a busy port stops the node before it starts",
  sanitizeResources: false,
  sanitizeOps: false,
  async fn() {
    const dir = await Deno.makeTempDir({ prefix: "seguro-metrics-" });
    const busy = Deno.listen({ hostname: "127.0.0.1", port: 0 });
    let node: NodeProcess | undefined;
    try {
      const init = new NodeProcess([
        "init",
        "--data-dir",
        dir,
        "--listen",
        `127.0.0.1:${freePort()}`,
        "--no-start",
      ]);
      assert.equal((await init.exited).code, 0, init.lines.join("\n"));
      for (const bad of ["9770", "127.0.0.1:0", "localhost:99999"]) {
        const p = new NodeProcess(["run", "--data-dir", dir, "--metrics", bad]);
        assert.equal((await p.exited).code, 2, p.lines.join("\n"));
        assert.equal(p.lines.length, 1, p.lines.join("\n"));
        assert.match(p.lines[0], /--metrics must be HOST:PORT/);
      }
      const taken = `127.0.0.1:${busy.addr.port}`;
      const p = new NodeProcess(["run", "--data-dir", dir, "--metrics", taken]);
      assert.equal((await p.exited).code, 1, p.lines.join("\n"));
      assert.equal(p.lines.length, 1, p.lines.join("\n"));
      assert.match(p.lines[0], new RegExp(`--metrics ${taken} is already in use`));
      // Nothing was started: no runtime socket, no pid file, and the data dir opens again.
      assert.deepEqual([...Deno.readDirSync(dir)].map((e) => e.name).sort(), [
        "node.json",
        "seguro.db",
        "seguro.lock",
        "token",
      ]);
      // init and join check the metrics port before they create anything or print a token.
      const fresh = join(dir, "fresh");
      for (const args of [["init"], ["join", `127.0.0.1:${freePort()}`]]) {
        const q = new NodeProcess(
          [...args, "--data-dir", fresh, "--listen", `127.0.0.1:${freePort()}`, "--metrics", taken],
          { SEGURO_TOKEN: (await Deno.readTextFile(join(dir, "token"))).trim() },
        );
        assert.equal((await q.exited).code, 1, q.lines.join("\n"));
        assert.equal(q.lines.length, 1, q.lines.join("\n"));
        assert.match(q.lines[0], new RegExp(`--metrics ${taken} is already in use`));
        await assert.rejects(Deno.stat(fresh), Deno.errors.NotFound);
      }
      const free = `127.0.0.1:${freePort()}`;
      node = new NodeProcess(["run", "--data-dir", dir, "--metrics", free]);
      await node.waitForEvent("leader");
      await node.waitForEvent("metrics", { address: free });
      assert.equal(value(await scrape(free), "seguro_node_role", { role: "leader" }), 1);
    } finally {
      busy.close();
      await node?.kill("SIGTERM");
      await Deno.remove(dir, { recursive: true });
    }
  },
});
