/**
 * The demo behind `seguro demo`: a 3-node cluster on this machine (Seguro
 * started as child processes), ~zod booted from a pill, a runtime streaming
 * events through the runtime socket, the master killed with SIGKILL, the
 * runtime following the new master, and a check that every released event
 * survived. Progress goes to a {@linkcode DemoReporter}; the command prints it.
 * @module
 */

import { fileURLToPath } from "node:url";
import { join } from "node:path";
import { ClusterClient } from "../cluster/api.ts";
import type { NodeStatus } from "../cluster/admin_protocol.ts";
import type { LogEvent } from "../cluster/log_event.ts";
import { decodeToken } from "../cluster/token.ts";
import type { ClusterCredentials } from "../cluster/token.ts";
import { daFromMillis } from "../vere/event.ts";
import { cell, cord, jam, list, tuple } from "../vere/noun.ts";
import { RuntimeClient } from "../vere/runtime_client.ts";
import { NodeError } from "./errors.ts";
import { selfCommand } from "./self_command.ts";

/** The pill the demo boots ~zod from when none is named (if it is there). */
export const DEFAULT_DEMO_PILL: string = fileURLToPath(
  new URL("../../shared/fixtures/brass.pill", import.meta.url),
);

/** How to run the demo. */
export interface DemoOptions {
  /** The pill to boot ~zod from; `false` for a generated boot sequence; default {@linkcode DEFAULT_DEMO_PILL} when present. */
  pill?: string | false;
  /** Seconds of load before and after the kill. */
  seconds: number;
  /** Events per second the runtime plans. */
  rate: number;
  /** Leave the cluster running at the end. */
  keep?: boolean;
}

/** A live progress sample while the runtime streams events. */
export interface DemoProgress {
  /** The highest event planned. */
  planned: number;
  /** The highest event released to the runtime. */
  released: number;
  /** The master's commit index (0 when its status was not at hand). */
  commitIndex: number;
  /** Events released per second since the stream (re)started. */
  eventsPerSecond: number;
  /** How far each other member is behind the master's log, or undefined when unknown. */
  lag: { node: number; behind: number }[] | undefined;
}

/** What the demo found. */
export interface DemoResult {
  /** Events released before the kill. */
  releasedBeforeKill: number;
  /** Events released after the kill. */
  releasedAfterKill: number;
  /** From the kill -9 of the master to the first release by the new one, in ms. */
  failoverMs: number;
  /** Released events found on the new master. */
  checked: number;
  /** Released events missing or different on the new master. */
  lost: number;
  /** With `keep`: where the cluster left running keeps its data, and its processes. */
  kept?: { root: string; pids: number[] };
}

/** Receives the demo's progress, in order. */
export interface DemoReporter {
  /** Step 1: the cluster is being started, with its data under `root`. */
  starting(root: string): void;
  /** A node is up: node 1 as master, the others joined and promoted to voters. */
  nodeStarted(node: { id: number; address: string; master: boolean }): void;
  /** Step 2: ~zod is being booted. */
  booting(): void;
  /** ~zod is booted: from `pill` with `events` boot events, or (pill undefined) a generated sequence follows. */
  booted(boot: { pill: string | undefined; events: number }): void;
  /** Step 3: the runtime starts planning `rate` events/s through node `node`'s runtime socket. */
  streaming(stream: { rate: number; node: number }): void;
  /** A live sample, at most every 500 ms. */
  progress(progress: DemoProgress): void;
  /** Step 4: node `node`, the master, is about to be killed with SIGKILL. */
  killing(node: number): void;
  /** Node `node` is master and the runtime was released again `failoverMs` after the kill. */
  failedOver(failover: { node: number; failoverMs: number }): void;
  /** Step 5: every released event is being checked on the new master. */
  checking(): void;
  /** The final report (before a NodeError if events were lost). */
  finished(result: DemoResult): void;
}

interface DemoNode {
  id: number;
  dir: string;
  address: string;
  child: Deno.ChildProcess;
  log: EventLog;
}

/**
 * Ctrl-C during a demo kills its `children` and removes `root`, exiting 130.
 * Returns `kill` (SIGKILL to the children now) and `release` (the listener off).
 */
