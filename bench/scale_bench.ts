/**
 * How a 3-node cluster scales with the length of its log, in one run on this
 * machine: memory, disk, disk writes, restart and fresh-join catch-up at N
 * events, beside etcd and dqlite throughput.
 *
 *     deno task bench:scale [--events 100000,1000000,3000000] [--json] [--no-anchors]
 *
 * Real `seguro` processes on loopback (tests/e2e/harness.ts: `seguro init`,
 * two `seguro join`, each with `--metrics`). A fake ship gets 1 KiB events
 * planned through the leader's runtime socket by server/runtime_load.ts
 * (the load of `seguro bench`; 1024 in flight, optimism quorum) up to each N
 * in turn. At each N, per node: VmRSS (/proc/PID/status) and its slope per
 * million events since the previous N; seguro.db + seguro.db-wal bytes per
 * event byte; bytes the process wrote to disk during the load
 * (/proc/PID/io write_bytes) per event byte; then a follower is killed with
 * SIGKILL, started again with `seguro run`, and timed until it has applied
 * the leader's commit index (its `listening` event, then a long-poll read,
 * bounded). At the largest N: released events/s at 64 and 1024 in flight, and
 * a 4th node `seguro join`s, timed until it has applied the leader's last
 * index, with the leader's RSS sampled meanwhile. Elections are the leader
 * changes in the nodes' JSON logs. The leader's event-loop lag p99 over the
 * last minute of each load is read from its `/metrics`
 * (seguro_event_loop_lag_seconds, server/event_loop_lag.ts).
 * Then etcd and dqlite (bench/anchors.ts, 64 in flight) in the same run.
 * MB are 10^6 bytes; an event byte is one of the 1,024 bytes of an event.
 * @module
 */

import { parseArgs } from "node:util";
import { join } from "node:path";
import { ClusterClient } from "../cluster/api.ts";
import { DATABASE_FILE } from "../cluster/store.ts";
import { RUNTIME_SOCKET } from "../server/node.ts";
import { type LoadResult, runRuntimeLoad } from "../server/runtime_load.ts";
import {
  freePort,
  NodeProcess,
  TestCluster,
  type TestMember,
  waitApplied,
} from "../tests/e2e/harness.ts";
import { type AnchorRow, runAnchors } from "./anchors.ts";

// ------------------------------------------------------------ limits and targets

/** Bytes of each event (the load's jam is about this size). */
const EVENT_BYTES = 1024;
/** Events planned but not yet released while growing the log. */
const LOAD_INFLIGHT = 1024;
/** Events per throughput run at the largest N. */
const THROUGHPUT_EVENTS = 20_000;
/** In-flight levels of the throughput runs. */
const THROUGHPUT_INFLIGHTS = [64, 1024] as const;
/** The ship the load plans into (~zod, fake). */
const SHIP = 0n;
/** Optimism quorum, as the admin protocol spells it. */
const OPTIMISM_QUORUM = -2;
/** Longest a (re)started node may take to log `listening`. */
const LISTEN_WAIT_MS_MAX = 60_000;
/** Restart catch-up bound: this much, plus {@linkcode RESTART_WAIT_US_PER_EVENT} per event. */
const RESTART_WAIT_MS_BASE = 60_000;
const RESTART_WAIT_US_PER_EVENT = 20;
/** Join catch-up bound: this much, plus the time to copy the log at this many bytes/s. */
const JOIN_WAIT_MS_BASE = 60_000;
const JOIN_WAIT_BYTES_PER_S_MIN = 5_000_000;
/** Longest the leader may take to promote a caught-up learner. */
const PROMOTE_WAIT_MS = 30_000;
/** How often the leader's RSS is sampled during the join. */
const JOIN_RSS_SAMPLE_MS = 250;
/** How often a progress line is printed during a load. */
const PROGRESS_EVERY_MS = 5_000;
/** A metrics scrape gives up after this long. */
const SCRAPE_TIMEOUT_MS = 5_000;
/** Anchor budget: writes per level, seconds per level. */
const ANCHOR_WRITES = 5_000;
const ANCHOR_SECONDS = 5;
/** Exit code after Ctrl-C (128 + SIGINT). */
const EXIT_INTERRUPTED = 130;
const MB = 1e6;

