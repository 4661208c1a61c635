/**
 * `seguro ship attach`: follows a live pier as stock vere writes it and
 * replicates each new event through the cluster's leader, with the one pier
 * tail loop (server/pier_tail.ts), until `options.signal` aborts. The ship is
 * added first if the cluster lacks it.
 *
 * @example
 * ```ts ignore
 * const stop = new AbortController();
 * const result = await attachPier(target, ship, { pier: "./zod", pollMs: 5, signal: stop.signal });
 * console.log(`stopped at event ${result.committed}`);
 * ```
 * @module
 */

import { withLeader } from "../cluster/api.ts";
import { type ClusterTarget, pierFailure, shipPierMeta } from "./pier_client.ts";
import { PierTail, PierTailError, readLivePier, TAIL_DELAYS_KEPT } from "./pier_tail.ts";

/** How far an attach has come. */
export type AttachProgress =
  /** The tail starts: it reads the pier from event `from` (the cluster holds those before). */
  | { kind: "following"; from: number }
  /** Events `firstEve` to `lastEve` are committed on the cluster. */
  | { kind: "replicated"; firstEve: number; lastEve: number };

/** Options of {@linkcode attachPier}. */
export interface AttachPierOptions {
  /** The pier directory (read only; vere keeps writing it). */
  pier: string;
  /** How often to look for new events (ms). */
  pollMs: number;
  /** Stops the tail, after the batch in flight; {@linkcode attachPier} then resolves. */
  signal?: AbortSignal;
  /** Told how the attach goes. */
  progress?: (p: AttachProgress) => void;
}

/** What an attach did, once stopped. */
export interface AttachResult {
  /** The ship's last event committed by the tail (or held by the cluster before it). */
  committed: number;
  /** Batches the tail got committed. */
  batches: number;
  /** Median read-to-commit delay (ms) of the last `delayBatches` batches; none without one. */
  delayP50Ms?: number;
  /** 99th percentile read-to-commit delay (ms), likewise. */
  delayP99Ms?: number;
  /** The batches the delays are over: all of them, or the last {@linkcode TAIL_DELAYS_KEPT}. */
  delayBatches: number;
}

/**
 * Attaches to the live pier `options.pier` of `ship` and replicates its new
 * events to the cluster at `target` until `options.signal` aborts. Another
 * ship's pier, or one that cannot be read, is a NodeError naming it; a batch
 * the cluster refuses (a divergent event) stops it with that client or API
 * error.
 */
export async function attachPier(
  target: ClusterTarget,
  ship: bigint,
  options: AttachPierOptions,
): Promise<AttachResult> {
  const { pier, signal } = options;
  try {
    const meta = shipPierMeta(ship, pier);
    return await withLeader(target.address, target.credentials, async (client) => {
      const ships = await client.ships.list();
      let last = ships.find((s) => s.ship === String(ship))?.lastEve;
      if (last === undefined) {
        await client.ships.add(ship, { fake: meta.fake, life: meta.life });
        last = 0;
      }
      options.progress?.({ kind: "following", from: last + 1 });
      const tail = new PierTail({
        after: last,
        read: readLivePier(pier),
        // A divergent event (same eve, other bytes) is refused by the cluster: the
        // request fails and the tail stops with that error, never silently.
        propose: (firstEve, events) =>
          client.ships.write({ kind: "events", ship, firstEve, events }),
        pollMs: options.pollMs,
        onBatch: (b) =>
          options.progress?.({ kind: "replicated", firstEve: b.firstEve, lastEve: b.lastEve }),
      });
      const stop = () => void tail.stop();
      if (signal?.aborted) stop();
      signal?.addEventListener("abort", stop, { once: true });
      try {
        await tail.run();
      } catch (e) {
        throw e instanceof PierTailError ? e.cause : e;
      } finally {
        signal?.removeEventListener("abort", stop);
      }
      return {
        committed: tail.committed,
        batches: tail.batches,
        delayP50Ms: tail.delayQuantile(0.5),
        delayP99Ms: tail.delayQuantile(0.99),
        delayBatches: Math.min(tail.batches, TAIL_DELAYS_KEPT),
      };
    });
  } catch (e) {
    throw pierFailure(e, pier);
  }
}
