/**
 * Failover that boots vere: on a node run with `--exec 'urbit {pier}'`, the
 * master runs that command for every ship marked with `seguro ship run`, on
 * the ship's standby pier, and tails the pier into the cluster as the
 * runtime writes it (server/pier_tail.ts). A node that stops being master
 * stops the command.
 *
 * Event-driven, with no poll of the node: it acts when the node's mastership
 * changes (ShipMaster's `role` event, published by the driver after every
 * Ready and after a tick that changes the role), after every applied batch
 * (run flags, terms: {@linkcode Supervisor.applied}), when a runtime exits,
 * and on its own timers (the end of the fencing wait, a restart). The tail
 * of a held pier wakes on changes of the pier's LMDB data file.
 *
 * Fencing by term (never two runtimes for one ship):
 * - The command runs under `seguro exec-guard`, which stops it (SIGTERM, then
 *   SIGKILL after `graceMs`) when this node tells it to or when this node
 *   dies (its stdin pipe closes), so no runtime outlives its node.
 * - The moment the node publishes that it is no longer master (or is master
 *   of another term), the supervisor sends SIGTERM to every runtime, in the
 *   same call ({@linkcode Supervisor.notice}), whatever else it is doing.
 * - A master loses its lease at most two election timeouts after the last
 *   time a quorum heard it (CheckQuorum runs once per election timeout; the
 *   tick that steps down publishes the change at once), and any quorum that
 *   elects a new master stopped hearing it no later than that election. So
 *   the old runtime is gone by `electionMs * 2 + graceMs` after the new
 *   master's election, plus the old node's delay in publishing (one turn of
 *   its Ready loop) and signal delivery; the new master waits `fenceMs` =
 *   that plus {@linkcode FENCE_MARGIN_MS} before it starts its runtime,
 *   counted from when it saw itself master (after its election).
 * - Assumes clocks advance at about the same rate on all nodes, as any Raft
 *   lease does. If a frozen old master outlives that bound, its runtime's
 *   writes still never reach the cluster: its proposals are refused once a
 *   newer term exists, and its pier is reconciled when it becomes a standby
 *   again (standby.ts).
 * @module
 */

import type { LogSink } from "../cluster/log_event.ts";
import type { ClusterNode } from "../cluster/node.ts";
import type { ShipRuntimeJson } from "../cluster/admin_protocol.ts";
import { encodeCommand, type PlannedEvent } from "../cluster/machine.ts";
import { renderShip } from "../vere/event.ts";
import { selfCommand } from "./self_command.ts";
import { type Alarms, describeFailure } from "./alarms.ts";
import type { StandbyPiers } from "./standby.ts";
import { PierTail, PierTailError } from "./pier_tail.ts";

/** Wait before restarting a runtime that exited on its own. */
const RESTART_DELAY_MS = 2000;
/** Added to the grace before a guard that has not exited after SIGTERM is killed, with its runtime. */
const GUARD_EXIT_SLACK_MS = 2000;
/**
 * Default longest drain of a stopped runtime's pier (what it wrote, replicated
 * while this node is master). Its writes end with it, so this is only reached
 * when the pier keeps growing (something else writes it) or the cluster is
 * too slow; the drain then gives up, and the standby discards what the
 * cluster did not commit, rather than hold the step or the node's stop.
 */
export const DRAIN_MS_MAX = 10_000;
/**
 * Added to two election timeouts and the grace in `fenceMs`: the old master's
 * delay in publishing its step-down (a Ready turn), signal delivery, and
 * clock-rate differences. 260 ms keeps the wait of the polling supervisor
 * this replaced (250 ms plus two 5 ms polls).
 */
export const FENCE_MARGIN_MS = 260;
/** How often a held pier is read besides on changes of its data file (lost notifications). */
const TAIL_BACKSTOP_MS = 50;
/** How often a held pier is read when its data file cannot be watched. */
const TAIL_POLL_MS = 5;
/** Wait before a step that failed (an alarm) is tried again. */
const STEP_RETRY_MS = 1000;
/** A tail logs its progress on its first batch, then every this many events. */
const TAIL_PROGRESS_EVENTS = 10_000;

