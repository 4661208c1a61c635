/**
 * Failover with the real vere 3.0, cold against warm standby (issue P12,
 * items 3 and 5): three nodes run ~zod with `--exec '<urbit-3.0> -t ...
 * {pier}'`; `--events` events are computed (behn %wakes through conn.sock)
 * after the last snapshot the standby piers hold; then the master is killed
 * with SIGKILL. Reported per mode: the events the new master's vere replayed,
 * the time from the kill to its start (fencing included) and to its first
 * answer (live), and the tail-delay window (events the killed vere wrote that
 * the cluster never committed). Warm runs the nodes with `--standby-play 2`.
 *
 *     deno task bench:vere-failover [--events 10000] [--modes cold,warm]
 *
 * Needs the real vere 3.0 in ../shared/tools/vere (tests/real_vere.ts).
 * @module
 */

import { parseArgs } from "node:util";
import { join } from "node:path";
import { ClusterClient } from "../cluster/api.ts";
import { readEvents } from "../vere/pier.ts";
import { NodeProcess, TestCluster, type TestMember } from "../tests/e2e/harness.ts";
import { grownPier, vereMissing } from "../tests/real_vere.ts";
import { ExecVere } from "../tests/e2e/exec_vere.ts";
import { VereConn } from "../vere/vere_conn.ts";

const { values } = parseArgs({
  args: Deno.args,
  options: {
    events: { type: "string", default: "10000" },
    modes: { type: "string", default: "cold,warm" },
  },
});
const EVENTS = Number(values.events);
const missing = vereMissing("3.0");
if (missing !== undefined) {
  console.error(`bench:vere-failover: ${missing}`);
  Deno.exit(1);
}

interface Row {
  mode: string;
  replayed: string;
  startMs: number;
  liveMs: number;
  window: number;
}

async function lastEve(c: TestCluster): Promise<number> {
  const client = await ClusterClient.connect(c.anyAddress(), c.credentials);
  try {
    return (await client.ships.list())[0]?.lastEve ?? 0;
  } finally {
    client.close();
  }
}

/** Polls (every 200 ms, up to 5 min) until `ready` holds. */
async function until(what: string, ready: () => Promise<boolean> | boolean): Promise<void> {
  const deadline = Date.now() + 300_000;
  while (!(await ready())) {
    if (Date.now() > deadline) throw new Error(`gave up waiting for ${what}`);
    await new Promise((r) => setTimeout(r, 200));
  }
}

async function run(mode: "cold" | "warm"): Promise<Row> {
  const c = await TestCluster.init();
  try {
    await c.join();
    await c.join();
    const pier = join(c.root, "zod");
    await grownPier(pier, 10);
    const imported = new NodeProcess(
      ["ship", "import", "~zod", pier, "--cluster", c.anyAddress()],
      {
        SEGURO_TOKEN: c.token,
      },
    );
    if ((await imported.exited).code !== 0) throw new Error(imported.lines.join("\n"));
    const ev = await ExecVere.start(c, mode === "warm" ? ["--standby-play", "2"] : []);
    const standbyOf = (m: TestMember) => ev.standbyOf(m);
    let marks = ev.marks();
    const ran = new NodeProcess(["ship", "run", "~zod", "--cluster", c.anyAddress()], {
      SEGURO_TOKEN: c.token,
    });
    if ((await ran.exited).code !== 0) throw new Error(ran.lines.join("\n"));
    const runner = () => ev.started(marks, 300_000);
    const { m: master } = await runner();

    // The load: EVENTS wakes, then every one committed and on the followers' standby piers.
    const conn = await VereConn.open(standbyOf(master), 120_000);
    const t0 = performance.now();
    for (let i = 0; i < EVENTS; i++) await conn.wake();
    console.error(`${mode}: ${EVENTS} wakes in ${((performance.now() - t0) / 1000).toFixed(1)} s`);
    const target = [...readEvents(standbyOf(master))].at(-1)!.eve;
    await until(`the cluster at ${target}`, async () => (await lastEve(c)) >= target);
    const followers = [...c.members.values()].filter((m) => m.id !== master.id);
    for (const f of followers) {
      await until(
        `node ${f.id}'s standby at ${target}`,
        () => ([...readEvents(standbyOf(f))].at(-1)?.eve ?? 0) >= target,
      );
      if (mode === "warm") {
        await until(
          `node ${f.id}'s warm-up play`,
          () => f.proc!.events().some((e) => e.event === "standby_play" && Number(e.eve) >= target),
        );
      }
    }

    // Keep computing while the master dies, as a busy ship would.
    let stop = false;
    const busy = (async () => {
      try {
        while (!stop) await conn.wake();
      } catch {
        // the vere was killed
      }
    })();
    await new Promise((r) => setTimeout(r, 500));
    marks = ev.marks();
    const killed = performance.now();
    await master.proc!.kill("SIGKILL");
    await busy;
    stop = true;
    await conn.close();
    const { m: next, startEve } = await runner();
    const startMs = performance.now() - killed;
    const probe = await VereConn.open(standbyOf(next), 300_000);
    await probe.wake();
    await probe.close();
    const liveMs = performance.now() - killed;
    const played = next.proc!.lines.slice(marks.get(next.id)!).find((l) => /play: events/.test(l));
    const wrote = [...readEvents(standbyOf(master))].at(-1)?.eve ?? 0;
    return {
      mode,
      replayed: played?.match(/events ([0-9]+-[0-9]+)/)?.[1] ?? "none",
      startMs,
      liveMs,
      window: Math.max(0, wrote - startEve),
    };
  } finally {
    await c.destroy();
  }
}

const rows: Row[] = [];
for (const mode of values.modes.split(",") as ("cold" | "warm")[]) rows.push(await run(mode));
console.log(
  `\nkill -9 of the master, real vere 3.0, ${EVENTS} wakes since the imported snapshot:\n`,
);
console.log(
  "| standby | events replayed | kill to vere start | kill to live | tail-delay window |",
);
console.log("| --- | --- | ---: | ---: | ---: |");
for (const r of rows) {
  console.log(
    `| ${r.mode} | ${r.replayed} | ${(r.startMs / 1000).toFixed(1)} s | ${
      (r.liveMs / 1000).toFixed(1)
    } s | ${r.window} events |`,
  );
}