/** The targets of issue P10 item 7. */
const TARGET = {
  rssMbMax: 250,
  rssSlopeMbPerMEventsMax: 10,
  restartSecondsMax: 2,
  joinMbPerSecondMin: 50,
  electionsMax: 0,
  diskBytesPerEventByteMax: 1.2,
  writtenBytesPerEventByteMax: 2.5,
} as const;

// ------------------------------------------------------------ options

const DEFAULT_EVENTS = "100000,1000000,3000000";
const { values } = parseArgs({
  args: Deno.args,
  options: {
    events: { type: "string", default: DEFAULT_EVENTS },
    json: { type: "boolean", default: false },
    "no-anchors": { type: "boolean", default: false },
  },
});

/** The N list: increasing positive integers, e.g. `100000,1000000`. */
function parseEventCounts(text: string): number[] {
  const counts = text.split(",").map((s) => Number(s.trim().replaceAll("_", "")));
  for (const [i, n] of counts.entries()) {
    if (!Number.isSafeInteger(n) || n <= 0 || (i > 0 && n <= counts[i - 1])) {
      console.error(
        `--events must be increasing positive integers separated by commas, e.g. ${DEFAULT_EVENTS}; got '${text}'`,
      );
      Deno.exit(2);
    }
  }
  return counts;
}
const EVENT_COUNTS = parseEventCounts(values.events);
const LARGEST = EVENT_COUNTS[EVENT_COUNTS.length - 1];

// ------------------------------------------------------------ results

/** One node's figures after the log reached N events. */
interface NodeFigures {
  id: number;
  role: string;
  rssMb: number;
  /** V8 heap in use and external memory (`/metrics`), to tell the heap's share of the RSS; null: not exposed. */
  heapMb: number | null;
  externalMb: number | null;
  /** RSS growth per million events since the previous N (or since the load began). */
  rssSlopeMbPerMEvents: number;
  /** seguro.db + seguro.db-wal. */
  diskBytes: number;
  /** seguro.db-wal alone. */
  walBytes: number;
  /** The whole data dir (snapshot files, if any, included). */
  dataDirBytes: number;
  diskBytesPerEventByte: number;
  /** write_bytes of its processes during the loads up to N (restarts excluded). */
  writtenBytes: number;
  writtenBytesPerEventByte: number;
}

/** A follower's kill -9 and restart. */
interface Restart {
  node: number;
  /** From the start of `seguro run` to its `listening` event (loads the log). */
  listeningMs: number | null;
  /** From the start of `seguro run` to having applied the leader's commit index. */
  caughtUpMs: number | null;
  /** The leader's commit index it had to reach. */
  index: number;
  error: string | null;
}

/** The figures at one N. */
interface Step {
  events: number;
  /** Seconds of the load from the previous N to this one. */
  loadSeconds: number;
  loadEventsPerSecond: number;
  leader: number;
  /** The leader's event-loop lag p99 during this load; null: not exposed. */
  eventLoopLagP99Ms: number | null;
  nodes: NodeFigures[];
  restart: Restart;
  /** Leader changes so far. */
  elections: number;
}

/** A fresh node's `seguro join` at the largest N. */
interface Join {
  node: number | null;
  /** Events on the cluster when it joined. */
  events: number;
  /** The leader's last index it had to apply. */
  index: number;
  seconds: number | null;
  mbPerSecond: number | null;
  leaderRssMbBefore: number;
  leaderRssMbMax: number;
  elections: number;
  promoted: boolean;
  error: string | null;
}

/** Released events/s, or an anchor's writes/s. */
interface Throughput {
  system: string;
  inflight: number;
  perSecond: number | null;
  p50Ms: number | null;
  p99Ms: number | null;
  /** "failed: reason" when the system did not run. */
  failed: string | null;
}

// ------------------------------------------------------------ /proc and disk

/** A kB field of /proc/PID/status, in bytes; 0 once the process is gone. */
function rssBytes(pid: number): number {
  try {
    const m = /^VmRSS:\s+(\d+) kB$/m.exec(Deno.readTextFileSync(`/proc/${pid}/status`));
    return m ? Number(m[1]) * 1024 : 0;
  } catch {
    return 0;
  }
}

