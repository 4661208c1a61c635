/**
 * A runtime that obeys docs/runtime-protocol.md to the letter, for the
 * whole-node simulator. It computes events (random jobs and mugs from the
 * seed), pipelines up to `window` plans, releases effects only under rule 4
 * (a `%done` covering the event while the connection's last notice for the
 * ship is `%lead`), and re-syncs after `%nope`, `%away`, `%oops`, `%fence`
 * and a dropped connection, moving to the master.
 *
 * It checks on every message what it can see from its side (the protocol's
 * promises to a runtime) and reports each release to the checker with the
 * exact event (eve, mug, job) it released.
 *
 * Re-sync, literally: `%head`, then `%read` whatever the node has that the
 * runtime does not. The runtime "has" only what it released (effects out:
 * those events are in its state for good); everything it planned beyond that
 * and was not told `%done` for it drops and reads back from the node.
 * @module
 */

import type { Prng } from "../../core/mod.ts";
import type { NodeToRuntimeMessage, RuntimeToNodeMessage } from "../../vere/runtime_protocol.ts";

/** One event as the runtime holds it. */
export interface ModelEvent {
  /** Event number. */
  eve: number;
  /** Mug after it. */
  mug: number;
  /** Its jam bytes. */
  job: Uint8Array;
}

/** Where the model reports what it released and what broke a rule. */
export interface ModelObserver {
  /** The runtime released the effects of `event`. */
  released(event: ModelEvent): void;
  /** A protocol promise to the runtime was broken. */
  violation(message: string): void;
  /**
   * `[%head]` from the master answered `eve` though the runtime had released
   * up to `released`: a loss, which only an optimism below a quorum allows.
   */
  headBelowReleased(eve: number, released: number): void;
}

type Phase = "hail" | "fenced" | "head" | "read" | "plan" | "wait";

/** What the model asks the simulator to do with its connection. */
export type ModelAction = { kind: "send"; msg: RuntimeToNodeMessage } | {
  kind: "connect";
  /** The master's address from `%away` ('' when unknown: try another node). */
  master: string;
};

/** The protocol-exact runtime of one ship. */
export class RuntimeModel {
  readonly ship: bigint;
  readonly #prng: Prng;
  readonly #observer: ModelObserver;
  readonly #window: number;
  /** Events the runtime holds: released ones, then read or planned ones. */
  #log: ModelEvent[] = [];
  /** Highest event released (effects out). */
  #released = 0;
  /** Highest event planned on this connection (0: none yet). */
  #planned = 0;
  #phase: Phase = "hail";
  /** Per connection: the last role notice for the ship, and the highest %done. */
  #notice: "lead" | "fence" | "none" = "none";
  #done = 0;
  /** Node the connection is to (0: none). */
  node = 0;
  /** Counters. */
  readonly stats = { plans: 0, releases: 0, resyncs: 0, connects: 0, nopes: 0, aways: 0 };

  /** A runtime for `ship` that pipelines up to `window` plans. */
  constructor(ship: bigint, prng: Prng, observer: ModelObserver, window: number) {
    this.ship = ship;
    this.#prng = prng;
    this.#observer = observer;
    this.#window = window;
  }

  /** Highest event whose effects the runtime released. */
  get released(): number {
    return this.#released;
  }

  /** The connection to `node` is up: say `%hail`. */
  connected(node: number): ModelAction[] {
    this.node = node;
    this.stats.connects++;
    this.#phase = "hail";
    this.#notice = "none";
    this.#done = 0;
    this.#planned = 0;
    return [{ kind: "send", msg: { type: "hail", version: 1, node: 0 } }];
  }

  /** The connection dropped: connect again, anywhere. */
  disconnected(): ModelAction[] {
    this.node = 0;
    this.#phase = "hail";
    this.#notice = "none";
    return [{ kind: "connect", master: "" }];
  }

  /** One message from the node. */
  receive(msg: NodeToRuntimeMessage): ModelAction[] {
    if ("ship" in msg && msg.ship !== this.ship) return [];
    switch (msg.type) {
      case "hail":
        if (this.#phase !== "hail") this.#observer.violation("a second %hail on one connection");
        this.#phase = "fenced";
        return [];
      case "lead":
        this.#notice = "lead";
        return this.#resync();
      case "fence":
        this.#notice = "fence";
        this.#phase = "fenced";
        return [];
      case "done":
        return this.#onDone(msg.eve);
      case "nope":
        this.stats.nopes++;
        return this.#notice === "lead" ? this.#resync() : this.#stop();
      case "oops":
        return this.#notice === "lead" ? this.#resync() : this.#stop();
      case "away":
        this.stats.aways++;
        this.#phase = "wait";
        return [{ kind: "connect", master: msg.master }];
      case "head":
        return this.#onHead(msg.eve);
      case "logs":
        return this.#onLogs(msg.from, msg.events);
    }
  }

  #stop(): ModelAction[] {
    this.#phase = "fenced";
    return [];
  }