export function killOnInterrupt(
  root: string,
  children: () => Deno.ChildProcess[],
): { kill: () => void; release: () => void } {
  const kill = () => {
    for (const child of children()) {
      try {
        child.kill("SIGKILL");
      } catch { /* gone */ }
    }
  };
  const interrupted = () => {
    kill();
    Deno.removeSync(root, { recursive: true });
    Deno.exit(130);
  };
  Deno.addSignalListener("SIGINT", interrupted);
  return { kill, release: () => Deno.removeSignalListener("SIGINT", interrupted) };
}

/** A TCP port free on 127.0.0.1 just now. */
export function freePort(): number {
  const l = Deno.listen({ hostname: "127.0.0.1", port: 0 });
  const port = l.addr.port;
  l.close();
  return port;
}

/** Starts `seguro ARGS` as a child whose output lines go to `log`. */
export function startNode(
  args: string[],
  env: Record<string, string>,
  log: EventLog,
): Deno.ChildProcess {
  const { cmd, args: full } = selfCommand(args);
  const child = new Deno.Command(cmd, {
    args: full,
    env: { NO_COLOR: "1", ...env },
    stdin: "null",
    stdout: "piped",
    stderr: "piped",
  }).spawn();
  for (const stream of [child.stdout, child.stderr]) {
    log.reading((async () => {
      let rest = "";
      for await (const chunk of stream.pipeThrough(new TextDecoderStream())) {
        rest += chunk;
        const lines = rest.split("\n");
        rest = lines.pop()!;
        log.push(...lines);
      }
      if (rest !== "") log.push(rest);
    })());
  }
  return child;
}

/** The structured event of a `--log-format json` line, if it is one. */
function eventOf(line: string): LogEvent | undefined {
  if (!line.startsWith("{")) return undefined;
  try {
    const o = JSON.parse(line);
    return typeof o?.event === "string" ? o : undefined;
  } catch {
    return undefined;
  }
}

type EventTest = (e: LogEvent) => boolean;

/** A child's output lines, with waiters on its log events woken as lines arrive (no polling). */
export class EventLog {
  readonly lines: string[] = [];
  readonly #events: LogEvent[] = [];
  readonly #readers: Promise<void>[] = [];
  #waiters: { test: EventTest; resolve: (e: LogEvent) => void }[] = [];

  /** Records output lines, waking the waiters on the events among them. */
  push(...lines: string[]): void {
    for (const line of lines) {
      this.lines.push(line);
      const e = eventOf(line);
      if (e === undefined) continue;
      this.#events.push(e);
      const matched = this.#waiters.filter((w) => w.test(e));
      this.#waiters = this.#waiters.filter((w) => !matched.includes(w));
      for (const w of matched) w.resolve(e);
    }
  }

  /** A reader of the child's output (startNode): {@linkcode drained} waits for it to end. */
  reading(reader: Promise<void>): void {
    this.#readers.push(reader.catch(() => undefined));
  }

  /** Resolves once every reader of the child's output has ended (all its lines are in). */
  async drained(): Promise<void> {
    await Promise.all(this.#readers);
  }

  /** How many events were seen so far: a mark for {@linkcode waitForEvent}'s `after`. */
  eventMark(): number {
    return this.#events.length;
  }

  /**
   * The first `event` with `fields` after the first `after` events (by
   * default all), already seen or yet to come; a NodeError after `timeoutMs`.
   */
  waitForEvent(
    event: string,
    fields: Record<string, string | number> = {},
    timeoutMs = 30_000,
    after = 0,
  ): Promise<LogEvent> {
    const test: EventTest = (e) =>
      e.event === event && Object.entries(fields).every(([k, v]) => e[k] === v);
    const seen = this.#events.slice(after).find(test);
    if (seen !== undefined) return Promise.resolve(seen);
    return new Promise((resolve, reject) => {
      const timer = setTimeout(() => {
        const what = `a '${event}' event with ${JSON.stringify(fields)}`;
        reject(
          new NodeError(
            `the demo cluster did not get ready (waiting for ${what}); last lines:\n${
              this.lines.slice(-10).join("\n")
            }`,
          ),
        );
      }, timeoutMs);
      this.#waiters.push({
        test,
        resolve: (e) => {
          clearTimeout(timer);
          resolve(e);
        },
      });
    });
  }
}

async function status(
  address: string,
  credentials: ClusterCredentials,
): Promise<NodeStatus | undefined> {
  try {
    const c = await ClusterClient.connect(address, credentials);
    try {
      return await c.status();
    } finally {
      c.close();
    }
  } catch {
    return undefined;
  }
}