/** write_bytes of /proc/PID/io: bytes this process caused to be written to storage. */
function writeBytes(pid: number): number {
  const m = /^write_bytes:\s+(\d+)$/m.exec(Deno.readTextFileSync(`/proc/${pid}/io`));
  if (!m) throw new Error(`/proc/${pid}/io has no write_bytes line; this bench needs Linux`);
  return Number(m[1]);
}

function sizeOf(path: string): number {
  try {
    return Deno.statSync(path).size;
  } catch {
    return 0;
  }
}

/** Bytes of the store's WAL. */
function walBytes(dir: string): number {
  return sizeOf(join(dir, `${DATABASE_FILE}-wal`));
}

/** Bytes of the store: seguro.db and its WAL. */
function storeBytes(dir: string): number {
  return sizeOf(join(dir, DATABASE_FILE)) + walBytes(dir);
}

/** Bytes of every file under `dir`. */
function treeBytes(dir: string): number {
  let total = 0;
  for (const e of Deno.readDirSync(dir)) {
    const path = join(dir, e.name);
    if (e.isDirectory) total += treeBytes(path);
    else if (e.isFile) total += sizeOf(path);
  }
  return total;
}

// ------------------------------------------------------------ the cluster

/** Every node process this run started, to count elections and to stop them. */
const procs: NodeProcess[] = [];
/** Metrics address per node id. */
const metricsAddress = new Map<number, string>();
let cluster: TestCluster | undefined;
let starting: Promise<TestCluster> | undefined;
let stopping: Promise<void> | undefined;

/** Kills every node and removes the temp dir; once. */
function stopAll(): Promise<void> {
  stopping ??= (async () => {
    const c = cluster ?? await starting?.catch(() => undefined);
    for (const p of procs) await p.kill();
    await c?.destroy();
  })();
  return stopping;
}

function onSignal(): void {
  if (stopping !== undefined) Deno.exit(EXIT_INTERRUPTED);
  console.error("interrupted: stopping every node and removing the temp dir");
  stopAll().finally(() => Deno.exit(EXIT_INTERRUPTED));
}
Deno.addSignalListener("SIGINT", onSignal);
Deno.addSignalListener("SIGTERM", onSignal);

function pidOf(m: TestMember): number {
  if (m.proc === undefined) throw new Error(`node ${m.id} is not running`);
  return m.proc.child.pid;
}

function leaderOf(c: TestCluster): TestMember {
  const m = c.leader();
  if (m === undefined) throw new Error("no node has logged that it leads; see the nodes' logs");
  return m;
}

/** Terms in which some node logged that it became leader. */
function leaderTerms(): Set<number> {
  const terms = new Set<number>();
  for (const p of procs) {
    for (const e of p.events()) if (e.event === "leader") terms.add(Number(e.term));
  }
  return terms;
}

/** Leader changes so far: every election won after the first. */
function elections(): number {
  return Math.max(0, leaderTerms().size - 1);
}

/** A role change a node logged, to see what an election came from. */
interface RoleEvent {
  ts: string;
  node: number;
  event: string;
  term: number;
}

/** Campaigns, wins and step-downs after the first election, in time order. */
function roleEvents(): RoleEvent[] {
  const out: RoleEvent[] = [];
  for (const p of procs) {
    for (const e of p.events()) {
      if (!["leader", "candidate", "preCandidate", "stepped_down"].includes(e.event)) continue;
      out.push({ ts: String(e.ts), node: Number(e.node), event: e.event, term: Number(e.term) });
    }
  }
  out.sort((a, b) => a.ts.localeCompare(b.ts));
  const first = out.findIndex((e) => e.event === "leader");
  return out.slice(first + 1);
}

/** The `--metrics` flag node `id` started with, to restart it with the same. */
function metricsArgs(id: number): string[] {
  const address = metricsAddress.get(id);
  return address === undefined ? [] : ["--metrics", address];
}

/**
 * The node's event-loop lag p99 (ms) over the last minute, or null when it
 * does not expose it.
 */