  #onDone(eve: number): ModelAction[] {
    if (eve < this.#done) {
      this.#observer.violation(`%done went back on one connection: ${this.#done} then ${eve}`);
    }
    this.#done = Math.max(this.#done, eve);
    if (this.#notice !== "lead") {
      this.#observer.violation(`%done ${eve} while the last notice was %${this.#notice}`);
      return [];
    }
    // Rule 4: release every held event up to `eve`. A %done beyond what the runtime holds
    // covers events it did not plan on this connection: it has nothing of them to release.
    const top = Math.min(eve, this.#log.length);
    for (let e = this.#released + 1; e <= top; e++) {
      this.#observer.released(this.#log[e - 1]);
      this.stats.releases++;
    }
    this.#released = Math.max(this.#released, top);
    return this.#phase === "plan" ? this.#planMore() : [];
  }

  /** Rule 6: stop planning, drop what was not released, then `%head` and `%read`. */
  #resync(): ModelAction[] {
    this.stats.resyncs++;
    this.#phase = "head";
    this.#planned = 0;
    this.#log.length = this.#released;
    return [{ kind: "send", msg: { type: "head", ship: this.ship } }];
  }

  #onHead(eve: number): ModelAction[] {
    if (this.#phase !== "head") return [];
    if (eve < this.#released) {
      // Seen from the runtime: the master's log ends before events it released. It
      // carries on from the log (a real runtime would replay from it).
      this.#observer.headBelowReleased(eve, this.#released);
      this.#released = eve;
      this.#log.length = eve;
    }
    return this.#readFrom(eve);
  }

  #head = 0;

  #readFrom(head: number): ModelAction[] {
    this.#head = head;
    if (this.#log.length >= head) return this.#startPlanning();
    this.#phase = "read";
    const from = this.#log.length + 1;
    return [{
      kind: "send",
      msg: { type: "read", ship: this.ship, from, count: Math.min(256, head - from + 1) },
    }];
  }

  #onLogs(from: number, events: readonly ModelEvent[]): ModelAction[] {
    if (this.#phase !== "read") return [];
    if (from !== this.#log.length + 1) return this.#resync();
    for (const e of events) {
      if (e.eve !== this.#log.length + 1) {
        this.#observer.violation(`%logs from ${from} holds event ${e.eve} out of order`);
        return this.#resync();
      }
      this.#log.push({ eve: e.eve, mug: e.mug, job: e.job });
    }
    if (events.length === 0) return this.#resync(); // the node has less than it said
    return this.#readFrom(this.#head);
  }

  #startPlanning(): ModelAction[] {
    if (this.#notice !== "lead") return this.#stop();
    this.#phase = "plan";
    this.#log.length = Math.min(this.#log.length, this.#head);
    this.#planned = this.#log.length;
    return this.#planMore();
  }

  /** Rule 2: plans in eve order from head + 1, up to `window` beyond the last release. */
  #planMore(): ModelAction[] {
    const out: ModelAction[] = [];
    // Events read back are logged; a %done for a later plan covers them too.
    while (this.#planned - Math.max(this.#released, this.#head) < this.#window) {
      const eve = this.#planned + 1;
      const event = { eve, mug: this.#prng.int(0x1_0000_0000), job: this.#job(eve) };
      this.#log[eve - 1] = event;
      this.#log.length = eve;
      this.#planned = eve;
      this.stats.plans++;
      out.push({ kind: "send", msg: { type: "plan", ship: this.ship, ...event } });
    }
    return out;
  }

  /** A job: a few random bytes, never ending in 0 (jam bytes never do). */
  #job(eve: number): Uint8Array {
    const n = 4 + this.#prng.int(12);
    const job = new Uint8Array(n);
    for (let i = 0; i < n; i++) job[i] = this.#prng.int(256);
    job[0] = eve & 0xff;
    job[n - 1] = 1 + this.#prng.int(255);
    return job;
  }
}
