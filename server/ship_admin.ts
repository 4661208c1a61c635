/**
 * `seguro ship add`: adds a ship to the cluster and, for a fake ship booted
 * from a pill, builds its boot sequence (vere/event.ts) and plans it as the
 * ship's first events, in batches, through the leader.
 *
 * @example
 * ```ts ignore
 * const r = await addShip(target, 0n, { fake: true, pill: { noun, name: "brass.pill" } });
 * console.log(`${r.events} boot events, life ${r.life}`);
 * ```
 * @module
 */

import { withLeader } from "../cluster/api.ts";
import type { PlannedEvent } from "../cluster/machine.ts";
import { bootSequence, daFromMillis, parsePill } from "../vere/event.ts";
import { jam, type Noun, NounError } from "../vere/noun.ts";
import { NodeError } from "./errors.ts";
import type { ClusterTarget } from "./pier_client.ts";

/** Bytes of jobs per `events` request: big enough to batch, small enough for one frame. */
export const PLAN_BATCH_BYTES_MAX = 4 * 1024 * 1024;

/** How far the planning of a boot sequence has come: `events` of `total` are planned. */
export interface AddShipProgress {
  /** Events planned so far. */
  events: number;
  /** Events of the boot sequence. */
  total: number;
  /** Bytes of the jobs planned so far. */
  bytes: number;
  /** Bytes of every job of the boot sequence. */
  totalBytes: number;
}

/** Options of {@linkcode addShip}. */
export interface AddShipOptions {
  /** A fake ship (no network identity). */
  fake: boolean;
  /** Boot the (fake) ship from this pill: its noun, and its name for errors (the file). */
  pill?: { noun: Noun; name: string };
  /** Boot time in Unix ms (default: now). */
  bootMillis?: number;
  /** 64 bytes of boot entropy (default: random). */
  entropy?: Uint8Array;
  /** Told after each batch of boot events is planned. */
  progress?: (p: AddShipProgress) => void;
}

/** What {@linkcode addShip} did. */
export interface AddShipResult {
  /** Boot events planned (0 without a pill). */
  events: number;
  /** The ship's life: boot formulas before its first ovum (0 without a pill). */
  life: number;
}

/**
 * Splits `events` into consecutive batches of at most `bytesMax` bytes of
 * jobs; a job bigger than that is a batch alone.
 */
export function planBatches(events: PlannedEvent[], bytesMax: number): PlannedEvent[][] {
  const batches: PlannedEvent[][] = [];
  let batch: PlannedEvent[] = [];
  let size = 0;
  for (const e of events) {
    if (batch.length > 0 && size + e.job.length > bytesMax) {
      batches.push(batch);
      batch = [];
      size = 0;
    }
    batch.push(e);
    size += e.job.length;
  }
  if (batch.length > 0) batches.push(batch);
  return batches;
}

/**
 * Adds `ship` to the cluster at `target`; with `options.pill`, plans the
 * fake ship's boot sequence as its first events. A pill that cannot boot a
 * ship is a NodeError naming it, before anything reaches the cluster.
 */
export async function addShip(
  target: ClusterTarget,
  ship: bigint,
  options: AddShipOptions,
): Promise<AddShipResult> {
  let events: PlannedEvent[] = [];
  let life = 0;
  if (options.pill !== undefined) {
    const { noun, name } = options.pill;
    try {
      const seq = bootSequence(parsePill(noun), {
        ship,
        bootTime: daFromMillis(options.bootMillis ?? Date.now()),
        entropy: options.entropy ?? crypto.getRandomValues(new Uint8Array(64)),
      });
      life = seq.life;
      events = seq.events.map((job) => ({ mug: 0, job: jam(job) }));
    } catch (e) {
      if (e instanceof NounError) throw new NodeError(`${name} is not a usable pill: ${e.message}`);
      throw e;
    }
  }
  await withLeader(
    target.address,
    target.credentials,
    (c) => c.ships.add(ship, { fake: options.fake, life }),
  );
  if (events.length > 0) await planEvents(target, ship, events, options.progress);
  return { events: events.length, life };
}

/** Writes `events` as the ship's first events through the leader, in batches. */
async function planEvents(
  target: ClusterTarget,
  ship: bigint,
  events: PlannedEvent[],
  progress: ((p: AddShipProgress) => void) | undefined,
): Promise<void> {
  const totalBytes = events.reduce((n, e) => n + e.job.length, 0);
  let sent = 0;
  let bytes = 0;
  await withLeader(target.address, target.credentials, async (client) => {
    for (const batch of planBatches(events.slice(sent), PLAN_BATCH_BYTES_MAX)) {
      await client.ships.write({ kind: "events", ship, firstEve: sent + 1, events: batch });
      sent += batch.length;
      bytes += batch.reduce((n, e) => n + e.job.length, 0);
      progress?.({ events: sent, total: events.length, bytes, totalBytes });
    }
  });
}