/** A small, clearly labelled boot sequence when no pill is at hand. */
function generatedBootJob(i: number): Uint8Array {
  return jam(
    tuple(
      daFromMillis(Date.now()) + BigInt(i),
      list([cord("demo")]),
      cord("note"),
      cell(BigInt(i), 0n),
    ),
  );
}

/** A made-up keystroke-like event: `[now /d/term/1 %belt [n n<<64]]`. */
function eventJob(n: number): Uint8Array {
  return jam(
    tuple(
      daFromMillis(Date.now()),
      list([cord("d"), cord("term"), cord("1")]),
      cord("belt"),
      cell(BigInt(n), BigInt(n) << 64n),
    ),
  );
}

/** The pill to boot from, or undefined for a generated boot sequence; a NodeError for a named pill that is not there. */
function pillOf(option: string | false | undefined): string | undefined {
  if (option === false) return undefined;
  const pill = option ?? DEFAULT_DEMO_PILL;
  try {
    Deno.statSync(pill);
    return pill;
  } catch {
    if (typeof option === "string") {
      throw new NodeError(`cannot read the pill ${pill}; check the path, or pass --no-pill`);
    }
    return undefined;
  }
}

/**
 * Runs the demo end to end, reporting to `report`. Without `keep`, the
 * cluster's processes and data are gone when it returns or throws. A NodeError
 * when the cluster does not get ready, the pill cannot be read, ~zod cannot be
 * added, or a released event is lost (after {@linkcode DemoReporter.finished}).
 */
