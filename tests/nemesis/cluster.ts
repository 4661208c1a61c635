/**
 * A Seguro cluster for the nemesis: one `seguro run` per node, each in its
 * own network namespace (netns.ts), bootstrapped as a static cluster
 * (`seguro run --machines A,B,C` with one token), with the same permission
 * set as `deno task seguro` (plus `--allow-ffi --allow-run` for exec mode,
 * whose standby piers use liblmdb and whose runtimes are child processes).
 * Admin commands (`seguro ship add`, ...) run in a node's namespace against
 * its data dir. Nodes are killed, frozen, restarted and stopped by pid.
 * @module
 */

import { fileURLToPath } from "node:url";
import { join } from "node:path";
import type { Network } from "./netns.ts";
import { type CommandResult, sh } from "./netns.ts";
import { NodeProcess } from "./node_process.ts";
import { runFlags } from "../../server/self_command.ts";
import type { NodeEndpoint } from "./spec_connection.ts";
import { ADMIN_MS, NODE_LINES_SHOWN, NODE_START_MS, NODE_STOP_MS } from "./limits.ts";

/** This checkout: the Seguro the nemesis runs unless told another. */
export const THIS_REPO = fileURLToPath(new URL("../..", import.meta.url));

/** The release permission set (deno.json `permissions.seguro`) and V8 flags: what the binary runs with. */
export const SEGURO_RUN_FLAGS: readonly string[] = runFlags();

/** The port every node listens on (each has its own address). */
const PORT = 7700;

/** Exec mode: standby piers and the fake urbit. */
export interface ExecMode {
  /** The journal directory shared by every node's fake urbit. */
  journalDir: string;
  /** SIGTERM-to-SIGKILL grace of a stopping runtime. */
  graceMs: number;
}

/** One member. */
export interface Member {
  /** Node id. */
  id: number;
  /** Data dir. */
  dir: string;
  /** Cluster address. */
  address: string;
  /** Its log file. */
  logPath: string;
  /** The process, while one runs. */
  proc: NodeProcess | undefined;
  /** Frozen by SIGSTOP. */
  paused: boolean;
}

/** A leader election seen in a node's log. */
export interface Election {
  /** The new leader. */
  node: number;
  /** Its term. */
  term: number;
  /** When the line arrived. */
  atMs: number;
}

/** How to start a cluster. */
export interface ClusterOptions {
  /** The namespaces. */
  net: Network;
  /** Directory for data dirs and logs. */
  dir: string;
  /** The cluster token (`seguro token new`). */
  token: string;
  /** Exec mode, if wanted. */
  exec?: ExecMode;
  /** The checkout whose `main.ts` (and `tests/e2e/fake_urbit.ts`) the nodes run. */
  repo: string;
}

/** A running cluster. */
export class Cluster {
  /** Members by id. */
  readonly members = new Map<number, Member>();
  /** Every election seen, in order. */
  readonly elections: Election[] = [];
  readonly #o: ClusterOptions;

  private constructor(o: ClusterOptions) {
    this.#o = o;
    for (const id of o.net.ids) {
      this.members.set(id, {
        id,
        dir: join(o.dir, `n${id}`),
        address: `${o.net.ip(id)}:${PORT}`,
        logPath: join(o.dir, `n${id}.log`),
        proc: undefined,
        paused: false,
      });
    }
  }

  /** Starts every node and resolves once one of them leads. */
  static async start(o: ClusterOptions, firstLeaderMs: number): Promise<Cluster> {
    await Deno.mkdir(o.dir, { recursive: true });
    const c = new Cluster(o);
    for (const id of o.net.ids) c.spawn(id);
    await c.waitLeader(0, firstLeaderMs);
    return c;
  }

  /** The runtime sockets, for the client. */
  endpoints(): NodeEndpoint[] {
    return [...this.members.values()].map((m) => ({
      id: m.id,
      socketPath: join(m.dir, "runtime.sock"),
      address: m.address,
    }));
  }

