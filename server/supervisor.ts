/**
 * Failover that boots vere: on a node run with `--exec 'urbit {pier}'`, the
 * master runs that command for every ship marked with `seguro ship run`, on
 * the ship's standby pier, and tails the pier into the cluster as the
 * runtime writes it. A node that stops being master stops the command.
 *
 * Fencing by term (never two runtimes for one ship):
 * - The command runs under `seguro exec-guard`, which stops it (SIGTERM, then
 *   SIGKILL after `graceMs`) when this node tells it to or when this node
 *   dies (its stdin pipe closes), so no runtime outlives its node.
 * - A master loses its lease at most two election timeouts after the last
 *   time a quorum heard it (CheckQuorum runs once per election timeout), and
 *   any quorum that elects a new master stopped hearing it no later than that
 *   election. So the old runtime is gone by `electionMs * 2 + graceMs` (plus
 *   a poll) after the new master's election, and the new master waits
 *   `fenceMs` = that plus a margin before it starts its runtime.
 * - Assumes clocks advance at about the same rate on all nodes, as any Raft
 *   lease does. If a frozen old master outlives that bound, its runtime's
 *   writes still never reach the cluster: its proposals are refused once a
 *   newer term exists, and its pier is reconciled when it becomes a standby
 *   again (standby.ts).
 * @module
 */

import type { ClusterNode, ShipRuntimeJson } from "../cluster/node.ts";
import { encodeCommand } from "../cluster/machine.ts";
import { renderShip } from "../vere/event.ts";
import { selfCommand } from "./self_command.ts";
import { type Alarms, describeFailure } from "./alarms.ts";
import type { StandbyPiers } from "./standby.ts";

/** Bytes of jobs per tail proposal. */
const TAIL_BATCH_BYTES = 4 * 1024 * 1024;
/** Wait before restarting a runtime that exited on its own. */
const RESTART_DELAY_MS = 2000;
/** Tail delays kept for the p99 in `ship list`. */
const DELAYS_KEPT = 1000;

/** How a node runs ships' runtimes. */
export interface SupervisorConfig {
  /** The node whose mastership decides. */
  node: ClusterNode;
  /** The node's standby piers: the runtime runs on them. */
  standby: StandbyPiers;
  /** The command, split into words; `{pier}` is replaced by the pier directory. */
  exec: string[];
  /** SIGTERM to SIGKILL grace. */
  graceMs: number;
  /** The node's base election timeout. */
  electionMs: number;
  /** How often the tail looks for new events. */
  pollMs: number;
  /** Log lines. */
  log: (line: string) => void;
  /** Where a failure of the supervisor itself is raised (it never stops the node). */
  alarms: Alarms;
}

type State = "fencing" | "running" | "exited" | "stopping";

interface Runtime {
  ship: bigint;
  state: State;
  since: number;
  child?: Deno.ChildProcess;
  /** Last event known committed from (or before) this runtime's pier. */
  committed: number;
  held: boolean;
  tailStopped: boolean;
  alarm?: string;
  restartAt: number;
  delays: number[];
}

/** Splits an `--exec` template into words; refuses one without `{pier}`. */
export function parseExec(template: string): string[] {
  const words = template.trim().split(/\s+/).filter((w) => w.length > 0);
  if (words.length === 0 || !words.some((w) => w.includes("{pier}"))) {
    throw new Error(
      `--exec '${template}' does not name the pier; write {pier} where it goes, e.g. --exec 'urbit {pier}'`,
    );
  }
  return words;
}

/** Runs the ships' runtimes on this node while it is master. */
export class Supervisor {
  readonly #cfg: SupervisorConfig;
  readonly #fenceMs: number;
  readonly #runtimes = new Map<bigint, Runtime>();
  #term = 0;
  #leaderSince = 0;
  #timer: ReturnType<typeof setInterval> | undefined;
  #busy: Promise<void> | undefined;
  #closed = false;

  /** A supervisor for `config.node`; call {@linkcode start}. */
  constructor(config: SupervisorConfig) {
    this.#cfg = config;
    this.#fenceMs = 2 * config.electionMs + config.graceMs + 2 * config.pollMs + 250;
  }

  /** How long a new master waits before it starts a runtime. */
  get fenceMs(): number {
    return this.#fenceMs;
  }

