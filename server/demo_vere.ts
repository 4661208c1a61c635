/**
 * `seguro demo --runtime vere`: the demo with the real Urbit runtime. A fake
 * ~zod booted by vere from the pill (once; cached), grown once so that it
 * has an epoch snapshot, imported onto a 3-node cluster whose nodes run it by
 * `--exec` on their standby piers (`--standby-play` keeps the followers'
 * piers warm); events injected through vere's conn.sock; the master killed
 * with SIGKILL; the new master's vere replaying its standby pier and going
 * on; every node's log compared at the end.
 *
 * Stock vere releases an event's effects without waiting for Seguro, so the
 * events the killed vere computed after the last one its node committed are
 * gone with it (the tail-delay window, reported). The hook-mode vere
 * (docs/runtime-protocol.md, "The vere side") closes that window.
 * @module
 */

import { join } from "node:path";
import { ClusterClient } from "../cluster/api.ts";
import { decodeToken } from "../cluster/token.ts";
import { readEvents } from "../vere/pier.ts";
import { VereConn } from "../vere/vere_conn.ts";
import { NodeError } from "./errors.ts";
import { EventLog, freePort, killOnInterrupt, startNode } from "./demo.ts";
import { bootedZod, copyPier, freeVerePorts, growPier } from "./vere_process.ts";
import { runtimeVersion } from "./runtime_version.ts";

/** How to run the demo with the real vere. */
export interface VereDemoOptions {
  /** The vere binary. */
  vere: string;
  /** The pill ~zod is booted from. */
  pill: string;
  /** Where the booted ~zod is cached. */
  cacheDir: string;
  /** Seconds of load before and after the kill. */
  seconds: number;
  /** Leave the cluster running at the end. */
  keep?: boolean;
}

/** What the demo found. */
export interface VereDemoResult {
  /** ~zod's last event on the cluster before the kill, and at the end. */
  eveAtKill: number;
  eveAtEnd: number;
  /** From the kill -9 of the master to its vere starting on the new master, and to it answering. */
  startMs: number;
  liveMs: number;
  /** The events the new master's vere replayed (`A-B`), or `none`. */
  replayed: string;
  /** Events the killed vere computed that the cluster never committed. */
  window: number;
  /** Surviving nodes whose log of ~zod is the first one's, of `compared`. */
  agree: number;
  compared: number;
  /** With `keep`: where the cluster keeps its data, and its processes. */
  kept?: { root: string; pids: number[] };
}

/** Receives the demo's progress: numbered steps and the lines under them. */
export interface VereDemoReporter {
  /** A step begins. */
  step(text: string): void;
  /** A line of detail. */
  line(text: string): void;
}

interface Node {
  id: number;
  dir: string;
  address: string;
  child: Deno.ChildProcess;
  log: EventLog;
}