  /** Starts node `id` (`seguro run`, bootstrapping on its first start). */
  spawn(id: number): NodeProcess {
    const m = this.members.get(id)!;
    if (m.proc !== undefined && !m.proc.ended) throw new Error(`node ${id} already runs`);
    const machines = [...this.members.values()].map((x) => x.address).join(",");
    const args = [
      "run",
      ...SEGURO_RUN_FLAGS,
      join(this.#o.repo, "main.ts"),
      "run",
      "--data-dir",
      m.dir,
      "--listen",
      m.address,
      "--advertise",
      m.address,
      "--machines",
      machines,
    ];
    if (this.#o.exec) {
      args.push(
        "--standby-dir",
        join(this.#o.dir, `standby-${id}`),
        "--exec",
        `${Deno.execPath()} run -A ${
          join(this.#o.repo, "tests", "e2e", "fake_urbit.ts")
        } {pier} ${this.#o.exec.journalDir}`,
        "--exec-grace-ms",
        String(this.#o.exec.graceMs),
      );
    }
    m.paused = false;
    m.proc = new NodeProcess({
      ns: this.#o.net.nodeNs(id),
      cmd: Deno.execPath(),
      args,
      env: { SEGURO_TOKEN: this.#o.token, NO_COLOR: "1" },
      logPath: m.logPath,
      onLine: (line) => {
        const t = /became leader at term (\d+)/.exec(line);
        if (t) this.elections.push({ node: id, term: Number(t[1]), atMs: Date.now() });
      },
    });
    return m.proc;
  }

  /** Restarts a stopped node and waits until it listens. */
  async restart(id: number): Promise<void> {
    const p = this.spawn(id);
    await p.waitFor(/listening at/, 0, NODE_START_MS);
  }

  /** Resolves with the first election after `afterMs` (by any node). */
  async waitLeader(afterMs: number, timeoutMs: number): Promise<Election> {
    const seen = this.elections.find((e) => e.atMs > afterMs);
    if (seen) return seen;
    const procs = [...this.members.values()].flatMap((m) => m.proc ? [{ m, p: m.proc }] : []);
    const marks = procs.map(({ p }) => p.mark());
    const line = await Promise.any(
      procs.map(({ m, p }, i) =>
        p.waitFor(/became leader at term/, marks[i], timeoutMs).then(() => m.id)
      ),
    ).catch(() => {
      throw new Error(`no node became leader within ${timeoutMs} ms\n${this.tails()}`);
    });
    return this.elections.findLast((e) => e.node === line)!;
  }

  /** The node that won the latest election and still runs (a hint: the client knows better). */
  latestLeader(): number | undefined {
    for (let i = this.elections.length - 1; i >= 0; i--) {
      const m = this.members.get(this.elections[i].node)!;
      if (m.proc !== undefined && !m.proc.ended) return m.id;
    }
    return undefined;
  }

  /** Sends `signal` to node `id`; for SIGKILL and SIGTERM, waits for its end. */
  async signal(id: number, signal: Deno.Signal): Promise<void> {
    const m = this.members.get(id)!;
    if (m.proc === undefined) return;
    if (signal === "SIGSTOP") m.paused = true;
    if (signal === "SIGCONT") m.paused = false;
    m.proc.signal(signal);
    if (signal === "SIGKILL" || signal === "SIGTERM") {
      if (m.paused) m.proc.signal("SIGCONT");
      m.paused = false;
      await this.#awaitEnd(m);
    }
  }

  async #awaitEnd(m: Member): Promise<void> {
    const p = m.proc!;
    let timer: ReturnType<typeof setTimeout> | undefined;
    const late = new Promise<"late">((r) => timer = setTimeout(() => r("late"), NODE_STOP_MS));
    if (await Promise.race([p.exited, late]) === "late") {
      p.signal("SIGKILL");
      await p.exited;
    }
    clearTimeout(timer);
  }

  /** Runs `seguro ARGS --data-dir <node id's dir>` in node `id`'s namespace. */
  async admin(id: number, args: readonly string[]): Promise<CommandResult> {
    const m = this.members.get(id)!;
    return await sh("ip", [
      "netns",
      "exec",
      this.#o.net.nodeNs(id),
      Deno.execPath(),
      "run",
      ...SEGURO_RUN_FLAGS,
      join(this.#o.repo, "main.ts"),
      ...args,
      "--data-dir",
      m.dir,
    ], ADMIN_MS);
  }

  /** Like {@linkcode admin}, throwing with the output unless it exits 0. */
  async mustAdmin(id: number, args: readonly string[]): Promise<string> {
    const r = await this.admin(id, args);
    if (r.code !== 0) {
      throw new Error(
        `'seguro ${args.join(" ")}' on node ${id} failed (exit ${r.code}): ${r.stderr.trim()}`,
      );
    }
    return r.stdout;
  }

  /** Stops every node gracefully (SIGCONT first if frozen), SIGKILL after a bound. */
  async stopAll(): Promise<void> {
    await Promise.all([...this.members.values()].map(async (m) => {
      if (m.proc === undefined || m.proc.ended) return;
      if (m.paused) m.proc.signal("SIGCONT");
      m.paused = false;
      m.proc.signal("SIGTERM");
      await this.#awaitEnd(m);
    }));
  }

  /** Kills every node at once (cleanup after a failure). */
  async killAll(): Promise<void> {
    await Promise.all([...this.members.values()].map(async (m) => {
      if (m.proc === undefined || m.proc.ended) return;
      m.proc.signal("SIGKILL");
      await m.proc.exited;
    }));
  }

  /** The last log lines of every node, for a report. */
  tails(n = NODE_LINES_SHOWN): string {
    return [...this.members.values()].map((m) =>
      `--- node ${m.id} (${m.logPath}), last ${n} lines:\n${(m.proc?.tail(n) ?? []).join("\n")}`
    ).join("\n");
  }
}
