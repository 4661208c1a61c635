/**
 * The whole-node simulator's checker of Seguro's one promise, fed by the
 * runtime model (what it released) and by every node's applied state (what
 * each committed log holds). After every step:
 * - logs never diverge: every node's applied event at an eve is the same
 *   (mug and job bytes) as every other node's, and applied logs never shrink;
 * - at optimism K = quorum, every released event is, in every committed log
 *   that reaches its eve, the same event; `[%head]` from the master never
 *   answers below what was released.
 * At the end (faults healed, everything caught up):
 * - K = quorum: every released event is in every node's log;
 * - K < quorum: every released event that is missing or different is
 *   inside a loss some node reported (`RELEASED BUT LOST`, `log audit`).
 * The runtime model reports the per-connection rules (monotonic `%done`, no
 * `%done` after `%fence`) as violations directly.
 * @module
 */

import { sameBytes } from "../../cluster/codec.ts";
import type { Loss } from "../../cluster/release.ts";
import type { ModelEvent, ModelObserver } from "./runtime_model.ts";

/** Applied events of one node, read incrementally. */
export interface AppliedLog {
  /** Last applied event of the ship (0: none). */
  lastEve(): number;
  /** Applied events from `from` (at most `count`). */
  events(from: number, count: number): ModelEvent[];
}

/** A broken promise, with what broke it. */
export class PromiseViolation extends Error {
  /** Says what broke. */
  constructor(message: string) {
    super(message);
    this.name = "PromiseViolation";
  }
}

/** Checks the release promise over one ship. */
export class ReleaseChecker implements ModelObserver {
  /** Optimism is a quorum: released means durable. */
  readonly #quorum: boolean;
  /** Events released, by eve (the latest release of that eve). */
  readonly #released = new Map<number, ModelEvent>();
  /** Every release, in order (below a quorum an eve can be released, lost and released again). */
  readonly #history: ModelEvent[] = [];
  /** The committed log as the first node to apply each eve saw it. */
  readonly #committed = new Map<number, ModelEvent>();
  /** Per node: events checked so far. */
  readonly #cursor = new Map<number, number>();
  /** Nodes that lost unflushed writes since they were last observed. */
  readonly #mayShrink = new Set<number>();
  /** Counters. */
  releasedCount = 0;

  /** A checker; `quorum`: the ship's optimism is a quorum. */
  constructor(quorum: boolean) {
    this.#quorum = quorum;
  }

  /** Highest eve released so far. */
  get maxReleased(): number {
    let max = 0;
    for (const eve of this.#released.keys()) max = Math.max(max, eve);
    return max;
  }

  /** From the model: the runtime released `event`. */
  released(event: ModelEvent): void {
    this.releasedCount++;
    this.#released.set(event.eve, event);
    this.#history.push(event);
    const c = this.#committed.get(event.eve);
    if (this.#quorum && c !== undefined && !same(c, event)) {
      throw new PromiseViolation(
        `released event ${event.eve} (${describe(event)}) differs from the committed ${
          describe(c)
        }`,
      );
    }
  }

  /** From the model. */
  violation(message: string): void {
    throw new PromiseViolation(message);
  }

  /** From the model. */
  headBelowReleased(eve: number, released: number): void {
    if (this.#quorum) {
      throw new PromiseViolation(
        `the master answered [%head] ${eve} after the runtime released up to ${released}`,
      );
    }
  }

  /**
   * Node `id` lost its unflushed writes in a crash (a power cut): its applied
   * state may go back to what was durable, and it re-applies from its log.
   * The next observation may find its applied log shorter; it is read again
   * from there and every re-applied event checked again.
   */
  lostUnflushed(id: number): void {
    this.#mayShrink.add(id);
  }

  /** Reads what node `id` applied since the last call and checks it. */
  observe(id: number, log: AppliedLog): void {
    const last = log.lastEve();
    let cursor = this.#cursor.get(id) ?? 0;
    if (this.#mayShrink.delete(id) && last < cursor) cursor = last;
    if (last < cursor) {
      throw new PromiseViolation(`node ${id}'s applied log shrank from ${cursor} to ${last}`);
    }
    let at = cursor + 1;
    while (at <= last) {
      const chunk = log.events(at, 512);
      if (chunk.length === 0) break;
      for (const e of chunk) {
        if (e.eve !== at) {
          throw new PromiseViolation(`node ${id} has event ${e.eve} where ${at} belongs`);
        }
        const c = this.#committed.get(e.eve);
        if (c === undefined) this.#committed.set(e.eve, e);
        else if (!same(c, e)) {
          throw new PromiseViolation(
            `logs diverge at event ${e.eve}: node ${id} has ${describe(e)}, another node ${
              describe(c)
            }`,
          );
        }
        const r = this.#released.get(e.eve);
        if (this.#quorum && r !== undefined && !same(r, e)) {
          throw new PromiseViolation(
            `node ${id} committed event ${e.eve} as ${describe(e)}, but ${
              describe(r)
            } was released`,
          );
        }
        at++;
      }
    }
    this.#cursor.set(id, at - 1);
  }

  /**
   * At the end: every released event is in the final log of every node
   * (`logs`), or, below a quorum, inside a reported loss.
   */
  finish(logs: ReadonlyMap<number, AppliedLog>, losses: readonly Loss[]): void {
    for (const [id, log] of logs) this.observe(id, log);
    const lastOf = [...logs].map(([id, log]) => ({ id, last: log.lastEve() }));
    for (const r of this.#history) {
      const eve = r.eve;
      const c = this.#committed.get(eve);
      const kept = c !== undefined && same(c, r) && lastOf.every((n) => n.last >= eve);
      if (kept) continue;
      const audited = losses.some((l) => l.firstEve <= eve && eve <= l.lastEve);
      if (!this.#quorum && audited) continue;
      const where = lastOf.map((n) => `node ${n.id} ends at ${n.last}`).join(", ");
      throw new PromiseViolation(
        `released event ${eve} (${describe(r)}) is ${
          c === undefined ? "missing" : `replaced by ${describe(c)}`
        } in the final logs (${where})${this.#quorum ? "" : " and no loss report covers it"}`,
      );
    }
  }
}

function same(a: ModelEvent, b: ModelEvent): boolean {
  return a.eve === b.eve && a.mug === b.mug && sameBytes(a.job, b.job);
}

function describe(e: ModelEvent): string {
  const hex = [...e.job.subarray(0, 6)].map((b) => b.toString(16).padStart(2, "0")).join("");
  return `mug ${e.mug.toString(16)} job ${hex}${e.job.length > 6 ? "..." : ""}`;
}