/** Throws when `ok` is false: a broken invariant of the supervisor is a bug, never handled. */
function invariant(ok: boolean, message: () => string): asserts ok {
  if (!ok) throw new Error(`Supervisor invariant broken: ${message()}`);
}

/** This node's mastership as the supervisor reads it. */
export interface Mastership {
  /** True while this node is master: it leads and has applied an entry of its term. */
  master: boolean;
  /** Its current term. */
  term: number;
}

/** What the supervisor needs from its node. */
export interface SupervisedNode {
  /** The node's id. */
  readonly id: number;
  /** Its mastership now. */
  mastership(): Mastership;
  /** The ships whose run flag (`seguro ship run`) is set in the applied state. */
  runShips(): readonly bigint[];
  /**
   * Proposes `events` of `ship`, numbered from `firstEve`; resolves once they
   * are applied here, rejects when refused or when leadership is lost.
   */
  proposeEvents(ship: bigint, firstEve: number, events: PlannedEvent[]): Promise<unknown>;
  /** Calls `listener` whenever this node becomes or stops being master; returns the unsubscribe. */
  subscribe(listener: () => void): () => void;
}

/** The supervisor's view of a cluster node. */
export function supervisedNodeOf(node: ClusterNode): SupervisedNode {
  return {
    id: node.id,
    mastership: () => ({
      master: node.isLeader && node.isMaster,
      term: node.term,
    }),
    runShips: () => node.runShips(),
    proposeEvents: (ship, firstEve, events) =>
      node.proposeCommand(encodeCommand({ kind: "events", ship, firstEve, events })),
    subscribe: (listener) => node.onMasterChange(() => listener()),
  };
}

/** How a node runs ships' runtimes. */
export interface SupervisorConfig {
  /** The node whose mastership decides. */
  node: SupervisedNode;
  /** The node's standby piers: the runtime runs on them. */
  standby: StandbyPiers;
  /**
   * The command, split into words; `{pier}` is replaced by the pier directory
   * and `{socket}` by {@linkcode socket}. A command that names `{socket}` runs
   * a runtime in hook mode (the patched vere, `--seguro {socket}`): it plans
   * its events on the runtime socket itself, so its pier is not tailed.
   */
  exec: string[];
  /** The node's runtime socket (absolute), for `{socket}`. */
  socket?: string;
  /** SIGTERM to SIGKILL grace. */
  graceMs: number;
  /** The node's base election timeout. */
  electionMs: number;
  /** Log lines. */
  log: LogSink;
  /** Where a failure of the supervisor itself is raised (it never stops the node). */
  alarms: Alarms;
  /**
   * How a runtime's command line is started. Default: under the exec guard,
   * `seguro exec-guard --grace-ms G -- ARGV` (server/exec_guard.ts), which
   * stops it when this process dies. Tests may start it directly.
   */
  launch?: (argv: string[], graceMs: number) => { cmd: string; args: string[] };
  /** Longest drain of a stopped runtime's pier (default {@linkcode DRAIN_MS_MAX}). */
  drainMs?: number;
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
  /** The tail of the held pier, from its start until the pier is released. */
  tail?: PierTail;
  tailStopped: boolean;
  alarm?: string;
  restartAt: number;
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

function underGuard(argv: string[], graceMs: number): { cmd: string; args: string[] } {
  return selfCommand(["exec-guard", "--grace-ms", String(graceMs), "--", ...argv]);
}

/** Runs the ships' runtimes on this node while it is master. */
export class Supervisor {
  readonly #cfg: SupervisorConfig;
  readonly #fenceMs: number;
  readonly #drainMs: number;
  /** The runtime plans its own events (`{socket}` in the command): its pier is not tailed. */
  readonly #hook: boolean;
  readonly #runtimes = new Map<bigint, Runtime>();
  /** The term this supervisor runs runtimes in (0: none). */
  #term = 0;
  #leaderSince = 0;
  /** What the last notice saw, to skip work when nothing changed. */
  #seen = "";
  #unsubscribe: (() => void) | undefined;
  /** The next timed step (end of a fencing wait, a restart). */
  #timer: ReturnType<typeof setTimeout> | undefined;
  /** The step loop in progress, if any; steps never overlap. */
  #busy: Promise<void> | undefined;
  /** A step was asked for while one ran: run another. */
  #again = false;
  #started = false;
  #closed = false;
  /** The close in progress or done: a second call waits for the same one. */
  #closing: Promise<void> | undefined;