async function eventLoopLagP99Ms(id: number): Promise<number | null> {
  const lag = metric(
    await scrape(id),
    /^seguro_event_loop_lag_seconds\{quantile="0\.99"\} (\S+)$/m,
  );
  return lag === null ? null : lag * 1000;
}

/** Node `id`'s `/metrics` text; null when it has none or does not answer. */
async function scrape(id: number): Promise<string | null> {
  const address = metricsAddress.get(id);
  if (address === undefined) return null;
  try {
    const r = await fetch(`http://${address}/metrics`, {
      signal: AbortSignal.timeout(SCRAPE_TIMEOUT_MS),
    });
    return await r.text();
  } catch {
    return null;
  }
}

/** The value `pattern` (one group) finds in a scrape. */
function metric(text: string | null, pattern: RegExp): number | null {
  const m = text === null ? null : pattern.exec(text);
  return m ? Number(m[1]) : null;
}

/** Resolves once the node at `address` has applied `index` (by `deadline`, else throws). */
async function waitAppliedBy(
  c: TestCluster,
  address: string,
  index: number,
  deadline: number,
): Promise<void> {
  const timeoutMs = Math.max(0, Math.ceil(deadline - performance.now()));
  if (!await waitApplied(address, c.credentials, index, timeoutMs)) {
    throw new Error(`the node at ${address} did not apply index ${index} in time`);
  }
}

async function leaderStatus(c: TestCluster): Promise<{ commit: number; last: number }> {
  const s = await c.status(leaderOf(c).id);
  return { commit: s.commitIndex, last: s.lastIndex };
}

function message(e: unknown): string {
  return e instanceof Error ? e.message.split("\n")[0] : String(e);
}

/** kill -9 of follower `id`, `seguro run` again, timed until it applied the leader's commit. */
async function restartFollower(c: TestCluster, id: number, events: number): Promise<Restart> {
  const m = c.members.get(id)!;
  await m.proc!.kill("SIGKILL");
  const { commit } = await leaderStatus(c);
  const t0 = performance.now();
  const proc = c.restart(id, metricsArgs(id));
  procs.push(proc);
  const out: Restart = {
    node: id,
    listeningMs: null,
    caughtUpMs: null,
    index: commit,
    error: null,
  };
  try {
    await proc.waitForEvent("listening", {}, 0, LISTEN_WAIT_MS_MAX);
    out.listeningMs = performance.now() - t0;
    const boundMs = RESTART_WAIT_MS_BASE + events * RESTART_WAIT_US_PER_EVENT / 1000;
    await waitAppliedBy(c, m.address, commit, t0 + boundMs);
    out.caughtUpMs = performance.now() - t0;
  } catch (e) {
    out.error = message(e);
  }
  return out;
}

/**
 * `seguro join` of a new node through `leader` (with `args`), resolved once it
 * listens; tracked from its start, so Ctrl-C stops it too.
 */
async function joinNode(c: TestCluster, leader: TestMember, args: string[]): Promise<TestMember> {
  const address = `127.0.0.1:${freePort()}`;
  const dir = join(c.root, `n${c.members.size + 1}`);
  const proc = new NodeProcess(
    ["join", leader.address, "--data-dir", dir, "--listen", address, ...args],
    { SEGURO_TOKEN: c.token },
  );
  procs.push(proc);
  const listening = await proc.waitForEvent("listening", {}, 0, LISTEN_WAIT_MS_MAX);
  const member = { id: Number(listening.node), address, dir, proc };
  c.members.set(member.id, member);
  return member;
}

