/**
 * The runtime socket on a real 3-node cluster: pipelined plans released at
 * the ship's optimism, `%away` on a follower, malformed frames, a stall while
 * a replica is stopped, and a released-but-lost event reported after a
 * failover with optimism 0.
 */

import assert from "node:assert/strict";
import { join } from "node:path";
import { ClusterClient } from "../../cluster/api.ts";
import type { NodeStatus } from "../../cluster/admin_protocol.ts";
import { cell, cord, jam, list, tuple } from "../../vere/noun.ts";
import { daFromUnix } from "../../vere/event.ts";
import { RuntimeClient } from "../../vere/runtime_client.ts";
import {
  decodeRuntimeFrame,
  encodeRuntimeMessage,
  type NodeToRuntimeMessage,
} from "../../vere/runtime_protocol.ts";
import { encodeFrame, NewtDecoder } from "../../vere/newt.ts";
import { scrape, value } from "../prometheus.ts";
import {
  clusterTest,
  freePort,
  NodeProcess,
  type TestCluster as Cluster,
  type TestMember,
} from "./harness.ts";

function job(n: number, tag = "belt"): Uint8Array {
  return jam(
    tuple(
      daFromUnix(1_800_000_000n + BigInt(n), 0),
      list([cord("d")]),
      cord(tag),
      cell(BigInt(n), 0n),
    ),
  );
}

async function cli(c: Cluster, args: string[]): Promise<NodeProcess> {
  const p = new NodeProcess([...args, "--cluster", c.anyAddress()], { SEGURO_TOKEN: c.token });
  const status = await p.exited;
  assert.equal(status.code, 0, p.lines.join("\n"));
  return p;
}

function socketOf(m: TestMember): { path: string } {
  return { path: join(m.dir, "runtime.sock") };
}

/** Resolves with the `%done` that reaches `eve` for ship 0. */
function doneUpTo(rt: RuntimeClient, eve: number): Promise<NodeToRuntimeMessage> {
  const done = rt.next((m) => m.type === "done" && m.ship === 0n && m.eve >= eve);
  const heard: string[] = [];
  const off = rt.on((m) => {
    if (m.type !== "done") {
      heard.push(JSON.stringify(m, (_k, v) => typeof v === "bigint" ? String(v) : v));
    }
  });
  // A hang guard, not a speed claim: fail with a message instead of hanging the suite.
  let timer: ReturnType<typeof setTimeout> | undefined;
  const guard = new Promise<never>((_, reject) => {
    timer = setTimeout(
      () => reject(new Error(`no %done for event ${eve} within 60 s; heard: ${heard.join(" ")}`)),
      60_000,
    );
  });
  return Promise.race([done, guard]).finally(() => {
    clearTimeout(timer);
    off();
  });
}

/** Messages arriving on a raw connection, one at a time; `end` resolves true at EOF. */
function rawReplies(conn: Deno.Conn) {
  const queue: NodeToRuntimeMessage[] = [];
  let wake: (() => void) | undefined;
  const end = (async () => {
    const decoder = new NewtDecoder();
    const buf = new Uint8Array(65536);
    while (true) {
      const n = await conn.read(buf).catch(() => null);
      if (n === null) return true;
      decoder.push(buf.slice(0, n));
      for (let f = decoder.next(); f !== undefined; f = decoder.next()) {
        queue.push(decodeRuntimeFrame(f, { from: "node" }) as NodeToRuntimeMessage);
      }
      wake?.();
    }
  })();
  return {
    end,
    async next(): Promise<NodeToRuntimeMessage> {
      while (queue.length === 0) await new Promise<void>((r) => wake = r);
      return queue.shift()!;
    },
  };
}

async function leaderStatus(c: Cluster, id: number): Promise<NodeStatus> {
  const client = await ClusterClient.connect(c.members.get(id)!.address, c.credentials);
  try {
    return await client.status();
  } finally {
    client.close();
  }
}

