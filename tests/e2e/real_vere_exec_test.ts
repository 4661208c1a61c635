/**
 * Exec failover with the real vere 3.0 (issue P12, item 3): three nodes run
 * `seguro run --standby-dir ... --exec '<urbit-3.0> -t ... {pier}'`, the
 * master runs ~zod, and while events are injected through its conn.sock the
 * master is killed with SIGKILL. The new master's vere starts on its standby
 * pier (epochs 1: the epoch's snapshot in `.urb/chk`, the events after it),
 * replays, goes live and computes new events that the cluster commits; never
 * two veres at once (sampled from /proc). It prints the time from the kill to
 * the new vere answering, and the tail-delay window: events the killed
 * master's vere wrote that the cluster never committed.
 */

import assert from "node:assert/strict";
import { join } from "node:path";
import { readEvents } from "../../vere/pier.ts";
import type { ShipJson } from "../../cluster/admin_protocol.ts";
import { ClusterClient } from "../../cluster/api.ts";
import { lmdbToolsMissing } from "../fixtures.ts";
import { grownPier, vereBinary, vereMissing } from "../real_vere.ts";
import { ExecVere } from "./exec_vere.ts";
import { VereConn } from "../../vere/vere_conn.ts";
import { clusterTest, NodeProcess, type TestCluster, type TestMember } from "./harness.ts";

const MISSING = lmdbToolsMissing() ?? vereMissing("3.0");
const FAILOVERS = 2;

async function seguro(c: TestCluster, args: string[]): Promise<NodeProcess> {
  const p = new NodeProcess([...args, "--cluster", c.anyAddress()], { SEGURO_TOKEN: c.token });
  const status = await p.exited;
  assert.equal(status.code, 0, p.lines.join("\n"));
  return p;
}

/** The real vere king processes (not their serfs) whose command line names `root`. */
async function veresUnder(root: string): Promise<number[]> {
  const out = await new Deno.Command("ps", { args: ["-eo", "pid=,args="], stdout: "piped" })
    .output();
  const bin = vereBinary("3.0");
  return new TextDecoder().decode(out.stdout).split("\n").flatMap((line) => {
    const [pid, cmd, sub, ...rest] = line.trim().split(/\s+/);
    const args = [sub, ...rest];
    return cmd === bin && sub !== "serf" && args.some((a) => a?.startsWith(root))
      ? [Number(pid)]
      : [];
  });
}

/** Wakes injected into one vere: how many, and a promise of the first `early` of them. */
interface Injection {
  stop: boolean;
  done: number;
  /** Resolves once `early` wakes were answered (rejects if the vere went first). */
  started: Promise<void>;
  /** Resolves with `done` once stopped or the connection is lost. */
  finished: Promise<number>;
}

/** Injects wakes into the vere at `pier` until stopped or its connection is lost. */
function inject(pier: string, early = 20): Injection {
  let started!: () => void;
  let failed!: (e: Error) => void;
  const run: Injection = {
    stop: false,
    done: 0,
    started: new Promise((resolve, reject) => {
      started = resolve;
      failed = reject;
    }),
    finished: Promise.resolve(0),
  };
  run.started.catch(() => {}); // awaited by the test; this marks a later failure as handled
  run.finished = (async () => {
    const conn = await VereConn.open(pier, 120_000);
    try {
      while (!run.stop) {
        await conn.wake();
        if (++run.done === early) started();
      }
    } catch {
      // its vere was killed: the connection is gone
    } finally {
      await conn.close();
      failed(new Error(`the vere at ${pier} answered only ${run.done} wakes`));
    }
    return run.done;
  })();
  return run;
}

/** Waits (up to 60 s) until the cluster has committed ~zod's events past `eve`. */
async function committedPast(c: TestCluster, eve: number): Promise<number> {
  const deadline = Date.now() + 60_000;
  for (;;) {
    const client = await ClusterClient.connect(c.anyAddress(), c.credentials);
    try {
      const last = (await client.ships.list())[0]?.lastEve ?? 0;
      if (last > eve) return last;
    } finally {
      client.close();
    }
    if (Date.now() > deadline) throw new Error(`~zod's log did not pass event ${eve} in 60 s`);
    await new Promise((r) => setTimeout(r, 200));
  }
}