/** Runs the demo end to end; without `keep`, nothing is left when it returns or throws. */
export async function runVereDemo(
  o: VereDemoOptions,
  report: VereDemoReporter,
): Promise<VereDemoResult> {
  const root = await Deno.makeTempDir({ prefix: "seguro-demo-vere-" });
  const nodes = new Map<number, Node>();
  const { kill, release } = killOnInterrupt(root, () => [...nodes.values()].map((n) => n.child));
  try {
    const version = await runtimeVersion(o.vere) ?? o.vere;
    report.step(`1. ~zod, booted by the real vere ${version} from ${o.pill}`);
    report.line(`   (the first run compiles the kernel: about 3 minutes; cached in ${o.cacheDir})`);
    const booted = await bootedZod(o.vere, o.pill, o.cacheDir);
    const pier = join(root, "zod");
    await copyPier(booted, pier);
    await growPier(o.vere, pier, 10);
    const first = [...readEvents(pier)].at(-1)!.eve;
    report.line(`   ~zod has ${first} events; its first start rolled epoch 25 with a snapshot`);

    report.step("2. A 3-node cluster on 127.0.0.1, each node ready to run ~zod with that vere");
    const start = (id: number, args: string[], env: Record<string, string> = {}) => {
      const log = new EventLog();
      const child = startNode([...args, "--log-format", "json"], env, log);
      const n = nodes.get(id)!;
      nodes.set(id, { ...n, child, log });
      return log;
    };
    for (let id = 1; id <= 3; id++) {
      const dir = join(root, `node${id}`);
      const address = `127.0.0.1:${freePort()}`;
      nodes.set(id, { id, dir, address, child: undefined!, log: new EventLog() });
      const token = id === 1 ? undefined : (await Deno.readTextFile(join(root, "node1", "token")));
      const log = start(
        id,
        id === 1
          ? ["init", "--data-dir", dir, "--listen", address]
          : ["join", nodes.get(1)!.address, "--data-dir", dir, "--listen", address],
        token === undefined ? {} : { SEGURO_TOKEN: token.trim() },
      );
      await log.waitForEvent(id === 1 ? "leader" : "follower");
      if (id > 1) await nodes.get(1)!.log.waitForEvent("promoted", { node: id });
    }
    const token = (await Deno.readTextFile(join(root, "node1", "token"))).trim();
    const credentials = decodeToken(token);
    const cli = async (args: string[]) => {
      const log = new EventLog();
      const child = startNode([...args, "--cluster", [...nodes.values()][0].address], {
        SEGURO_TOKEN: token,
      }, log);
      if (!(await child.status).success) {
        throw new NodeError(`seguro ${args.join(" ")} failed: ${log.lines.slice(-5).join(" / ")}`);
      }
    };
    await cli(["ship", "import", "~zod", pier]);
    report.line(`   ~zod imported (its pier is vere 3.x's layout, epochs 1)`);
    for (const n of [...nodes.values()]) {
      n.child.kill("SIGTERM");
      await n.child.status;
      const exec = `${o.vere} -t --no-dock ${(await freeVerePorts()).join(" ")} {pier}`;
      start(n.id, [
        "run",
        "--data-dir",
        n.dir,
        "--standby-dir",
        join(root, `standby${n.id}`),
        "--exec",
        exec,
        "--standby-play",
        "2",
      ]);
      report.line(`   node ${n.id} at ${n.address}: --exec '${exec}' --standby-play 2`);
    }
    const leader = await Promise.any(
      [...nodes.values()].map(async (n) => (await n.log.waitForEvent("leader"), n)),
    );

    report.step(
      `3. 'seguro ship run ~zod': node ${leader.id}, the master, starts vere on its pier`,
    );
    await cli(["ship", "run", "~zod"]);
    // The master starts it; should leadership move first (a loaded machine can miss a heartbeat),
    // the new master does: follow the runtime, not the first leader.
    let master = await Promise.any(
      [...nodes.values()].map(async (n) => {
        await n.log.waitForEvent("runtime_started", { ship: "~zod" }, 120_000);
        return n;
      }),
    );
    if (master.id !== leader.id) {
      report.line(
        `   leadership moved before vere started: node ${master.id} is master and runs it`,
      );
    }
    const lastEve = async () => {
      const c = await ClusterClient.connect(master.address, credentials);
      try {
        return (await c.ships.list())[0]?.lastEve ?? 0;
      } finally {
        c.close();
      }
    };
    const load = async (n: Node) => {
      const conn = await VereConn.open(join(root, `standby${n.id}`, "~zod"), 120_000);
      const until = Date.now() + o.seconds * 1000;
      let wakes = 0;
      let shown = Date.now();
      try {
        while (Date.now() < until) {
          await conn.wake();
          wakes++;
          if (Date.now() - shown >= 1000) {
            shown = Date.now();
            report.line(
              `   ${wakes} events injected; the cluster holds ~zod up to ${await lastEve()}`,
            );
          }
        }
      } finally {
        await conn.close();
      }
    };
    report.line("   injecting events into vere through .urb/conn.sock (behn %wakes)");
    await load(master);

    report.step(`4. kill -9 the master (node ${master.id}) while vere computes`);
    const eveAtKill = await lastEve();
    const conn = await VereConn.open(join(root, `standby${master.id}`, "~zod"));
    const busy = (async () => {
      try {
        for (;;) await conn.wake();
      } catch { /* its vere is gone */ }
    })();
    const marks = new Map([...nodes.values()].map((n) => [n.id, n.log.lines.length]));
    const eventMarks = new Map([...nodes.values()].map((n) => [n.id, n.log.eventMark()]));
    const killed = performance.now();
    master.child.kill("SIGKILL");
    await busy;
    await conn.close();
    const old = master;
    nodes.delete(old.id);
    const started = await Promise.any(
      [...nodes.values()].map(async (n) => {
        const e = await n.log.waitForEvent(
          "runtime_started",
          { ship: "~zod" },
          120_000,
          eventMarks.get(n.id),
        );
        return { n, eve: Number(e.eve) };
      }),
    );
    const startMs = performance.now() - killed;
    master = started.n;
    const probe = await VereConn.open(join(root, `standby${master.id}`, "~zod"), 120_000);
    await probe.wake();
    await probe.close();
    const liveMs = performance.now() - killed;
    const playLine = master.log.lines.slice(marks.get(master.id)).find((l) =>
      l.includes("play: events")
    );
    const replayed = playLine?.match(/events ([0-9]+-[0-9]+)/)?.[1] ?? "none";
    const wrote = [...readEvents(join(root, `standby${old.id}`, "~zod"))].at(-1)?.eve ?? 0;
    const window = Math.max(0, wrote - started.eve);
    report.line(
      `   node ${master.id} is master; its vere started ${
        (startMs / 1000).toFixed(1)
      } s after the kill ` +
        `(fencing included), replayed ${
          replayed === "none" ? "no event (its warm snapshot was current)" : `events ${replayed}`
        } and answered ${(liveMs / 1000).toFixed(1)} s after it`,
    );
    await load(master);

    report.step("5. Comparing ~zod's log on the surviving nodes");
    await cli(["ship", "run", "~zod", "--off"]);
    await master.log.waitForEvent("runtime_stopped", { ship: "~zod" }, 60_000);
    const eveAtEnd = await lastEve();
    const digests = await Promise.all([...nodes.values()].map(async (n) => {
      const deadline = Date.now() + 30_000;
      for (;;) {
        const c = await ClusterClient.connect(n.address, credentials);
        try {
          const v = await c.ships.verify(0n);
          if (v.lastEve >= eveAtEnd || Date.now() > deadline) return `${v.lastEve}:${v.digest}`;
        } finally {
          c.close();
        }
        await new Promise((r) => setTimeout(r, 100));
      }
    }));
    const agree = digests.filter((d) => d === digests[0]).length;
    return {
      eveAtKill,
      eveAtEnd,
      startMs,
      liveMs,
      replayed,
      window,
      agree,
      compared: digests.length,
      ...(o.keep ? { kept: { root, pids: [...nodes.values()].map((n) => n.child.pid) } } : {}),
    };
  } finally {
    release();
    if (!o.keep) {
      kill();
      await Deno.remove(root, { recursive: true }).catch(() => {});
    }
  }
}