export async function runDemo(options: DemoOptions, report: DemoReporter): Promise<DemoResult> {
  const root = await Deno.makeTempDir({ prefix: "seguro-demo-" });
  const nodes: DemoNode[] = [];
  const { kill, release } = killOnInterrupt(root, () => nodes.map((n) => n.child));
  try {
    report.starting(root);
    for (let i = 1; i <= 3; i++) {
      const address = `127.0.0.1:${freePort()}`;
      const dir = join(root, `node${i}`);
      const log = new EventLog();
      const env: Record<string, string> = {};
      if (i > 1) {
        env.SEGURO_TOKEN = (await Deno.readTextFile(join(nodes[0].dir, "token"))).trim();
      }
      const args = i === 1
        ? ["init", "--data-dir", dir, "--listen", address]
        : ["join", nodes[0].address, "--data-dir", dir, "--listen", address];
      const child = startNode([...args, "--log-format", "json"], env, log);
      nodes.push({ id: i, dir, address, child, log });
      await log.waitForEvent(i === 1 ? "leader" : "follower");
      if (i > 1) await nodes[0].log.waitForEvent("promoted", { node: i });
      report.nodeStarted({ id: i, address, master: i === 1 });
    }
    const token = await Deno.readTextFile(join(nodes[0].dir, "token"));
    const credentials = decodeToken(token);

    report.booting();
    const pill = pillOf(options.pill);
    const addArgs = ["ship", "add", "~zod", "--fake", "--cluster", nodes[0].address];
    const addLog = new EventLog();
    const add = startNode(
      [...addArgs, ...(pill !== undefined ? ["--pill", pill] : [])],
      { SEGURO_TOKEN: token.trim() },
      addLog,
    );
    if (!(await add.status).success) {
      await addLog.drained();
      throw new NodeError(
        `seguro ship add failed in the demo: ${
          addLog.lines.filter((l) => l !== "").slice(-3).join(" / ")
        }`,
      );
    }
    const rt0 = await RuntimeClient.connect({ path: join(nodes[0].dir, "runtime.sock") });
    await rt0.lead(0n);
    const head = rt0.next((m) => m.type === "head");
    rt0.send({ type: "head", ship: 0n });
    const h = await head;
    let eve = h.type === "head" ? h.eve : 0;
    report.booted({ pill, events: eve });
    if (pill === undefined) {
      for (let i = 1; i <= 5; i++) rt0.plan(0n, ++eve, 0, generatedBootJob(i));
      await rt0.next((m) => m.type === "done" && m.eve >= eve);
    }
    rt0.close();

    report.streaming({ rate: options.rate, node: nodes[0].id });
    const jobs = new Map<number, Uint8Array>();
    let released = eve;
    let planned = eve;
    let master = nodes[0];
    let rt = await RuntimeClient.connect({ path: join(master.dir, "runtime.sock") });
    const onDone = (m: { type: string; eve?: number }) => {
      if (m.type === "done" && rt.isLead(0n) && m.eve! > released) released = m.eve!;
    };
    let off = rt.on(onDone);
    const t0 = Date.now();
    let lastShown = 0;
    const plan = () => {
      const target = eve + Math.floor(((Date.now() - t0) / 1000) * options.rate);
      while (planned < target && planned - released < 4096) {
        planned++;
        const job = eventJob(planned);
        jobs.set(planned, job);
        rt.plan(0n, planned, planned & 0xffff, job);
      }
    };
    const progress = async () => {
      if (Date.now() - lastShown < 500) return;
      lastShown = Date.now();
      const s = await status(master.address, credentials);
      report.progress({
        planned,
        released,
        commitIndex: s?.commitIndex ?? 0,
        eventsPerSecond: (released - eve) / ((Date.now() - t0) / 1000),
        lag: s?.members.filter((m) => m.id !== s.nodeId).map((m) => ({
          node: m.id,
          behind: s.lastIndex - (m.match ?? 0),
        })),
      });
    };
    const load = async (since: number) => {
      while (Date.now() - since < options.seconds * 1000) {
        plan();
        await progress();
        await new Promise((r) => setTimeout(r, 10));
      }
    };
    await load(t0);

    report.killing(master.id);
    const releasedAtKill = released;
    const killedAt = Date.now();
    off();
    master.child.kill("SIGKILL");
    rt.close();
    const survivors = nodes.filter((n) => n !== master);
    let newMaster: DemoNode | undefined;
    while (newMaster === undefined) {
      for (const n of survivors) {
        const s = await status(n.address, credentials);
        if (s?.role === "leader") newMaster = n;
      }
      if (newMaster === undefined) await new Promise((r) => setTimeout(r, 20));
    }
    master = newMaster;
    rt = await RuntimeClient.connect({ path: join(master.dir, "runtime.sock") });
    off = rt.on(onDone);
    // A new leader is master once its applied state is the log's tail: it says %lead.
    await rt.lead(0n);
    const head2 = rt.next((m) => m.type === "head");
    rt.send({ type: "head", ship: 0n });
    const h2 = await head2;
    const resumeFrom = (h2.type === "head" ? h2.eve : released) + 1;
    // Re-plan what the new master does not have (planned but never released).
    planned = resumeFrom - 1;
    const firstDone = rt.next((m) => m.type === "done");
    planned++;
    rt.plan(0n, planned, planned & 0xffff, jobs.get(planned) ?? eventJob(planned));
    await firstDone;
    const failoverMs = Date.now() - killedAt;
    report.failedOver({ node: master.id, failoverMs });
    await load(Date.now());
    if (released < planned) await rt.next((m) => m.type === "done" && m.eve >= planned);

    report.checking();
    const { checked, mismatched } = await checkReleased(
      master.address,
      credentials,
      eve,
      released,
      jobs,
    );
    const missing = Math.max(0, released - eve - checked);
    rt.close();
    const result: DemoResult = {
      releasedBeforeKill: releasedAtKill - eve,
      releasedAfterKill: released - releasedAtKill,
      failoverMs,
      checked,
      lost: mismatched + missing,
      ...(options.keep ? { kept: { root, pids: nodes.map((n) => n.child.pid) } } : {}),
    };
    report.finished(result);
    if (result.lost > 0) {
      throw new NodeError(`${result.lost} released events are missing on the new master`);
    }
    return result;
  } finally {
    release();
    if (!options.keep) {
      kill();
      await Deno.remove(root, { recursive: true }).catch(() => {});
    }
  }
}

/** Reads events `from + 1` to `to` of ~zod on `address`: how many it has, and how many differ from `jobs`. */
async function checkReleased(
  address: string,
  credentials: ClusterCredentials,
  from: number,
  to: number,
  jobs: Map<number, Uint8Array>,
): Promise<{ checked: number; mismatched: number }> {
  const client = await ClusterClient.connect(address, credentials);
  let checked = 0;
  let mismatched = 0;
  try {
    for (let next = from + 1; next <= to;) {
      const batch = await client.ships.events(0n, next, 5000);
      if (batch.length === 0) break;
      for (const e of batch) {
        const want = jobs.get(e.eve);
        if (
          want !== undefined &&
          (want.length !== e.job.length || want.some((b, i) => b !== e.job[i]))
        ) mismatched++;
        checked++;
      }
      next = batch[batch.length - 1].eve + 1;
    }
  } finally {
    client.close();
  }
  return { checked, mismatched };
}