/** `seguro join` of a 4th node, timed until it applied the leader's last index. */
async function joinFresh(c: TestCluster, events: number): Promise<Join> {
  const leader = leaderOf(c);
  const leaderPid = pidOf(leader);
  const { last } = await leaderStatus(c);
  const rssBefore = rssBytes(leaderPid);
  let rssMax = rssBefore;
  const sampler = setInterval(
    () => rssMax = Math.max(rssMax, rssBytes(leaderPid)),
    JOIN_RSS_SAMPLE_MS,
  );
  const electionsBefore = elections();
  const marks = procs.map((p) => ({ p, mark: p.mark() }));
  const out: Join = {
    node: null,
    events,
    index: last,
    seconds: null,
    mbPerSecond: null,
    leaderRssMbBefore: rssBefore / MB,
    leaderRssMbMax: 0,
    elections: 0,
    promoted: false,
    error: null,
  };
  const t0 = performance.now();
  try {
    const m = await joinNode(c, leader, []);
    out.node = m.id;
    const boundMs = JOIN_WAIT_MS_BASE + events * EVENT_BYTES / JOIN_WAIT_BYTES_PER_S_MIN * 1000;
    await waitAppliedBy(c, m.address, last, t0 + boundMs);
    out.seconds = (performance.now() - t0) / 1000;
    out.mbPerSecond = events * EVENT_BYTES / MB / out.seconds;
    // Whichever node leads by then promotes it.
    out.promoted = await Promise.any(
      marks.map(({ p, mark }) => p.waitForEvent("promoted", { node: m.id }, mark, PROMOTE_WAIT_MS)),
    ).then(() => true, () => false);
  } catch (e) {
    out.error = message(e);
  } finally {
    clearInterval(sampler);
  }
  rssMax = Math.max(rssMax, rssBytes(leaderPid));
  out.leaderRssMbMax = rssMax / MB;
  out.elections = elections() - electionsBefore;
  return out;
}

/** Plans `events` events through the leader's runtime socket, printing progress. */
async function load(
  c: TestCluster,
  events: number,
  inflight: number,
  what: string,
): Promise<LoadResult> {
  const leader = leaderOf(c);
  const t0 = performance.now();
  let shown = t0;
  return await runRuntimeLoad(join(leader.dir, RUNTIME_SOCKET), SHIP, {
    events,
    sizeBytes: EVENT_BYTES,
    inflight,
    progress: (line) => {
      if (performance.now() - shown < PROGRESS_EVERY_MS) return;
      shown = performance.now();
      console.error(
        `  ${what}: ${line} (${((shown - t0) / 1000).toFixed(0)} s; leader RSS ${
          (rssBytes(pidOf(leader)) / MB).toFixed(0)
        } MB)`,
      );
    },
  });
}

// ------------------------------------------------------------ the run

const steps: Step[] = [];
const throughput: Throughput[] = [];
let joined: Join | undefined;