  /** A supervisor for `config.node`; call {@linkcode start}. */
  constructor(config: SupervisorConfig) {
    this.#cfg = config;
    this.#hook = config.exec.some((w) => w.includes("{socket}"));
    if (this.#hook && config.socket === undefined) {
      throw new RangeError("A hook-mode --exec names {socket}, but the supervisor has no socket");
    }
    this.#fenceMs = 2 * config.electionMs + config.graceMs + FENCE_MARGIN_MS;
    this.#drainMs = config.drainMs ?? DRAIN_MS_MAX;
    if (!(this.#drainMs > 0)) {
      throw new RangeError(`The drain limit of ${this.#drainMs} ms is not > 0`);
    }
  }

  /** How long a new master waits before it starts a runtime. */
  get fenceMs(): number {
    return this.#fenceMs;
  }

  /**
   * Longest {@linkcode close} takes: the step in progress, then the stop of
   * the runtimes left, each bounded by a guard's exit after SIGTERM (the grace
   * plus a slack, then SIGKILL), the batch in flight (applied, or refused by
   * two election timeouts after the quorum is gone) and the longest drain.
   */
  get closeMs(): number {
    const stopMs = this.#cfg.graceMs + GUARD_EXIT_SLACK_MS + 2 * this.#cfg.electionMs +
      this.#drainMs;
    return 2 * stopMs;
  }

  /** Starts following mastership and the ships' run flags. */
  start(): void {
    if (this.#started || this.#closed) return;
    this.#started = true;
    this.#unsubscribe = this.#cfg.node.subscribe(() => this.notice());
    this.notice();
  }

  /**
   * Tells the supervisor that the node applied entries: a run flag or the
   * term may have changed. Cheap when nothing did; the node calls it after
   * every applied batch.
   */
  applied(): void {
    this.notice();
  }

  /**
   * Acts on the node's state now: when this node is no longer master in the
   * supervisor's term, SIGTERM goes to every runtime before this returns;
   * anything else that changed (mastership, term, run flags) schedules a step.
   */
  notice(): void {
    if (!this.#started || this.#closed) return;
    const { master, term } = this.#cfg.node.mastership();
    if (!master || term !== this.#term) this.#fence();
    const seen = `${master}/${term}/${master ? this.#cfg.node.runShips().join(",") : ""}`;
    if (seen === this.#seen) return;
    this.#seen = seen;
    this.#schedule();
  }

  /**
   * Stops every runtime (gracefully) and the supervisor: SIGTERM goes to every
   * runtime at once, then it waits for the step in progress and for each
   * runtime to exit, replicating what it wrote while this node is master.
   * Resolves within {@linkcode closeMs}.
   */
  close(): Promise<void> {
    this.#closing ??= this.#close();
    return this.#closing;
  }

  async #close(): Promise<void> {
    this.#closed = true;
    this.#unsubscribe?.();
    clearTimeout(this.#timer);
    // Not after the step in progress: it may be waiting on another runtime or a drain.
    this.#fence();
    await this.#busy;
    await this.#stopAll("the node is stopping");
    invariant(this.#runtimes.size === 0, () => `${this.#runtimes.size} runtimes left after close`);
  }

  /** What `ship list` shows for a ship this node runs (or should run). */
  info(ship: bigint): ShipRuntimeJson | undefined {
    const r = this.#runtimes.get(ship);
    if (r === undefined) return undefined;
    const p99 = r.tail?.delayQuantile(0.99);
    return {
      nodeId: this.#cfg.node.id,
      state: r.state,
      pid: r.state === "running" ? r.child?.pid : undefined,
      forMs: Math.round(performance.now() - r.since),
      committedEve: r.committed,
      tailP99Ms: p99 === undefined ? undefined : Math.round(p99 * 10) / 10,
      alarm: r.alarm,
    };
  }

  /** SIGTERM to every running runtime, now (the step then waits for them and cleans up). */
  #fence(): void {
    for (const r of this.#runtimes.values()) {
      if (r.state !== "running" || r.child === undefined) continue;
      r.state = "stopping";
      try {
        r.child.kill("SIGTERM");
      } catch { /* exited already */ }
    }
  }

  /** Runs a step soon, off the caller's stack (the node's Ready handling); coalesced. */
  #schedule(): void {
    this.#again = true;
    if (this.#busy !== undefined || this.#closed) return;
    this.#busy = new Promise<void>((resolve) => setTimeout(resolve, 0)).then(async () => {
      while (this.#again && !this.#closed) {
        this.#again = false;
        try {
          await this.#step();
          this.#cfg.alarms.clear("exec supervisor");
        } catch (e) {
          this.#cfg.alarms.raise("exec supervisor", describeFailure(e));
          // Nothing may change to call for another step: try again after a while.
          this.#armTimer(performance.now() + STEP_RETRY_MS);
        }
      }
    }).finally(() => {
      this.#busy = undefined;
      // A notice that came after the loop's last look but before this point set #again
      // and found #busy still set: it must not be lost.
      if (this.#again && !this.#closed) this.#schedule();
    });
  }

  #stillMaster(): boolean {
    const { master, term } = this.#cfg.node.mastership();
    return master && term === this.#term;
  }

  async #step(): Promise<void> {
    const { master, term } = this.#cfg.node.mastership();
    if (!master || term !== this.#term) {
      if (this.#runtimes.size > 0) {
        await this.#stopAll("this node is no longer the master");
        this.#again = true; // it awaited: look again
        return;
      }
      this.#term = master ? term : 0;
      this.#leaderSince = performance.now();
      if (!master) return;
    }
    // Only the replicated run flags are read here: no query of the ship table.
    // Removing a ship clears its flag.
    const runs = new Set(this.#cfg.node.runShips());
    let stopped = false;
    for (const r of [...this.#runtimes.values()]) {
      if (runs.has(r.ship)) continue;
      await this.#stop(r, "'seguro ship run' was turned off, or the ship was removed");
      stopped = true;
    }
    if (stopped) {
      this.#again = true;
      return;
    }
    const now = performance.now();
    for (const ship of runs) {
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
        };
        this.#runtimes.set(ship, r);
        // Its pier may be in a warm-up play (--standby-play): stop that now, not at the start.
        this.#cfg.standby.stopPlay(ship).catch(() => {});
        const fenceMs = Math.max(0, Math.round(r.restartAt - now));
        this.#cfg.log(
          `${
            renderShip(ship)
          }: master in term ${this.#term}; starting its runtime after ${fenceMs} ms of fencing`,
          { event: "fencing", ship: renderShip(ship), term: this.#term, ms: fenceMs },
        );
      }
      const startable = r.state === "fencing" || (r.state === "exited" && !r.held);
      if (startable && now >= r.restartAt) {
        // A warm-up play of the pier (--standby-play) must never run beside its runtime.
        await this.#cfg.standby.stopPlay(ship);
        this.#start(r);
      }
      if (r.state === "exited" && r.held) {
        // Exited on its own: replicate what it wrote, then give the pier back.
        await this.#drain(r);
        if (!this.#stillMaster()) {
          this.#again = true;
          return;
        }
        await r.tail?.stop();
        r.tail = undefined;
        this.#cfg.standby.release(r.ship, r.committed);
        r.held = false;
      }
    }
    this.#armTimer();
  }

  /** Sets the timer for the earliest fencing end or restart still ahead (or `due`). */
  #armTimer(due = Infinity): void {
    clearTimeout(this.#timer);
    this.#timer = undefined;
    for (const r of this.#runtimes.values()) {
      if (r.state === "fencing" || (r.state === "exited" && !r.held)) {
        due = Math.min(due, r.restartAt);
      }
    }
    if (due === Infinity || this.#closed) return;
    this.#timer = setTimeout(
      () => this.#schedule(),
      Math.max(0, Math.ceil(due - performance.now())),
    );
  }

  #start(r: Runtime): void {
    // Checked again here, synchronously: steps await, and mastership may have gone meanwhile,
    // or the node begun to stop.
    if (!this.#stillMaster() || this.#closed) return;
    const name = renderShip(r.ship);
    const { pier, last, dataFile } = this.#cfg.standby.hold(r.ship);
    r.held = true;
    r.committed = last;
    r.tailStopped = false;
    r.alarm = undefined;
    const hook = this.#hook;
    const argv = this.#cfg.exec.map((w) =>
      w.replaceAll("{pier}", pier).replaceAll("{socket}", this.#cfg.socket ?? "")
    );
    const { cmd, args } = (this.#cfg.launch ?? underGuard)(argv, this.#cfg.graceMs);
    let child: Deno.ChildProcess;
    try {
      // stdin stays open for the guard's life: it closes only when this process dies.
      // Its own process group: a guard that does not exit is killed with its runtime
      // (killing the guard alone would leave the runtime running, writing the pier).
      child = new Deno.Command(cmd, {
        args,
        stdin: "piped",
        stdout: "inherit",
        stderr: "inherit",
        detached: true,
      }).spawn();
    } catch (e) {
      // Held but not started: the pier goes back to the standby; the restart waits.
      this.#cfg.standby.release(r.ship, r.committed);
      r.held = false;
      r.state = "exited";
      r.since = performance.now();
      r.restartAt = r.since + RESTART_DELAY_MS;
      r.alarm = `cannot start the runtime (retrying in ${RESTART_DELAY_MS / 1000} s): ${
        describeFailure(e)
      }`;
      this.#cfg.log(`${name}: ALARM ${r.alarm}`, {
        event: "runtime_alarm",
        ship: name,
        message: r.alarm,
      });
      return;
    }
    r.child = child;
    r.state = "running";
    r.since = performance.now();
    this.#cfg.log(
      `${name}: runtime started on ${pier} at event ${last} (guard pid ${child.pid}${
        hook ? "; hook mode: it plans its events on the runtime socket" : ""
      })`,
      {
        event: "runtime_started",
        ship: name,
        eve: last,
        pid: child.pid,
      },
    );
    // In hook mode the runtime plans each event itself and releases it on %done: no tail.
    if (!hook) this.#tail(r, dataFile);
    child.status.then((status) => {
      if (r.child !== child || r.state !== "running") return;
      r.state = "exited";
      r.since = performance.now();
      r.restartAt = r.since + RESTART_DELAY_MS;
      r.alarm = `the runtime exited with code ${status.code}; restarting it in ${
        RESTART_DELAY_MS / 1000
      } s`;
      this.#cfg.log(`${name}: ${r.alarm}`, {
        event: "runtime_exited",
        ship: name,
        code: status.code,
      });
      this.#schedule();
    });
  }

  /** Starts tailing `r`'s held pier into the cluster. */
  #tail(r: Runtime, dataFile: string): void {
    const name = renderShip(r.ship);
    const tail = new PierTail({
      after: r.committed,
      read: (after, maxBytes) => this.#cfg.standby.readHeld(r.ship, after, maxBytes),
      propose: (firstEve, events) => this.#cfg.node.proposeEvents(r.ship, firstEve, events),
      pollMs: TAIL_POLL_MS,
      watch: { path: dataFile, backstopMs: TAIL_BACKSTOP_MS },
      log: (line) => this.#cfg.log(`${name}: ${line}`),
      onBatch: (batch) => {
        r.committed = batch.lastEve;
        const n = batch.lastEve - batch.firstEve + 1;
        if (tail.batches === 1 || batch.lastEve % TAIL_PROGRESS_EVENTS < n) {
          this.#cfg.log(`${name}: tail committed up to event ${batch.lastEve}`, {
            event: "tail",
            ship: name,
            eve: batch.lastEve,
          });
        }
      },
    });
    r.tail = tail;
    tail.run().catch((e) => {
      if (r.tail === tail) this.#tailFailed(r, e);
    });
  }

  /** A tail that stopped on a failure: an alarm, unless mastership is gone (the step stops it). */
  #tailFailed(r: Runtime, e: unknown): void {
    if (!(e instanceof PierTailError)) {
      this.#alarm(r, `tail stopped: ${describeFailure(e)}`);
    } else if (e.reading) {
      this.#alarm(r, `tail stopped: ${e.message}`);
    } else if (this.#stillMaster()) {
      this.#alarm(r, `tail stopped at event ${e.eve}: ${e.message}`);
    }
  }

  /**
   * Replicates what `r`'s runtime wrote and the tail has not yet, while still
   * master, for at most the longest drain.
   */
  async #drain(r: Runtime): Promise<number> {
    const tail = r.tail;
    if (tail === undefined || r.tailStopped || !this.#stillMaster()) return 0;
    const until = performance.now() + this.#drainMs;
    let overdue = false;
    const proceed = () => {
      if (!this.#stillMaster()) return false;
      overdue = performance.now() >= until;
      return !overdue;
    };
    try {
      return await tail.drain(proceed);
    } catch (e) {
      this.#tailFailed(r, e);
      return tail.committed - r.committed;
    } finally {
      r.committed = tail.committed;
      if (overdue) {
        this.#cfg.log(
          `${
            renderShip(r.ship)
          }: gave up replicating its pier after ${this.#drainMs} ms, at event ${r.committed}; any later events of it are not replicated`,
        );
      }
    }
  }

  #alarm(r: Runtime, message: string): void {
    r.tailStopped = true;
    r.alarm = message;
    this.#cfg.log(`${renderShip(r.ship)}: ALARM ${message}`, {
      event: "runtime_alarm",
      ship: renderShip(r.ship),
      message,
    });
  }

  async #stopAll(why: string): Promise<void> {
    await Promise.all([...this.#runtimes.values()].map((r) => this.#stop(r, why)));
  }

  async #stop(r: Runtime, why: string): Promise<void> {
    const name = renderShip(r.ship);
    const child = r.child;
    r.state = "stopping";
    // The tail finishes its batch in flight; whatever the runtime writes from now on is
    // replicated below, once it has exited.
    const paused = r.tail?.stop();
    if (child !== undefined) {
      this.#cfg.log(`${name}: stopping its runtime (${why})`);
      try {
        child.kill("SIGTERM");
      } catch { /* exited already */ }
      // The guard SIGKILLs the runtime after the grace; it gets a little longer itself.
      let timer: ReturnType<typeof setTimeout> | undefined;
      const late = new Promise<"late">((resolve) => {
        timer = setTimeout(() => resolve("late"), this.#cfg.graceMs + GUARD_EXIT_SLACK_MS);
      });
      const outcome = await Promise.race([child.status, late]);
      clearTimeout(timer);
      if (outcome === "late") {
        this.#cfg.log(`${name}: the guard did not stop in time; killing it and its runtime`);
        try {
          Deno.kill(-child.pid, "SIGKILL"); // its process group: the guard, the runtime, its children
        } catch {
          try {
            child.kill("SIGKILL");
          } catch { /* exited */ }
        }
        await child.status; // SIGKILL cannot be caught: the kernel ends it
      }
      try {
        await child.stdin.close();
      } catch { /* closed with the process */ }
      await paused;
      // Still master (a graceful stop): replicate what the runtime wrote before it exited.
      const drained = r.held ? await this.#drain(r) : 0;
      this.#cfg.log(
        `${name}: runtime stopped at event ${r.committed}${
          drained > 0 ? ` (${drained} written while it stopped, replicated)` : ""
        }`,
        { event: "runtime_stopped", ship: name, eve: r.committed },
      );
    }
    await paused;
    await r.tail?.stop();
    r.tail = undefined;
    if (r.held) this.#cfg.standby.release(r.ship, r.committed);
    r.held = false;
    this.#runtimes.delete(r.ship);
    this.#cfg.standby.allowPlay(r.ship); // no runtime of it here now: its pier may be warmed again
  }
}