clusterTest(
  "runtime socket: 2,000 pipelined plans released at quorum; %away on a follower; malformed frames",
  3,
  async (c) => {
    await cli(c, ["ship", "add", "~zod", "--fake"]);
    const leader = c.leader()!;
    const rt = await RuntimeClient.connect(socketOf(leader));
    try {
      assert.equal(rt.nodeId, leader.id);
      const all = doneUpTo(rt, 2000);
      for (let eve = 1; eve <= 2000; eve++) rt.plan(0n, eve, eve, job(eve));
      await all;

      // A follower sends the runtime to the master.
      const follower = [...c.members.values()].find((m) => m.id !== leader.id)!;
      const other = await RuntimeClient.connect(socketOf(follower));
      const away = other.next((m) => m.type === "away");
      other.plan(0n, 2001, 0, job(2001));
      const a = await away;
      assert.equal(a.type === "away" && a.master, leader.address);
      other.close();

      // A frame that is not a jam gets %oops and the connection stays usable;
      // a frame that breaks the framing gets %oops and the connection closes.
      const raw = await Deno.connect({ transport: "unix", path: socketOf(leader).path });
      const replies = rawReplies(raw);
      const hail = encodeRuntimeMessage({ type: "hail", version: 1, node: 0 });
      await raw.write(encodeFrame(hail));
      assert.equal((await replies.next()).type, "hail");
      await raw.write(Uint8Array.from([0, 2, 0, 0, 0, 0xff, 0x00])); // jam with trailing garbage
      let m = await replies.next();
      while (m.type === "lead") m = await replies.next();
      assert.equal(m.type, "oops");
      await raw.write(encodeFrame(encodeRuntimeMessage({ type: "head", ship: 0n })));
      const h = await replies.next();
      assert.equal(h.type === "head" && h.eve, 2000);
      await raw.write(Uint8Array.from([7, 1, 0, 0, 0, 2])); // not a newt frame
      assert.equal((await replies.next()).type, "oops");
      assert.equal(await replies.end, true);
      raw.close();
    } finally {
      rt.close();
    }
    const verify = await cli(c, ["log", "verify", "~zod"]);
    assert.match(verify.lines.join("\n"), /3 nodes agree on 2,000 events/);
  },
);