async function seguro(): Promise<void> {
  console.error("starting a 3-node cluster on loopback...");
  const first = `127.0.0.1:${freePort()}`;
  starting = TestCluster.init(["--metrics", first]);
  const c = cluster = await starting;
  metricsAddress.set(1, first);
  for (let i = 0; i < 2; i++) {
    const leader = leaderOf(c);
    const mark = leader.proc!.mark();
    const address = `127.0.0.1:${freePort()}`;
    const m = await joinNode(c, leader, ["--metrics", address]);
    metricsAddress.set(m.id, address);
    await leader.proc!.waitForEvent("promoted", { node: m.id }, mark, PROMOTE_WAIT_MS);
  }
  procs.push(c.members.get(1)!.proc!);
  const leader0 = leaderOf(c);
  const client = await ClusterClient.connect(leader0.address, c.credentials);
  try {
    await client.ships.add(SHIP, { fake: true, life: 0 });
    await client.ships.set(SHIP, OPTIMISM_QUORUM);
  } finally {
    client.close();
  }
  // Follower restarted at each N: the same one, so the other keeps one process throughout.
  const follower = Math.max(...[...c.members.keys()].filter((id) => id !== leader0.id));

  /** Per node: RSS and events at the previous point, bytes written in earlier loads. */
  const previous = new Map<number, { rss: number; events: number; written: number }>();
  for (const m of c.members.values()) {
    previous.set(m.id, { rss: rssBytes(pidOf(m)), events: 0, written: 0 });
  }
  let done = 0;
  for (const n of EVENT_COUNTS) {
    const leader = leaderOf(c);
    console.error(`loading events ${done + 1}..${n} (${LOAD_INFLIGHT} in flight)...`);
    const writeStart = new Map<number, { pid: number; bytes: number }>();
    for (const m of c.members.values()) {
      writeStart.set(m.id, { pid: pidOf(m), bytes: writeBytes(pidOf(m)) });
    }
    await eventLoopLagP99Ms(leader.id); // resets the node's histogram
    const r: LoadResult = await load(c, n - done, LOAD_INFLIGHT, `to ${n.toLocaleString("en-US")}`);
    const lag = await eventLoopLagP99Ms(leader.id);
    done = n;
    const eventBytes = n * EVENT_BYTES;
    const nodes: NodeFigures[] = [];
    for (const m of c.members.values()) {
      const pid = pidOf(m);
      const start = writeStart.get(m.id)!;
      if (start.pid !== pid) throw new Error(`node ${m.id} restarted during the load`);
      const before = previous.get(m.id)!;
      const rss = rssBytes(pid);
      const scraped = await scrape(m.id);
      const heap = metric(scraped, /^nodejs_heap_size_used_bytes (\S+)$/m);
      const external = metric(scraped, /^nodejs_external_memory_bytes (\S+)$/m);
      const written = before.written + writeBytes(pid) - start.bytes;
      const disk = storeBytes(m.dir);
      nodes.push({
        id: m.id,
        role: m.id === leader.id ? "leader" : "follower",
        rssMb: rss / MB,
        heapMb: heap === null ? null : heap / MB,
        externalMb: external === null ? null : external / MB,
        rssSlopeMbPerMEvents: (rss - before.rss) / MB / ((n - before.events) / 1e6),
        diskBytes: disk,
        walBytes: walBytes(m.dir),
        dataDirBytes: treeBytes(m.dir),
        diskBytesPerEventByte: disk / eventBytes,
        writtenBytes: written,
        writtenBytesPerEventByte: written / eventBytes,
      });
      previous.set(m.id, { rss, events: n, written });
    }
    console.error(
      `  ${n.toLocaleString("en-US")} events in total; RSS ${
        nodes.map((f) => `n${f.id} ${f.rssMb.toFixed(0)} MB`).join(", ")
      }`,
    );
    console.error(`  kill -9 of follower ${follower}, then 'seguro run' until it catches up...`);
    const restart = await restartFollower(c, follower, n);
    console.error(
      restart.error === null
        ? `  node ${follower} listening after ${
          restart.listeningMs!.toFixed(0)
        } ms, caught up after ${restart.caughtUpMs!.toFixed(0)} ms`
        : `  node ${follower} did not catch up: ${restart.error}`,
    );
    // Its next slope starts from the restarted process, at this N.
    const restarted = previous.get(follower)!;
    restarted.rss = rssBytes(pidOf(c.members.get(follower)!));
    steps.push({
      events: n,
      loadSeconds: r.seconds,
      loadEventsPerSecond: r.eventsPerSecond,
      leader: leader.id,
      eventLoopLagP99Ms: lag,
      nodes,
      restart,
      elections: elections(),
    });
  }

  for (const inflight of THROUGHPUT_INFLIGHTS) {
    console.error(`released events/s at ${inflight} in flight (${THROUGHPUT_EVENTS} events)...`);
    const r = await load(c, THROUGHPUT_EVENTS, inflight, `${inflight} in flight`);
    done += THROUGHPUT_EVENTS;
    throughput.push({
      system: "seguro3",
      inflight,
      perSecond: r.eventsPerSecond,
      p50Ms: r.p50Ms,
      p99Ms: r.p99Ms,
      failed: null,
    });
    console.error(`  ${r.eventsPerSecond.toFixed(0)}/s, p50 ${r.p50Ms.toFixed(1)} ms`);
  }

  console.error(`'seguro join' of a 4th node at ${done.toLocaleString("en-US")} events...`);
  joined = await joinFresh(c, done);
  console.error(
    joined.error === null
      ? `  node ${joined.node} applied index ${joined.index} after ${
        joined.seconds!.toFixed(2)
      } s (${joined.mbPerSecond!.toFixed(0)} MB/s)`
      : `  the join did not finish: ${joined.error}`,
  );
}

/** Why an anchor cannot run here (a tool it needs is not on PATH), or undefined. */
function missingTool(tools: string[]): string | undefined {
  const path = (Deno.env.get("PATH") ?? "").split(":");
  for (const tool of tools) {
    if (!path.some((dir) => sizeOf(join(dir, tool)) > 0)) return `${tool} is not installed`;
  }
  return undefined;
}