clusterTest(
  `seguro run --exec with the real vere 3.0: ${FAILOVERS} kill -9s of the master under injected load`,
  3,
  async (c) => {
    const pier = join(c.root, "zod");
    await grownPier(pier, 10);
    await seguro(c, ["ship", "import", "~zod", pier]);

    const ev = await ExecVere.start(c, ["--exec-grace-ms", "5000"]);
    const standbyOf = (m: TestMember) => ev.standbyOf(m);

    // Never two veres: sampled every 50 ms for the whole test.
    let most = 0;
    let sampling = true;
    const sampler = (async () => {
      while (sampling) {
        most = Math.max(most, (await veresUnder(c.root)).length);
        await new Promise((r) => setTimeout(r, 50));
      }
    })();

    try {
      let marks = ev.marks();
      await seguro(c, ["ship", "run", "~zod"]);
      const runner = () => ev.started(marks, 120_000);

      const liveMs: number[] = [];
      const windows: number[] = [];
      let { m: master, startEve } = await runner();
      for (let i = 0; i <= FAILOVERS; i++) {
        const injection = inject(standbyOf(master));
        await injection.started;
        // The tail commits some of the injected events; then the master dies.
        await committedPast(c, startEve + 20);
        if (i === FAILOVERS) {
          injection.stop = true;
          await injection.finished;
          break;
        }
        marks = ev.marks();
        const killed = performance.now();
        await master.proc!.kill("SIGKILL");
        await injection.finished;
        ev.restart(master);
        marks.set(master.id, 0);
        const old = master;
        ({ m: master, startEve } = await runner());
        assert.notEqual(master.id, old.id);
        // Live: the new vere answers a wake.
        const probe = await VereConn.open(standbyOf(master), 120_000);
        await probe.wake();
        await probe.close();
        liveMs.push(performance.now() - killed);
        // What the killed vere wrote past what the new one started from was never committed.
        const wrote = [...readEvents(standbyOf(old))].at(-1)?.eve ?? 0;
        windows.push(Math.max(0, wrote - startEve));
      }
      console.log(
        `real vere 3.0, kill -9 of the master under load: kill to live ${
          liveMs.map((ms) => `${(ms / 1000).toFixed(1)} s`).join(", ")
        }; tail-delay window ${windows.join(", ")} events`,
      );

      // The cluster went on from where the new vere started: its events grew past it, and
      // the new vere's pier holds the cluster's events up to there.
      const list = await seguro(c, ["ship", "list", "--json"]);
      const zod = (await list.json<ShipJson[]>())[0];
      assert.ok(zod.lastEve > startEve, `${zod.lastEve} > ${startEve}: the cluster went on`);
      const mark = master.proc!.mark();
      await seguro(c, ["ship", "run", "~zod", "--off"]);
      await master.proc!.waitForEvent("runtime_stopped", { ship: "~zod" }, mark, 60_000);
      const commit = (await c.status(master.id)).commitIndex;
      for (const m of c.members.values()) await c.waitCommitted(m.id, commit);
      const verify = await seguro(c, ["log", "verify", "~zod"]);
      assert.match(verify.lines.join("\n"), /agree/i);
    } finally {
      sampling = false;
      await sampler;
    }
    assert.equal(most, 1, `at most one vere at a time (saw ${most})`);
  },
  { ignore: MISSING },
);

clusterTest(
  "seguro run --standby-play with the real vere 3.0: followers' piers are played warm, so a failover replays only the newest events",
  3,
  async (c) => {
    const pier = join(c.root, "zod");
    await grownPier(pier, 10);
    await seguro(c, ["ship", "import", "~zod", pier]);
    const ev = await ExecVere.start(c, ["--standby-play", "1"]);
    const standbyOf = (m: TestMember) => ev.standbyOf(m);
    let marks = ev.marks();
    await seguro(c, ["ship", "run", "~zod"]);
    const runner = async () => (await ev.started(marks, 120_000)).m;
    const master = await runner();
    const heldFrom = master.proc!.mark();
    const conn = await VereConn.open(standbyOf(master), 120_000);
    for (let i = 0; i < 300; i++) await conn.wake();
    await conn.close();
    const target = await committedPast(c, 300);
    const followers = [...c.members.values()].filter((m) => m.id !== master.id);
    // Each follower's pier is played up to the events it holds; the master's, held, never.
    const played = await Promise.all(followers.map(async (f) => {
      const deadline = Date.now() + 60_000;
      for (;;) {
        const plays = f.proc!.events(marks.get(f.id)!).filter((e) => e.event === "standby_play");
        const warm = plays.map((e) => Number(e.eve)).find((eve) => eve >= target);
        if (warm !== undefined) return warm;
        if (Date.now() > deadline) {
          const said = f.proc!.lines.slice(marks.get(f.id)!).filter((l) => /play|standby/.test(l));
          throw new Error(`node ${f.id}: no warm-up play to ${target}:\n${said.join("\n")}`);
        }
        await new Promise((r) => setTimeout(r, 200));
      }
    }));
    assert.equal(
      master.proc!.events(heldFrom).filter((e) => e.event === "standby_play").length,
      0,
      "the held pier of the master is never played",
    );
    marks = ev.marks();
    await master.proc!.kill("SIGKILL");
    ev.restart(master);
    marks.set(master.id, 0);
    const next = await runner();
    const probe = await VereConn.open(standbyOf(next), 120_000);
    await probe.wake();
    await probe.close();
    // It replayed from its warm snapshot, not from the imported one at event 25.
    const replay = next.proc!.lines.slice(marks.get(next.id)!).find((l) => /play: events/.test(l));
    const from = Number(replay?.match(/play: events ([0-9]+)-/)?.[1] ?? 0);
    const warm = played[followers.indexOf(next)];
    assert.ok(
      replay === undefined || from > warm,
      `the new master replayed ${replay ?? "nothing"}, after its warm snapshot at ${warm}`,
    );
  },
  { ignore: MISSING },
);