clusterTest(
  "optimism: K = all stalls while a replica is stopped and resumes; K = 0 loss after kill -9 of the master is reported",
  3,
  async (c) => {
    await cli(c, ["ship", "add", "~zod", "--fake"]);
    const leader = c.members.get((await leaderStatus(c, 1)).leaderId)!;
    const followers = [...c.members.values()].filter((m) => m.id !== leader.id);
    const rt = await RuntimeClient.connect(socketOf(leader));
    try {
      // K = 2 (every replica): stop one, the release waits; continue it, the release comes.
      await cli(c, ["ship", "set", "~zod", "--optimism", "2"]);
      Deno.kill(followers[0].proc!.child.pid, "SIGSTOP");
      const done1 = doneUpTo(rt, 1);
      let released = false;
      done1.then(() => released = true, () => {});
      rt.plan(0n, 1, 1, job(1));
      // The stall shows once the running replica has acknowledged the event. That is an
      // event: the replica's commit of the leader's last index (a long-poll read), after
      // which the leader's view is read. Repeated only while the plan is not yet proposed.
      let stalled: NodeStatus["release"]["stalled"] = null;
      for (let i = 0; i < 50 && (stalled === null || stalled.have < 1); i++) {
        const last = (await leaderStatus(c, leader.id)).lastIndex;
        await c.waitCommitted(followers[1].id, last);
        stalled = (await leaderStatus(c, leader.id)).release.stalled;
      }
      assert.deepEqual(stalled, { need: 2, have: 1 });
      assert.equal(released, false, "released while a required replica was stopped");
      Deno.kill(followers[0].proc!.child.pid, "SIGCONT");
      await done1;

      // K = 0: with both replicas unable to answer, the master still releases (its own
      // fsync). They are stopped at once (SIGSTOP, no waiting, so the master is still master
      // when the plans arrive: CheckQuorum would make it step down within a second), and
      // then killed, which discards the appends waiting unread in their sockets.
      await cli(c, ["ship", "set", "~zod", "--optimism", "0"]);
      for (const f of followers) Deno.kill(f.proc!.child.pid, "SIGSTOP");
      const done3 = doneUpTo(rt, 3);
      rt.plan(0n, 2, 2, job(2));
      rt.plan(0n, 3, 3, job(3));
      await done3;
      for (const f of followers) await f.proc!.kill("SIGKILL");
      // Kill the master (kill -9); the replicas come back, elect a new one, and get other
      // events 2 and 3.
      rt.close();
      await leader.proc!.kill("SIGKILL");
      for (const f of followers) c.restart(f.id);
      await Promise.any(followers.map((f) => f.proc!.waitForEvent("leader")));
      const newLeader = followers.find((f) => f.proc!.lines.some((l) => /became leader/.test(l)))!;
      const rt2 = await RuntimeClient.connect(socketOf(newLeader));
      await rt2.lead(0n); // master once it has applied an entry of its term (rule 8)
      const done3b = doneUpTo(rt2, 3);
      rt2.plan(0n, 2, 22, job(2, "hark"));
      rt2.plan(0n, 3, 33, job(3, "hark"));
      await done3b;
      rt2.close();
      // The old master restarts, learns the newer term, and finds that what it may have
      // released before the crash was erased.
      c.restart(leader.id);
      const mark = 0;
      // Events 2 and 3 may have gone out in one entry or two: wait until both are reported.
      const lost = await leader.proc!.waitForEvent(
        "released_but_lost",
        { ship: "~zod", lastEve: 3 },
        mark,
      );
      assert.ok(lost.firstEve === 2 || lost.firstEve === 3, JSON.stringify(lost));
      const s = await leaderStatus(c, leader.id);
      const lostEves = s.release.losses.flatMap((l) =>
        Array.from({ length: l.lastEve - l.firstEve + 1 }, (_, i) => l.firstEve + i)
      );
      assert.deepEqual(lostEves.sort(), [2, 3]);
      const audit = await cli(c, ["log", "audit", "~zod", "--json"]);
      const audited = JSON.parse(
        audit.lines.join("\n"),
      );
      assert.deepEqual(
        audited.losses.flatMap((
          l: { firstEve: number; lastEve: number },
        ) => [l.firstEve, l.lastEve]).sort(),
        lostEves.length === 2 && audited.losses.length === 1 ? [2, 3] : [2, 2, 3, 3],
      );
      // A restart of the node that found them keeps them listed, once; its metrics count them.
      await leader.proc!.kill("SIGTERM");
      const metrics = `127.0.0.1:${freePort()}`;
      c.restart(leader.id, ["--metrics", metrics]);
      await c.waitCommitted(leader.id, 1);
      const again = (await leaderStatus(c, leader.id)).release.losses;
      assert.deepEqual(
        again.map((l) => [l.firstEve, l.lastEve]),
        s.release.losses.map((l) => [l.firstEve, l.lastEve]),
      );
      const m = await scrape(metrics);
      assert.equal(value(m, "seguro_ship_released_lost_events", { ship: "~zod" }), 2);
    } finally {
      rt.close();
    }
  },
);

Deno.test({
  name: "seguro run --runtime-tcp is refused in one line: the runtime protocol has no credential",
  sanitizeResources: false,
  sanitizeOps: false,
  async fn() {
    const root = await Deno.makeTempDir({ prefix: "seguro-rt-tcp-" });
    try {
      const init = new NodeProcess([
        "init",
        "--data-dir",
        root,
        "--listen",
        `127.0.0.1:${freePort()}`,
        "--no-start",
      ]);
      assert.equal((await init.exited).code, 0, init.lines.join("\n"));
      const run = new NodeProcess(["run", "--data-dir", root, "--runtime-tcp", String(freePort())]);
      const { code } = await run.exited;
      assert.notEqual(code, 0);
      assert.equal(run.lines.length, 1, run.lines.join("\n"));
      assert.match(
        run.lines[0],
        /--runtime-tcp was removed: the runtime protocol carries no credential, so only the node's user may reach it, on the Unix socket runtime\.sock in the data dir \(mode 0600\)/,
      );
    } finally {
      await Deno.remove(root, { recursive: true });
    }
  },
});