async function anchors(): Promise<void> {
  const needs = { etcd3: ["etcd", "etcdctl", "node"], dqlite3: ["dqlite-demo", "node"] };
  let rows: AnchorRow[] = [];
  let why = "no result (the script's error is printed above)";
  try {
    // The anchor scripts read CONCURRENCY from the environment they inherit: only 64 is compared.
    Deno.env.set("CONCURRENCY", "64");
    rows = await runAnchors(ANCHOR_WRITES, ANCHOR_SECONDS);
  } catch (e) {
    why = message(e);
  }
  for (const [system, tools] of Object.entries(needs)) {
    const mine = rows.filter((r) => r.system === system && r.c === 64);
    for (const r of mine) {
      throughput.push({
        system,
        inflight: r.c,
        perSecond: r.ops_per_s,
        p50Ms: r.p50_ms,
        p99Ms: r.p99_ms,
        failed: null,
      });
    }
    if (mine.length === 0) {
      throughput.push({
        system,
        inflight: 64,
        perSecond: null,
        p50Ms: null,
        p99Ms: null,
        failed: `failed: ${missingTool(tools) ?? why}`,
      });
    }
  }
}

try {
  await seguro();
} finally {
  await stopAll();
}
if (!values["no-anchors"]) await anchors();
Deno.removeSignalListener("SIGINT", onSignal);
Deno.removeSignalListener("SIGTERM", onSignal);

// ------------------------------------------------------------ the report

const totalElections = elections();
const lagExposed = steps.some((s) => s.eventLoopLagP99Ms !== null);
const LAG_NOT_EXPOSED = "not exposed: the node's /metrics has no seguro_event_loop_lag_seconds";

if (values.json) {
  console.log(JSON.stringify(
    {
      eventBytes: EVENT_BYTES,
      loadInflight: LOAD_INFLIGHT,
      steps,
      throughput,
      join: joined,
      elections: totalElections,
      roleEvents: roleEvents(),
      eventLoopLag: lagExposed ? "exposed" : LAG_NOT_EXPOSED,
      targets: TARGET,
    },
    null,
    2,
  ));
  Deno.exit(0);
}

function grouped(n: number): string {
  return n.toLocaleString("en-US");
}

/** A Markdown table with padded columns; `right` marks the right-aligned ones. */
function table(head: string[], rows: string[][], right: boolean[]): string {
  const widths = head.map((h, i) => Math.max(h.length, 3, ...rows.map((r) => r[i].length)));
  const line = (cells: string[]) =>
    `| ${
      cells.map((s, i) => right[i] ? s.padStart(widths[i]) : s.padEnd(widths[i])).join(" | ")
    } |`;
  const rule = `| ${
    widths.map((w, i) => right[i] ? "-".repeat(w - 1) + ":" : "-".repeat(w)).join(" | ")
  } |`;
  return [line(head), rule, ...rows.map(line)].join("\n");
}

/** A figure beside its target: "value (ok)" or "value (MISSED)". */
function against(value: string, ok: boolean): string {
  return `${value} ${ok ? "ok" : "MISSED"}`;
}

