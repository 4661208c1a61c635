/**
 * Real clusters for end-to-end tests: `seguro` child processes on loopback,
 * random free ports, temp data dirs, always cleaned up. Tests wait on log
 * lines and answers, never on sleeps.
 * @module
 */

import type { LogEvent } from "../../cluster/log_event.ts";
import { join } from "node:path";
import { ClusterClient, withLeader } from "../../cluster/api.ts";
import { decodeToken } from "../../cluster/token.ts";
import type { ClusterCredentials } from "../../cluster/token.ts";
import { type NodeStatus, READ_WAIT_MS_MAX } from "../../cluster/admin_protocol.ts";
import { selfCommand } from "../../server/self_command.ts";

/** Ports handed out by {@linkcode freePort} in this process. */
const handedOut = new Set<number>();

/**
 * A port nothing listens on right now, and never one this process handed out
 * before: two calls before either port is bound must not get the same port
 * (the kernel may offer a just-closed ephemeral port again).
 */
export function freePort(): number {
  for (let i = 0; i < 1000; i++) {
    const l = Deno.listen({ hostname: "127.0.0.1", port: 0 });
    const port = l.addr.port;
    l.close();
    if (!handedOut.has(port)) {
      handedOut.add(port);
      return port;
    }
  }
  throw new Error("freePort: no new free port in 1000 tries");
}

/** The structured event of a JSON log line, or undefined for any other line. */
export function logEventOf(line: string): LogEvent | undefined {
  if (!line.startsWith("{")) return undefined;
  try {
    const o = JSON.parse(line);
    return typeof o === "object" && o !== null && typeof o.event === "string" ? o : undefined;
  } catch {
    return undefined;
  }
}

/** One `seguro` child process and its log. */
export class NodeProcess {
  readonly child: Deno.ChildProcess;
  /** Every line, stdout and stderr interleaved as read (logs, notes, errors, output). */
  readonly lines: string[] = [];
  /** The lines of stdout alone: a command's output (tables, JSON), never its log. */
  readonly stdoutLines: string[] = [];
  readonly exited: Promise<Deno.CommandStatus>;
  #waiters: { test: (line: string) => boolean; from: number; resolve: (line: string) => void }[] =
    [];

  /**
   * Starts `seguro ARGS` with exactly the release permission set (a missing
   * permission fails the test), less the `--allow-*` flags in `deny` (to test
   * what a missing permission does).
   */
  constructor(args: string[], env: Record<string, string> = {}, deny: string[] = []) {
    const self = selfCommand(args);
    self.args = self.args.filter((a) => !deny.includes(a));
    this.child = new Deno.Command(self.cmd, {
      args: self.args,
      // Nodes log JSON lines: tests wait on their events, not on the prose.
      env: { NO_COLOR: "1", SEGURO_LOG_FORMAT: "json", ...env },
      stdin: "null",
      stdout: "piped",
      stderr: "piped",
    }).spawn();
    const pumps = [
      this.#pump(this.child.stdout, this.stdoutLines),
      this.#pump(this.child.stderr),
    ];
    // Exited means: the process ended and every line it wrote has been read.
    this.exited = Promise.all(pumps).then(() => this.child.status);
  }

