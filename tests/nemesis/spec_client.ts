/**
 * A runtime written from docs/runtime-protocol.md alone, for the nemesis. It
 * plays a hook-mode vere for one ship against a cluster's runtime sockets
 * and obeys the protocol to the letter:
 *
 * - `%hail` first on every connection; the node's first frame must be its
 *   `%hail` (version 1, the node's own id);
 * - it looks for the master by connecting to every node and taking the
 *   first whose role notice for the ship is `%lead` (a node that just failed
 *   it is taken only if no other leads soon after);
 * - on `%lead` it re-syncs: `%head`, then `%read` of what it lacks (it keeps
 *   its own copy of the ship's log, so afterwards that copy equals the
 *   node's log up to the head; a master's head also counts plans it accepted
 *   and has not applied, rule 8, which `%read` cannot return yet: those are
 *   this runtime's own plans when all it read matched), then pipelines up to
 *   `inflight` `%plan`s in eve order from head + 1 without waiting for
 *   `%done`;
 * - it releases events only by rule 4: a `%done` covering them on the
 *   connection it planned on, whose last role notice is `%lead` (and only
 *   once that connection is re-synced);
 * - on `%nope` or `%oops` it stops planning and re-syncs; on `%fence` it
 *   stops planning and waits (bounded) for `%lead` on the same connection,
 *   then re-syncs; on `%away`, a closed connection, a stall or no `%lead` in
 *   time it leaves the node and looks for the master again (`%away` names
 *   it: that node is tried first).
 *
 * Every event is new: the jam of `[eve nonce]` with a random nonce, its mug
 * the noun's mug. Every wait is bounded by a fixed timeout. What it saw is
 * kept for the checker: each connection's notices and every released event.
 * @module
 */

import { cell, jam, mug } from "../../vere/noun.ts";
import { createPrng, type Prng } from "../../core/prng.ts";
import { EventColumns, type LoggedEvent, ShipLog } from "./event_columns.ts";
import type { ConnectionHistory, Notice, ReleasedEvent } from "./history.ts";
import {
  CLIENT_DRAIN_MS,
  CLIENT_STALL_MS,
  CLIENT_WAIT_MS,
  DISCOVERY_MS,
  DISCOVERY_PREFER_OTHER_MS,
  FENCE_WAIT_MS,
  INFLIGHT_DEFAULT,
  READ_COUNT,
  RESYNC_WINDOW_EVENTS,
} from "./limits.ts";
import { type Arrival, type NodeEndpoint, SpecConnection } from "./spec_connection.ts";
import { type NodeMessage, PROTOCOL_VERSION } from "./spec_codec.ts";

export type { NodeEndpoint } from "./spec_connection.ts";

/** How the runtime runs. */
export interface SpecRuntimeOptions {
  /** The ship it runs. */
  ship: bigint;
  /** Every node of the cluster. */
  nodes: readonly NodeEndpoint[];
  /** Seed of the event nonces. */
  seed: number;
  /** Plans in flight at most (default {@linkcode INFLIGHT_DEFAULT}). */
  inflight?: number;
  /** Plans per second at most (default 0: as fast as the node takes them). */
  ratePerSecond?: number;
  /** Debug lines (connections, roles, re-syncs). */
  log?: (line: string) => void;
}

/** A `%done` that released events: where and when. */
export interface ReleaseNote {
  /** When it arrived. */
  atMs: number;
  /** The connection. */
  conn: number;
  /** The node. */
  node: number;
  /** When that connection's `%lead` arrived. */
  leadAtMs: number;
  /** Highest event released. */
  eve: number;
  /** Events it released. */
  count: number;
}

/** Counters of what the runtime did. */
export interface SpecRuntimeStats {
  /** `%plan`s sent. */
  plans: number;
  /** Re-syncs done. */
  resyncs: number;
  /** Connections opened. */
  connections: number;
  /** Sessions ended by `%fence`. */
  fences: number;
  /** `%nope` frames. */
  nopes: number;
  /** `%away` frames. */
  aways: number;
  /** `%oops` frames. */
  oopses: number;
  /** Sessions abandoned for a stall (plans in flight, no `%done`). */
  stalls: number;
  /** Frames that broke the specification (most end their connection), and `%done`s past the plans. */
  protocolErrors: number;
}