const perNode: string[][] = [];
for (const s of steps) {
  for (const f of s.nodes) {
    const restarted = s.restart.node === f.id;
    const restartText = !restarted
      ? ""
      : s.restart.error !== null
      ? `failed: ${s.restart.error}`
      : `${(s.restart.listeningMs! / 1000).toFixed(2)} / ${
        against(
          (s.restart.caughtUpMs! / 1000).toFixed(2),
          s.restart.caughtUpMs! <= TARGET.restartSecondsMax * 1000,
        )
      }`;
    perNode.push([
      grouped(s.events),
      `${f.id} ${f.role}`,
      against(f.rssMb.toFixed(0), f.rssMb <= TARGET.rssMbMax),
      against(
        f.rssSlopeMbPerMEvents.toFixed(0),
        f.rssSlopeMbPerMEvents <= TARGET.rssSlopeMbPerMEventsMax,
      ),
      f.heapMb === null ? "-" : `${f.heapMb.toFixed(0)} / ${f.externalMb?.toFixed(0) ?? "-"}`,
      `${(f.diskBytes / MB).toFixed(1)} (${(f.walBytes / MB).toFixed(1)})`,
      against(
        f.diskBytesPerEventByte.toFixed(2),
        f.diskBytesPerEventByte <= TARGET.diskBytesPerEventByteMax,
      ),
      against(
        `${f.writtenBytesPerEventByte.toFixed(2)}x`,
        f.writtenBytesPerEventByte <= TARGET.writtenBytesPerEventByteMax,
      ),
      restartText,
    ]);
  }
}
console.log(
  `\n3 nodes on loopback, ${grouped(EVENT_BYTES)}-byte events, ${LOAD_INFLIGHT} in flight; ` +
    `"ok" / "MISSED" against the target in the header\n`,
);
console.log(table(
  [
    "events",
    "node",
    `RSS MB (<= ${TARGET.rssMbMax})`,
    `slope MB/M (<= ${TARGET.rssSlopeMbPerMEventsMax})`,
    "V8 heap / external MB",
    "db+wal MB (wal)",
    `disk B/event B (<= ${TARGET.diskBytesPerEventByteMax})`,
    `written (<= ${TARGET.writtenBytesPerEventByteMax}x)`,
    `restart s: listening / caught up (<= ${TARGET.restartSecondsMax} at 3M)`,
  ],
  perNode,
  [true, false, true, true, true, true, true, true],
));

console.log();
console.log(table(
  ["events", "load s", "loaded events/s", "leader event-loop lag p99 ms", "elections so far"],
  steps.map((s) => [
    grouped(s.events),
    s.loadSeconds.toFixed(1),
    s.loadEventsPerSecond.toFixed(0),
    s.eventLoopLagP99Ms === null ? "not exposed" : s.eventLoopLagP99Ms.toFixed(1),
    String(s.elections),
  ]),
  [true, true, true, true, true],
));

console.log();
console.log(table(
  ["system", "in flight", `events or writes/s (at ${grouped(LARGEST)} events)`, "p50 ms", "p99 ms"],
  throughput.map((t) => [
    t.system,
    String(t.inflight),
    t.failed ?? t.perSecond!.toFixed(0),
    t.p50Ms === null ? "-" : t.p50Ms.toFixed(2),
    t.p99Ms === null ? "-" : t.p99Ms.toFixed(2),
  ]),
  [false, true, true, true, true],
));

console.log();
const j = joined;
console.log(table(
  ["fresh join of a 4th node", "value", "target"],
  j === undefined ? [] : [
    ["events held by the cluster", grouped(j.events), ""],
    [
      "time until it applied them all",
      j.seconds === null ? `failed: ${j.error}` : `${j.seconds.toFixed(2)} s`,
      "",
    ],
    [
      "MB/s of event bytes",
      j.mbPerSecond === null
        ? "-"
        : against(j.mbPerSecond.toFixed(1), j.mbPerSecond >= TARGET.joinMbPerSecondMin),
      `>= ${TARGET.joinMbPerSecondMin}`,
    ],
    [
      "leader RSS MB before / max during",
      `${j.leaderRssMbBefore.toFixed(0)} / ${
        against(j.leaderRssMbMax.toFixed(0), j.leaderRssMbMax <= TARGET.rssMbMax)
      }`,
      `<= ${TARGET.rssMbMax}`,
    ],
    [
      "elections during it",
      against(String(j.elections), j.elections <= TARGET.electionsMax),
      String(TARGET.electionsMax),
    ],
    ["promoted to voter", j.promoted ? "yes" : "not yet", ""],
  ],
  [false, true, true],
));

console.log();
console.log(
  `elections (leader changes) during the whole run: ${
    against(String(totalElections), totalElections <= TARGET.electionsMax)
  } (target 0)`,
);
for (const e of roleEvents()) {
  console.log(`  ${e.ts} node ${e.node} ${e.event} (term ${e.term})`);
}
if (!lagExposed) console.log(`leader event-loop lag p99: ${LAG_NOT_EXPOSED}`);