  async #pump(stream: ReadableStream<Uint8Array>, also?: string[]): Promise<void> {
    let rest = "";
    for await (const chunk of stream.pipeThrough(new TextDecoderStream())) {
      rest += chunk;
      const parts = rest.split("\n");
      rest = parts.pop()!;
      for (const line of parts) {
        also?.push(line);
        this.#add(line);
      }
    }
    if (rest !== "") {
      also?.push(rest);
      this.#add(rest);
    }
  }

  /** Parses what the command printed on stdout as JSON (after it exited). */
  async json<T>(): Promise<T> {
    await this.exited;
    return JSON.parse(this.stdoutLines.join("\n")) as T;
  }

  #add(line: string): void {
    if (Deno.env.get("SEGURO_E2E_VERBOSE")) console.error(`  | ${line}`);
    this.lines.push(line);
    const n = this.lines.length - 1;
    this.#waiters = this.#waiters.filter((w) => {
      if (n >= w.from && w.test(line)) {
        w.resolve(line);
        return false;
      }
      return true;
    });
  }

  /** Log position, to wait only for lines after it. */
  mark(): number {
    return this.lines.length;
  }

  /** Resolves with the first line matching `re` at or after `from`. */
  waitFor(re: RegExp, from = 0, timeoutMs = 30_000): Promise<string> {
    return this.#waitLine((line) => re.test(line), `a log line matching ${re}`, from, timeoutMs);
  }

  /**
   * Resolves with the first structured log event named `event` whose fields
   * include `fields`, at or after line `from` (nodes run with
   * SEGURO_LOG_FORMAT=json: see cluster/log_event.ts). Rejects once the
   * process has exited without one, or after `timeoutMs`.
   */
  async waitForEvent(
    event: string,
    fields: Record<string, string | number | boolean> = {},
    from = 0,
    timeoutMs = 30_000,
  ): Promise<LogEvent> {
    const matches = (line: string) => {
      const e = logEventOf(line);
      return e !== undefined && e.event === event &&
        Object.entries(fields).every(([k, v]) => e[k] === v);
    };
    const line = await this.#waitLine(
      matches,
      `a '${event}' event with ${JSON.stringify(fields)}`,
      from,
      timeoutMs,
    );
    return logEventOf(line)!;
  }

  /** The structured events logged so far (from line `from`), e.g. to assert none happened. */
  events(from = 0): LogEvent[] {
    return this.lines.slice(from).map(logEventOf).filter((e) => e !== undefined);
  }

  #waitLine(
    test: (line: string) => boolean,
    what: string,
    from: number,
    timeoutMs: number,
  ): Promise<string> {
    for (let i = from; i < this.lines.length; i++) {
      if (test(this.lines[i])) return Promise.resolve(this.lines[i]);
    }
    return new Promise((resolve, reject) => {
      let done = false;
      const fail = (why: string) => {
        if (done) return;
        done = true;
        clearTimeout(timer);
        this.#waiters = this.#waiters.filter((w) => w !== waiter);
        reject(new Error(`${why}: no ${what}; log:\n${this.lines.slice(-30).join("\n")}`));
      };
      const timer = setTimeout(() => fail(`after ${timeoutMs} ms`), timeoutMs);
      const waiter = {
        test,
        from,
        resolve: (line: string) => {
          done = true;
          clearTimeout(timer);
          resolve(line);
        },
      };
      this.#waiters.push(waiter);
      // A process that has exited prints no more: say so at once, not at the timeout.
      this.exited.then((status) => fail(`the process exited (code ${status.code})`));
    });
  }

  /** Sends a signal (SIGKILL by default) and waits for the exit. */
  async kill(signal: Deno.Signal = "SIGKILL"): Promise<Deno.CommandStatus> {
    try {
      this.child.kill(signal);
    } catch {
      // already exited
    }
    return await this.exited;
  }
}

/** A member of a test cluster. */
export interface TestMember {
  /** Node id. */
  id: number;
  /** host:port. */
  address: string;
  /** Data dir. */
  dir: string;
  /** The running process, if any. */
  proc: NodeProcess | undefined;
}

/** A cluster of real processes in a temp dir. */
export class TestCluster {
  readonly root: string;
  readonly members = new Map<number, TestMember>();
  credentials!: ClusterCredentials;
  token = "";

  private constructor(root: string) {
    this.root = root;
  }

  /** `seguro init` of node 1 (with `args`), waiting until it leads. */
  static async init(args: string[] = []): Promise<TestCluster> {
    const c = new TestCluster(await Deno.makeTempDir({ prefix: "seguro-e2e-" }));
    try {
      const address = `127.0.0.1:${freePort()}`;
      const dir = join(c.root, "n1");
      const proc = new NodeProcess(["init", "--data-dir", dir, "--listen", address, ...args]);
      c.members.set(1, { id: 1, address, dir, proc });
      await proc.waitForEvent("leader");
      c.token = (await Deno.readTextFile(join(dir, "token"))).trim();
      c.credentials = decodeToken(c.token);
      return c;
    } catch (e) {
      // No caller holds the cluster yet: its process and temp dir go here.
      await c.destroy();
      throw e;
    }
  }

  /** `seguro join` of a new node (with `args`); resolves once the leader has promoted it to voter. */
  async join(args: string[] = []): Promise<TestMember> {
    const address = `127.0.0.1:${freePort()}`;
    const dir = join(this.root, `n${this.members.size + 1}-${address.split(":")[1]}`);
    const leader = this.leader();
    const mark = leader?.proc?.mark() ?? 0;
    const proc = new NodeProcess(
      ["join", this.anyAddress(), "--data-dir", dir, "--listen", address, ...args],
      { SEGURO_TOKEN: this.token },
    );
    // The joined node's first event names its id.
    const listening = await proc.waitForEvent("listening").catch(async (e) => {
      await proc.kill(); // not a member yet, so destroy() would not stop it
      throw e;
    });
    const id = Number(listening.node);
    const member = { id, address, dir, proc };
    this.members.set(id, member);
    if (leader?.proc) await leader.proc.waitForEvent("promoted", { node: id }, mark);
    return member;
  }

  /** Restarts a stopped member with `seguro run` (and `args`; `deny` as for NodeProcess). */
  restart(id: number, args: string[] = [], deny: string[] = []): NodeProcess {
    const m = this.members.get(id)!;
    m.proc = new NodeProcess(["run", "--data-dir", m.dir, ...args], {}, deny);
    return m.proc;
  }

  /** Address of some running member. */
  anyAddress(): string {
    for (const m of this.members.values()) if (m.proc) return m.address;
    throw new Error("no member is running");
  }