/** The connection's last role notice became `%fence`. */
class Fenced extends Error {}

/** Why a session ended. */
class SessionEnd extends Error {
  readonly reason: "fenced" | "away" | "closed" | "stalled" | "timeout" | "oops" | "stopped";
  readonly master: string;

  constructor(reason: SessionEnd["reason"], message: string, master = "") {
    super(message);
    this.reason = reason;
    this.master = master;
  }
}

/** Counters of a runtime that has done nothing yet. */
export function emptySpecStats(): SpecRuntimeStats {
  return {
    plans: 0,
    resyncs: 0,
    connections: 0,
    fences: 0,
    nopes: 0,
    aways: 0,
    oopses: 0,
    stalls: 0,
    protocolErrors: 0,
  };
}

/** Observations kept (protocol surprises that are not themselves checked here). */
const OBSERVATIONS_KEPT = 200;
/** Wait before reading again events a master counts in its head and has not applied. */
const RESYNC_READ_RETRY_MS = 10;
/** Wait before trying again when no node's socket accepts a connection. */
const NO_NODE_RETRY_MS = 100;
/** Release notes kept per round. */
const NOTES_KEPT = 100_000;

/** Per connection state of the runtime. */
interface ConnState {
  c: SpecConnection;
  history: ConnectionHistory;
  hailed: boolean;
  role: "start" | "lead" | "fence";
  leadAtMs: number;
  /** Re-synced: releases allowed. */
  synced: boolean;
  /** Head at the last re-sync. */
  base: number;
  /** Highest `%done` on this connection. */
  highestDone: number;
}

/** The runtime. */
export class SpecRuntime {
  /** Its copy of the ship's log. */
  readonly local = new ShipLog();
  /** Every event it released, tagged with the connection. */
  readonly released = new EventColumns();
  /** Every connection it opened, with the notices it took. */
  readonly connections: ConnectionHistory[] = [];
  /** Surprises worth a look (bounded). */
  readonly observations: string[] = [];
  /** Counters. */
  readonly stats: SpecRuntimeStats = emptySpecStats();
  /** Events that a re-sync found missing or changed although released (seen live). */
  resyncLosses = 0;
  /** The last release. */
  lastRelease: ReleaseNote | undefined;

  readonly #opts: Required<Omit<SpecRuntimeOptions, "log">> & Pick<SpecRuntimeOptions, "log">;
  readonly #prng: Prng;
  #releasedUpTo = 0;
  #stopping = false;
  #loop: Promise<void> | undefined;
  #active: ConnState | undefined;
  #open = new Set<ConnState>();
  #notes: ReleaseNote[] = [];
  #noteWaiters: { pred: (n: ReleaseNote) => boolean; resolve: (n: ReleaseNote) => void }[] = [];
  #noticeWaiters: { pred: (n: Notice, h: ConnectionHistory) => boolean; resolve: () => void }[] =
    [];
  #nextConn = 1;
  #rateStartMs = 0;
  #ratePlans = 0;

  /** A runtime for `options.ship`; {@linkcode start} runs it. */
  constructor(options: SpecRuntimeOptions) {
    this.#opts = { inflight: INFLIGHT_DEFAULT, ratePerSecond: 0, ...options };
    this.#prng = createPrng(options.seed);
  }

  /** Starts looking for the master and planning. */
  start(): void {
    this.#loop = this.#run();
  }