  /** Starts watching mastership and the ships' run flags. */
  start(): void {
    this.#timer = setInterval(() => {
      if (this.#busy !== undefined || this.#closed) return;
      this.#busy = this.#step().then(
        () => this.#cfg.alarms.clear("exec supervisor"),
        (e) => this.#cfg.alarms.raise("exec supervisor", describeFailure(e)),
      ).finally(() => this.#busy = undefined);
    }, this.#cfg.pollMs);
  }

  /** Stops every runtime (gracefully) and the supervisor. */
  async close(): Promise<void> {
    this.#closed = true;
    clearInterval(this.#timer);
    await this.#busy;
    await this.#stopAll("the node is stopping");
  }

  /** What `ship list` shows for a ship this node runs (or should run). */
  info(ship: bigint): ShipRuntimeJson | undefined {
    const r = this.#runtimes.get(ship);
    if (r === undefined) return undefined;
    const sorted = [...r.delays].sort((a, b) => a - b);
    return {
      nodeId: this.#cfg.node.id,
      state: r.state,
      pid: r.state === "running" ? r.child?.pid : undefined,
      forMs: Math.round(performance.now() - r.since),
      committedEve: r.committed,
      tailP99Ms: sorted.length
        ? Math.round(sorted[Math.min(sorted.length - 1, Math.floor(0.99 * sorted.length))] * 10) /
          10
        : undefined,
      alarm: r.alarm,
    };
  }

  async #step(): Promise<void> {
    const { node } = this.#cfg;
    const leading = node.raft.role === "leader" && node.ships.isMaster;
    if (!leading || node.raft.term !== this.#term) {
      if (this.#runtimes.size > 0) await this.#stopAll("this node is no longer the master");
      this.#term = leading ? node.raft.term : 0;
      this.#leaderSince = performance.now();
      if (!leading) return;
    }
    // Only the replicated run flags are read here (every poll): no query of the ship table.
    // Removing a ship clears its flag.
    for (const r of [...this.#runtimes.values()]) {
      if (!node.machine.runs(r.ship)) {
        await this.#stop(r, "'seguro ship run' was turned off, or the ship was removed");
      }
    }
    const now = performance.now();
    for (const ship of node.machine.runShips()) {
      let r = this.#runtimes.get(ship);
      if (r === undefined) {
        r = {
          ship,
          state: "fencing",
          since: now,
          committed: 0, // set when it starts, from the pier it holds
          held: false,
          tailStopped: false,
          restartAt: this.#leaderSince + this.#fenceMs,
          delays: [],
        };
        this.#runtimes.set(ship, r);
        this.#cfg.log(
          `${renderShip(ship)}: master in term ${this.#term}; starting its runtime after ${
            Math.max(0, Math.round(r.restartAt - now))
          } ms of fencing`,
        );
      }
      const startable = r.state === "fencing" || (r.state === "exited" && !r.held);
      if (startable && now >= r.restartAt) this.#start(r);
      if (r.held) await this.#tail(r);
      if (r.state === "exited" && r.held && !this.#stillLeading()) return;
      if (r.state === "exited" && r.held && (r.tailStopped || this.#drained(r))) {
        this.#cfg.standby.release(r.ship, r.committed);
        r.held = false;
      }
    }
  }

  #stillLeading(): boolean {
    const { node } = this.#cfg;
    return node.raft.role === "leader" && node.raft.term === this.#term;
  }

  #drained(r: Runtime): boolean {
    return this.#cfg.standby.readHeld(r.ship, r.committed, 1).length === 0;
  }

  #start(r: Runtime): void {
    const name = renderShip(r.ship);
    const { pier, last } = this.#cfg.standby.hold(r.ship);
    r.held = true;
    r.committed = last;
    r.tailStopped = false;
    r.alarm = undefined;
    r.delays = [];
    const argv = this.#cfg.exec.map((w) => w.replaceAll("{pier}", pier));
    const { cmd, args } = selfCommand([
      "exec-guard",
      "--grace-ms",
      String(this.#cfg.graceMs),
      "--",
      ...argv,
    ]);
    let child: Deno.ChildProcess;
    try {
      // stdin stays open for the guard's life: it closes only when this process dies.
      child = new Deno.Command(cmd, {
        args,
        stdin: "piped",
        stdout: "inherit",
        stderr: "inherit",
      }).spawn();
    } catch (e) {
      // Held but not started: the next step releases the pier; the restart waits.
      r.state = "exited";
      r.since = performance.now();
      r.restartAt = r.since + RESTART_DELAY_MS;
      r.alarm = `cannot start the runtime (retrying in ${RESTART_DELAY_MS / 1000} s): ${
        describeFailure(e)
      }`;
      this.#cfg.log(`${name}: ALARM ${r.alarm}`);
      return;
    }
    r.child = child;
    r.state = "running";
    r.since = performance.now();
    this.#cfg.log(`${name}: runtime started on ${pier} at event ${last} (guard pid ${child.pid})`);
    child.status.then((status) => {
      if (r.child !== child || r.state !== "running") return;
      r.state = "exited";
      r.since = performance.now();
      r.restartAt = r.since + RESTART_DELAY_MS;
      r.alarm = `the runtime exited with code ${status.code}; restarting it in ${
        RESTART_DELAY_MS / 1000
      } s`;
      this.#cfg.log(`${name}: ${r.alarm}`);
    });
  }

  async #tail(r: Runtime): Promise<void> {
    if (r.tailStopped) return;
    const name = renderShip(r.ship);
    const read = performance.now();
    let events;
    try {
      events = this.#cfg.standby.readHeld(r.ship, r.committed, TAIL_BATCH_BYTES);
    } catch (e) {
      this.#alarm(r, `tail stopped: ${(e as Error).message}`);
      return;
    }
    if (events.length === 0) return;
    try {
      await this.#cfg.node.proposeCommand(encodeCommand({
        kind: "events",
        ship: r.ship,
        firstEve: r.committed + 1,
        events: events.map((e) => ({ mug: e.mug, job: e.job })),
      }));
    } catch (e) {
      // Lost mastership: the next step stops the runtime. Still master: a refusal.
      if (this.#stillLeading()) {
        this.#alarm(r, `tail stopped at event ${r.committed + 1}: ${(e as Error).message}`);
      }
      return;
    }
    const first = r.delays.length === 0;
    r.committed += events.length;
    r.delays.push(performance.now() - read);
    if (r.delays.length > DELAYS_KEPT) r.delays.splice(0, r.delays.length - DELAYS_KEPT);
    if (first || r.committed % 10_000 < events.length) {
      this.#cfg.log(`${name}: tail committed up to event ${r.committed}`);
    }
  }

  #alarm(r: Runtime, message: string): void {
    r.tailStopped = true;
    r.alarm = message;
    this.#cfg.log(`${renderShip(r.ship)}: ALARM ${message}`);
  }

  async #stopAll(why: string): Promise<void> {
    await Promise.all([...this.#runtimes.values()].map((r) => this.#stop(r, why)));
  }

  async #stop(r: Runtime, why: string): Promise<void> {
    const name = renderShip(r.ship);
    const child = r.child;
    r.state = "stopping";
    if (child !== undefined) {
      this.#cfg.log(`${name}: stopping its runtime (${why})`);
      try {
        child.kill("SIGTERM");
      } catch { /* exited already */ }
      // The guard SIGKILLs the runtime after the grace; it gets a little longer itself.
      let timer: ReturnType<typeof setTimeout> | undefined;
      const late = new Promise<"late">((resolve) => {
        timer = setTimeout(() => resolve("late"), this.#cfg.graceMs + 2000);
      });
      const outcome = await Promise.race([child.status, late]);
      clearTimeout(timer);
      if (outcome === "late") {
        this.#cfg.log(`${name}: the guard did not stop in time; killing it`);
        try {
          child.kill("SIGKILL");
        } catch { /* exited */ }
        await child.status;
      }
      try {
        await child.stdin.close();
      } catch { /* closed with the process */ }
      // Still master (a graceful stop): replicate what the runtime wrote before it exited.
      let drained = 0;
      while (r.held && this.#stillLeading() && !r.tailStopped && !this.#drained(r)) {
        const before = r.committed;
        await this.#tail(r);
        if (r.committed === before) break;
        drained += r.committed - before;
      }
      this.#cfg.log(
        `${name}: runtime stopped at event ${r.committed}${
          drained > 0 ? ` (${drained} written while it stopped, replicated)` : ""
        }`,
      );
    }
    if (r.held) this.#cfg.standby.release(r.ship, r.committed);
    this.#runtimes.delete(r.ship);
  }
}