  /** The member whose log last said it became leader (a hint; the cluster is the truth). */
  leader(): TestMember | undefined {
    let best: TestMember | undefined;
    let bestTerm = -1;
    for (const m of this.members.values()) {
      if (!m.proc) continue;
      for (const e of m.proc.events()) {
        if (e.event === "leader" && Number(e.term) > bestTerm) {
          bestTerm = Number(e.term);
          best = m;
        }
      }
    }
    return best;
  }

  /** Status of one member. */
  async status(id: number): Promise<NodeStatus> {
    const client = await ClusterClient.connect(this.members.get(id)!.address, this.credentials);
    try {
      return await client.status();
    } finally {
      client.close();
    }
  }

  /** Writes `payloads` through the leader, `inFlight` at a time; returns index -> payload of the acknowledged ones. */
  async write(payloads: Uint8Array[], inFlight = 16): Promise<Map<number, Uint8Array>> {
    const acked = new Map<number, Uint8Array>();
    const start = this.leader()?.proc ? this.leader()!.address : this.anyAddress();
    await withLeader(start, this.credentials, async (client) => {
      let next = 0;
      const worker = async () => {
        while (next < payloads.length) {
          const p = payloads[next++];
          acked.set(await client.propose(p), p);
        }
      };
      await Promise.all(Array.from({ length: inFlight }, worker));
    });
    return acked;
  }

  /**
   * Waits until member `id` has committed (and so applied) `index`: a
   * long-poll read answers as soon as it has (after a restart, it first
   * waits for the node to listen).
   */
  async waitCommitted(id: number, index: number): Promise<void> {
    const m = this.members.get(id)!;
    await m.proc!.waitForEvent("listening");
    if (!await waitApplied(m.address, this.credentials, index, 60_000)) {
      throw new Error(`node ${id} did not commit index ${index} within a minute`);
    }
  }

  /** Kills every process and removes the temp dir. */
  async destroy(): Promise<void> {
    for (const m of this.members.values()) await m.proc?.kill();
    await Deno.remove(this.root, { recursive: true }).catch(() => {});
  }
}

/**
 * Resolves true once the node at `address` has applied `index`, false after
 * `timeoutMs`: long-poll reads answer as soon as it has. An index the node
 * compacted (its log starts after it, e.g. it installed a snapshot) is
 * applied: its status says so.
 */
export async function waitApplied(
  address: string,
  credentials: ClusterCredentials,
  index: number,
  timeoutMs: number,
): Promise<boolean> {
  const deadline = performance.now() + timeoutMs;
  const client = await ClusterClient.connect(address, credentials);
  try {
    for (;;) {
      const s = await client.status();
      if (s.appliedIndex >= index) return true;
      const leftMs = Math.ceil(deadline - performance.now());
      if (leftMs <= 0) return false;
      // Wakes when the node applies the entry after the one it has (or after its log start).
      const next = Math.max(s.appliedIndex + 1, s.firstIndex);
      try {
        await client.read(next, 1, Math.min(READ_WAIT_MS_MAX, leftMs));
      } catch (e) {
        // A snapshot installed (or a compaction) meanwhile moved the log's start past `next`.
        if (!/are compacted on this node/.test((e as Error).message)) throw e;
      }
    }
  } finally {
    client.close();
  }
}

/** `count` distinct payloads of `size` bytes, tagged with `tag`. */
export function payloads(tag: string, count: number, size = 100): Uint8Array[] {
  return Array.from({ length: count }, (_, i) => {
    const p = new Uint8Array(size);
    p.set(new TextEncoder().encode(`${tag}-${i}`));
    return p;
  });
}

/** How long one e2e test may run before its processes are killed. */
export const HANG_GUARD_MS = 180_000;

/**
 * A test on a fresh cluster of `nodes` processes (node 1 by init, the rest by
 * join, each promoted), always destroyed afterwards; with `ignore`, registered
 * as ignored with that reason.
 */
export function clusterTest(
  name: string,
  nodes: number,
  fn: (c: TestCluster) => Promise<void>,
  options: { ignore?: string } = {},
): void {
  Deno.test({
    // A test that cannot run here is registered as ignored, with the reason in its name.
    name: options.ignore === undefined ? name : `${name} (ignored: ${options.ignore})`,
    ignore: options.ignore !== undefined,
    // Child processes and their pipes outlive single awaits by design.
    sanitizeResources: false,
    sanitizeOps: false,
    async fn() {
      const c = await TestCluster.init();
      // A hang guard, not a speed claim: a stuck test kills its cluster (every pending
      // request then fails) instead of hanging the whole suite.
      const guard = setTimeout(() => c.destroy(), HANG_GUARD_MS);
      try {
        for (let i = 1; i < nodes; i++) await c.join();
        await fn(c);
      } finally {
        clearTimeout(guard);
        await c.destroy();
      }
    },
  });
}