  /** Stops planning, waits (bounded) for `%done` of what is in flight, and closes. */
  async stop(): Promise<void> {
    this.#stopping = true;
    this.#active?.c.interrupt();
    await this.#loop;
    for (const s of this.#open) s.c.close("the runtime stopped");
  }

  /** The released events, with the connection whose `%done` released each. */
  *releasedEvents(): IterableIterator<ReleasedEvent> {
    for (const r of this.released) {
      yield { eve: r.eve, mug: r.mug, job: r.job, conn: r.tag };
    }
  }

  /** The node it is planning on, if any. */
  get activeNode(): number | undefined {
    return this.#active?.synced ? this.#active.c.node.id : undefined;
  }

  /** Starts a new list of release notes for {@linkcode waitRelease} (call at each round). */
  markRound(): void {
    this.#notes = [];
  }

  /** The first release note since {@linkcode markRound} matching `pred`, waiting up to `timeoutMs`. */
  waitRelease(
    pred: (n: ReleaseNote) => boolean,
    timeoutMs: number,
    what: string,
  ): Promise<ReleaseNote> {
    const seen = this.#notes.find(pred);
    if (seen !== undefined) return Promise.resolve(seen);
    return new Promise((resolve, reject) => {
      const waiter = {
        pred,
        resolve: (n: ReleaseNote) => {
          clearTimeout(timer);
          resolve(n);
        },
      };
      const timer = setTimeout(() => {
        this.#noteWaiters = this.#noteWaiters.filter((w) => w !== waiter);
        reject(new Error(`no release ${what} within ${timeoutMs} ms`));
      }, timeoutMs);
      this.#noteWaiters.push(waiter);
    });
  }

  /**
   * Resolves once a notice matching `pred` has been taken on some connection
   * (already, or later), waiting up to `timeoutMs`.
   */
  waitNotice(
    pred: (n: Notice, h: ConnectionHistory) => boolean,
    timeoutMs: number,
    what: string,
  ): Promise<void> {
    if (this.connections.some((h) => h.notices.some((n) => pred(n, h)))) return Promise.resolve();
    return new Promise((resolve, reject) => {
      const waiter = {
        pred,
        resolve: () => {
          clearTimeout(timer);
          resolve();
        },
      };
      const timer = setTimeout(() => {
        this.#noticeWaiters = this.#noticeWaiters.filter((w) => w !== waiter);
        reject(new Error(`no notice ${what} within ${timeoutMs} ms`));
      }, timeoutMs);
      this.#noticeWaiters.push(waiter);
    });
  }

  #wakeNoticeWaiters(h: ConnectionHistory): void {
    this.#noticeWaiters = this.#noticeWaiters.filter((w) => {
      if (!h.notices.some((n) => w.pred(n, h))) return true;
      w.resolve();
      return false;
    });
  }

  #log(line: string): void {
    this.#opts.log?.(line);
  }

  #observe(line: string): void {
    this.#log(`observed: ${line}`);
    if (this.observations.length < OBSERVATIONS_KEPT) this.observations.push(line);
  }

  // ------------------------------------------------------------ the loop

  async #run(): Promise<void> {
    let prefer: number | undefined;
    let avoid: number | undefined;
    while (!this.#stopping) {
      const s = await this.#discover(prefer, avoid);
      prefer = avoid = undefined;
      if (s === undefined) continue;
      try {
        await this.#session(s);
      } catch (e) {
        if (!(e instanceof SessionEnd)) throw e;
        this.#log(
          `conn ${s.c.id} (node ${s.c.node.id}): session ended (${e.reason}): ${e.message}`,
        );
        if (e.reason === "away") {
          prefer = this.#opts.nodes.find((n) => n.address === e.master)?.id;
        } else if (e.reason !== "stopped") {
          avoid = s.c.node.id;
        }
      } finally {
        this.#close(s, "the runtime left this node");
      }
    }
  }

  #close(s: ConnState, why: string): void {
    if (!s.c.closed) {
      s.c.close(`client: ${why}`);
      s.history.notices.push({ kind: "closed", why: `client: ${why}`, atMs: Date.now() });
    }
    this.#open.delete(s);
    if (this.#active === s) this.#active = undefined;
  }

  /** Connects to every node; resolves with the first that leads (or undefined after a while). */
  async #discover(prefer?: number, avoid?: number): Promise<ConnState | undefined> {
    const deadline = Date.now() + DISCOVERY_MS;
    const order = [...this.#opts.nodes].sort((a, b) =>
      (a.id === prefer ? -1 : 0) - (b.id === prefer ? -1 : 0)
    );
    const opened = await Promise.all(order.map(async (node) => {
      const id = this.#nextConn++;
      try {
        const c = await SpecConnection.open(id, node, CLIENT_WAIT_MS);
        const s = this.#track(c);
        c.send({ tag: "hail", version: PROTOCOL_VERSION });
        return s;
      } catch {
        return undefined;
      }
    }));
    const candidates = opened.filter((s): s is ConnState => s !== undefined);
    if (candidates.length === 0) {
      // No socket answers (every node is down): there is no event to wait for, so wait briefly.
      await new Promise((r) => setTimeout(r, NO_NODE_RETRY_MS));
      return undefined;
    }
    let over = false;
    const leads = candidates.map((s) => this.#awaitLead(s, deadline, () => over));
    let winner: ConnState | undefined;
    try {
      winner = await Promise.any(leads);
      const first = winner;
      if (first.c.node.id === avoid && candidates.length > 1) {
        // The node that just failed us still says %lead: prefer another that leads soon after.
        const others = leads.filter((_, i) => candidates[i] !== first);
        let timer: ReturnType<typeof setTimeout> | undefined;
        const other = await Promise.any([
          ...others,
          new Promise<undefined>((r) =>
            timer = setTimeout(() => r(undefined), DISCOVERY_PREFER_OTHER_MS)
          ),
        ]).catch(() => undefined);
        clearTimeout(timer);
        if (other !== undefined) winner = other;
      }
    } catch {
      winner = undefined;
    }
    over = true;
    if (winner === undefined && Date.now() < deadline) {
      // Every candidate failed at once (closing, broken): do not spin; there is no event to await.
      await new Promise((r) => setTimeout(r, NO_NODE_RETRY_MS));
    }
    for (const s of candidates) {
      if (s !== winner) {
        s.c.interrupt();
        this.#close(s, winner === undefined ? "no node leads" : "another node leads");
      }
    }
    await Promise.allSettled(leads);
    return winner;
  }

  #track(c: SpecConnection): ConnState {
    this.stats.connections++;
    const history: ConnectionHistory = { conn: c.id, node: c.node.id, notices: [] };
    this.connections.push(history);
    const s: ConnState = {
      c,
      history,
      hailed: false,
      role: "start",
      leadAtMs: 0,
      synced: false,
      base: 0,
      highestDone: 0,
    };
    this.#open.add(s);
    return s;
  }

  /** Takes `s`'s frames until its role is `%lead`; rejects on anything else. */
  async #awaitLead(s: ConnState, deadline: number, stop: () => boolean): Promise<ConnState> {
    while (s.role !== "lead") {
      if (stop() || this.#stopping) throw new Error("discovery is over");
      const left = deadline - Date.now();
      if (left <= 0) throw new Error("no %lead in time");
      const a = await s.c.next(left);
      if (a === undefined) continue;
      const m = this.#absorb(s, a);
      if (m?.tag === "oops") throw new Error(`%oops before %lead: ${m.why}`);
      // An %away here names the master (rule 5): its own connection will say %lead.
    }
    return s;
  }

  /**
   * Applies one arrival to the connection's state, in order: records notices,
   * follows role notices, releases on `%done` by rule 4. Returns the message
   * (undefined for frames about other ships). A closed stream or a frame out
   * of place ends the session.
   */
  #absorb(s: ConnState, a: Arrival): NodeMessage | undefined {
    const before = s.history.notices.length;
    try {
      return this.#absorbArrival(s, a);
    } finally {
      if (s.history.notices.length > before) this.#wakeNoticeWaiters(s.history);
    }
  }

  #absorbArrival(s: ConnState, a: Arrival): NodeMessage | undefined {
    const notices = s.history.notices;
    if ("closed" in a) {
      if (s.c.specError !== undefined && !notices.some((n) => n.kind === "closed")) {
        this.stats.protocolErrors++;
        this.#observe(s.c.specError);
      }
      if (notices.at(-1)?.kind !== "closed") {
        notices.push({ kind: "closed", why: a.closed, atMs: a.atMs });
      }
      throw new SessionEnd("closed", a.closed);
    }
    const m = a.msg;
    if (!s.hailed) {
      if (m.tag !== "hail") {
        this.#broke(s, `its first frame was %${m.tag}, not %hail (rule 1)`);
      }
      if (m.version !== PROTOCOL_VERSION) {
        this.#broke(s, `it speaks version ${m.version}, not ${PROTOCOL_VERSION}`);
      }
      if (m.node !== s.c.node.id) {
        this.#broke(s, `its %hail says node ${m.node} on node ${s.c.node.id}'s socket`);
      }
      s.hailed = true;
      return m;
    }
    if (m.tag === "hail") this.#broke(s, "it sent a second %hail");
    if (m.tag === "oops") {
      this.stats.oopses++;
      notices.push({ kind: "oops", why: m.why, atMs: a.atMs });
      return m;
    }
    if (m.ship !== this.#opts.ship) return undefined;
    const at = a.atMs;
    switch (m.tag) {
      case "lead":
        s.role = "lead";
        s.leadAtMs = at;
        notices.push({ kind: "lead", atMs: at });
        break;
      case "fence":
        s.role = "fence";
        notices.push({ kind: "fence", atMs: at });
        break;
      case "done":
        notices.push({ kind: "done", eve: m.eve, atMs: at });
        s.highestDone = Math.max(s.highestDone, m.eve);
        if (s === this.#active && s.synced && s.role === "lead") this.#release(s, m.eve, at);
        break;
      case "nope":
        this.stats.nopes++;
        notices.push({ kind: "nope", eve: m.eve, why: m.why, atMs: at } satisfies Notice);
        break;
      case "away":
        this.stats.aways++;
        notices.push({ kind: "away", master: m.master, atMs: at });
        break;
    }
    return m;
  }

  #broke(s: ConnState, rule: string): never {
    const why = `node ${s.c.node.id} broke the protocol: ${rule}`;
    this.stats.protocolErrors++;
    this.#observe(why);
    s.c.close(`client: ${why}`);
    s.history.notices.push({ kind: "closed", why: `client: ${why}`, atMs: Date.now() });
    throw new SessionEnd("closed", why);
  }

  /** Rule 4: releases the local events up to `eve` not released yet. */
  #release(s: ConnState, eve: number, atMs: number): void {
    if (eve > this.local.lastEve) {
      this.stats.protocolErrors++;
      this.#observe(
        `node ${s.c.node.id} sent %done ${eve} on connection ${s.c.id}, past the last planned event ${this.local.lastEve}`,
      );
    }
    const upTo = Math.min(eve, this.local.lastEve);
    if (upTo <= this.#releasedUpTo) return;
    for (let e = this.#releasedUpTo + 1; e <= upTo; e++) {
      this.released.push(this.local.event(e)!, s.c.id);
    }
    const note: ReleaseNote = {
      atMs,
      conn: s.c.id,
      node: s.c.node.id,
      leadAtMs: s.leadAtMs,
      eve: upTo,
      count: upTo - this.#releasedUpTo,
    };
    this.#releasedUpTo = upTo;
    this.lastRelease = note;
    if (this.#notes.length < NOTES_KEPT) this.#notes.push(note);
    const waiters = this.#noteWaiters;
    this.#noteWaiters = [];
    for (const w of waiters) {
      if (w.pred(note)) w.resolve(note);
      else this.#noteWaiters.push(w);
    }
  }

  // ------------------------------------------------------------ a session on the master

  async #session(s: ConnState): Promise<void> {
    this.#active = s;
    this.#log(`conn ${s.c.id}: node ${s.c.node.id} leads`);
    while (true) {
      try {
        await this.#resync(s);
        await this.#pipeline(s);
      } catch (e) {
        if (!(e instanceof Fenced)) throw e;
        await this.#awaitRelead(s);
      }
    }
  }

  /**
   * After `%fence`: no planning, no release; waits on this connection for
   * `%lead` (then the session re-syncs) or `%away` naming the master, up to
   * {@linkcode FENCE_WAIT_MS}; then the session ends and other nodes are tried.
   */
  async #awaitRelead(s: ConnState): Promise<void> {
    this.stats.fences++;
    s.synced = false;
    this.#log(`conn ${s.c.id}: fenced; waiting for %lead`);
    const deadline = Date.now() + FENCE_WAIT_MS;
    // A function, so that the compiler does not take the role as fixed across #absorb.
    const leading = (): boolean => s.role === "lead";
    while (!leading()) {
      if (this.#stopping) throw new SessionEnd("stopped", "the runtime is stopping");
      const left = deadline - Date.now();
      if (left <= 0) {
        throw new SessionEnd("fenced", `no %lead within ${FENCE_WAIT_MS} ms of %fence`);
      }
      const a = await s.c.next(left);
      if (a === undefined) continue;
      const m = this.#absorb(s, a);
      // %nope and %oops here answer plans sent before the %fence: ignored (rule 6).
      if (m?.tag === "away" && !leading()) {
        throw new SessionEnd("away", `%away after %fence: master '${m.master}'`, m.master);
      }
    }
    this.#log(`conn ${s.c.id}: %lead again`);
  }

  /** The next answer of kind `tag` on `s`; role changes and refusals end the wait. */
  async #answer<T extends "head" | "logs">(
    s: ConnState,
    tag: T,
  ): Promise<Extract<NodeMessage, { tag: T }>> {
    const deadline = Date.now() + CLIENT_WAIT_MS;
    while (true) {
      if (this.#stopping) throw new SessionEnd("stopped", "the runtime is stopping");
      const left = deadline - Date.now();
      if (left <= 0) {
        throw new SessionEnd("timeout", `no %${tag} answer within ${CLIENT_WAIT_MS} ms`);
      }
      const a = await s.c.next(left);
      if (a === undefined) continue;
      const m = this.#absorb(s, a);
      this.#endOnRole(s, m);
      if (m?.tag === "oops") throw new SessionEnd("oops", `%oops while re-syncing: ${m.why}`);
      // A %nope here is for a plan sent before the re-sync began: those are not logged (rule 6).
      if (m?.tag === tag) return m as Extract<NodeMessage, { tag: T }>;
    }
  }

  #endOnRole(s: ConnState, m: NodeMessage | undefined): void {
    if (s.role !== "lead") throw new Fenced(`node ${s.c.node.id} sent %fence`);
    if (m?.tag === "away") throw new SessionEnd("away", `%away: master '${m.master}'`, m.master);
  }

  /**
   * Reads the node's events `from`..`head` and compares those it also holds
   * (up to `top`) with its own. Per rule 8, events past the node's applied
   * ones are plans it accepted and has not applied: `%read` cannot return
   * them yet. If everything read so far matched and the local log reaches
   * `head`, those are this runtime's own plans and are kept; otherwise the
   * read is tried again (bounded) until the node has applied them.
   */
  async #readBack(
    s: ConnState,
    from: number,
    top: number,
    head: number,
  ): Promise<{ theirs: LoggedEvent[]; mismatch: number | undefined }> {
    const theirs: LoggedEvent[] = [];
    let mismatch: number | undefined;
    let next = from;
    const deadline = Date.now() + CLIENT_WAIT_MS;
    while (next <= head) {
      const count = Math.min(READ_COUNT, head - next + 1);
      s.c.send({ tag: "read", ship: this.#opts.ship, from: next, count });
      const logs = await this.#answer(s, "logs");
      if (logs.from !== next) {
        this.#broke(s, `%logs from ${logs.from} answered %read from ${next}`);
      }
      if (logs.events.length > count) {
        this.#broke(s, `%logs has ${logs.events.length} events for a %read of ${count}`);
      }
      for (const e of logs.events) {
        if (mismatch === undefined && e.eve <= top && !this.local.holds(e)) mismatch = e.eve;
        theirs.push(e);
      }
      next += logs.events.length;
      if (logs.events.length > 0 || next > head) continue;
      if (mismatch === undefined && this.local.lastEve >= head) break; // our accepted plans
      if (Date.now() >= deadline) {
        throw new SessionEnd(
          "timeout",
          `node ${s.c.node.id}'s %head is ${head} but %read from ${next} finds nothing for ${CLIENT_WAIT_MS} ms`,
        );
      }
      // Accepted plans of another runtime, not applied yet: nothing announces their apply.
      await new Promise((r) => setTimeout(r, RESYNC_READ_RETRY_MS));
    }
    return { theirs, mismatch };
  }

  /** `%head`, then `%read` until the local log equals the node's up to its head. */
  async #resync(s: ConnState): Promise<void> {
    s.synced = false;
    this.stats.resyncs++;
    s.c.send({ tag: "head", ship: this.#opts.ship });
    const head = await this.#answer(s, "head");
    const h = head.eve;
    const local = this.local;
    const top = Math.min(local.lastEve, h);
    let back = RESYNC_WINDOW_EVENTS;
    let from = 1;
    let got: { theirs: LoggedEvent[]; mismatch: number | undefined } = {
      theirs: [],
      mismatch: undefined,
    };
    // Re-read a window behind the common top; widen it while its first event differs.
    while (h > 0) {
      from = Math.max(1, top - back + 1);
      got = await this.#readBack(s, from, top, h);
      if (from === 1 || got.mismatch !== from) break;
      back *= 8;
    }
    const cut = got.mismatch === undefined ? top : got.mismatch - 1;
    if (cut < this.#releasedUpTo) {
      this.resyncLosses += this.#releasedUpTo - cut;
      this.#observe(
        `node ${s.c.node.id} leads with a log that lacks or changes released events ${
          cut + 1
        }..${this.#releasedUpTo} (its head is ${h})`,
      );
      this.#releasedUpTo = cut;
    }
    local.truncate(cut);
    for (const e of got.theirs) if (e.eve > cut) local.append(e);
    if (local.lastEve !== h) {
      throw new SessionEnd(
        "timeout",
        `after re-syncing with node ${s.c.node.id} the local log ends at ${local.lastEve}, not at its head ${h}`,
      );
    }
    if (h > 0 && local.mugOf(h) !== head.mug) {
      this.#observe(
        `node ${s.c.node.id}'s %head says mug ${head.mug} at ${h}, its log ${local.mugOf(h)}`,
      );
    }
    s.base = h;
    s.synced = true;
    this.#log(
      `conn ${s.c.id}: re-synced at head ${h} (read ${got.theirs.length} from ${from})`,
    );
  }

  #event(eve: number): LoggedEvent {
    const nonce = (BigInt(this.#prng.int(2 ** 32)) << 32n) | BigInt(this.#prng.int(2 ** 32));
    const noun = cell(BigInt(eve), nonce);
    return { eve, mug: mug(noun), job: jam(noun) };
  }

  /** Plans until something ends it: `%nope`/`%oops` return (re-sync), the rest throw. */
  async #pipeline(s: ConnState): Promise<void> {
    const { inflight, ratePerSecond } = this.#opts;
    let lastProgress = Date.now();
    const drainUntil = () => Date.now() + CLIENT_DRAIN_MS;
    let stopBy = 0;
    if (this.#rateStartMs === 0) this.#rateStartMs = Date.now();
    while (true) {
      // A %done past the planned events (a node bug, observed) must not open the window further.
      const acked = Math.max(s.base, Math.min(s.highestDone, this.local.lastEve));
      let waitMs = CLIENT_WAIT_MS;
      if (this.#stopping) {
        if (stopBy === 0) stopBy = drainUntil();
        if (acked >= this.local.lastEve) throw new SessionEnd("stopped", "stopped, all done");
        if (Date.now() >= stopBy) throw new SessionEnd("stopped", "stopped, drain timed out");
        waitMs = stopBy - Date.now();
      } else {
        let budget = Infinity;
        if (ratePerSecond > 0) {
          budget = Math.floor((Date.now() - this.#rateStartMs) * ratePerSecond / 1000) -
            this.#ratePlans;
        }
        let sent = 0;
        while (this.local.lastEve - acked < inflight && sent < budget) {
          const e = this.#event(this.local.lastEve + 1);
          this.local.append(e);
          s.c.send({ tag: "plan", ship: this.#opts.ship, eve: e.eve, mug: e.mug, job: e.job });
          sent++;
        }
        this.stats.plans += sent;
        this.#ratePlans += sent;
        await s.c.room();
        if (this.local.lastEve - acked < inflight && ratePerSecond > 0) {
          waitMs = Math.min(waitMs, Math.max(1, Math.ceil(1000 / ratePerSecond)));
        }
      }
      const pending = this.local.lastEve > acked;
      if (pending) waitMs = Math.min(waitMs, lastProgress + CLIENT_STALL_MS - Date.now());
      const a = await s.c.next(Math.max(0, waitMs));
      if (a === undefined) {
        if (pending && Date.now() - lastProgress >= CLIENT_STALL_MS) {
          this.stats.stalls++;
          throw new SessionEnd(
            "stalled",
            `${this.local.lastEve - acked} plans in flight and no %done for ${CLIENT_STALL_MS} ms`,
          );
        }
        continue;
      }
      const before = s.highestDone;
      const m = this.#absorb(s, a);
      if (s.highestDone > before || !pending) lastProgress = Date.now();
      this.#endOnRole(s, m);
      if (m?.tag === "nope" || m?.tag === "oops") {
        if (this.#stopping) throw new SessionEnd("stopped", `stopped at a %${m.tag}`);
        this.#log(`conn ${s.c.id}: %${m.tag} (${"why" in m ? m.why : ""}); re-syncing`);
        return;
      }
    }
  }
}
