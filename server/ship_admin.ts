/**
 * `seguro ship add`: adds a ship to the cluster and, for a fake ship booted
 * from a pill, builds its boot sequence (vere/event.ts) and plans it as the
 * ship's first events, in batches, through the leader. `seguro ship chop`:
 * plans, then applies, the truncation of a ship's log to its newest epochs
 * (cluster/chop.ts; the leader checks the epoch's image before it proposes).
 *
 * @example
 * ```ts ignore
 * const r = await addShip(target, 0n, { fake: true, pill: { noun, name: "brass.pill" } });
 * console.log(`${r.events} boot events, life ${r.life}`);
 * ```
 * @module
 */

import { withLeader } from "../cluster/api.ts";
import type { ChopPlan } from "../cluster/admin_protocol.ts";
import type { PlannedEvent } from "../cluster/machine.ts";
import { bootSequence, daFromMillis, parsePill, renderShip } from "../vere/event.ts";
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

/** Options of {@linkcode chopShip}. */
export interface ChopShipOptions {
  /** Epochs (complete images) the log keeps; default 1: only the newest epoch's events stay. */
  keepEpochs?: number;
  /** Check the image and chop; without it, only the plan is answered and nothing changes. */
  confirm?: boolean;
  /** With `confirm`: refuse unless the log would start at this event (the plan agreed to). */
  firstEve?: number;
}

/**
 * Plans a chop of `ship`'s log on the cluster's leader, and with
 * `options.confirm` applies it: the leader checks the SHA-256 of the image
 * the log then starts after, and every node drops the events before it for
 * good. Resolves with the plan (`chopped` once applied); a ship the cluster
 * lacks, or nothing to drop, is the leader's refusal (an ApiError).
 */
export async function chopShip(
  target: ClusterTarget,
  ship: bigint,
  options: ChopShipOptions = {},
): Promise<ChopPlan> {
  return await withLeader(
    target.address,
    target.credentials,
    (c) =>
      c.ships.chop(ship, {
        keepEpochs: options.keepEpochs ?? 1,
        confirm: options.confirm === true,
        firstEve: options.firstEve,
      }),
  );
}

/** A size for people: bytes below 0.1 MB, else megabytes (10^6), one decimal below 10 MB. */
function size(bytes: number): string {
  if (bytes < 100_000) return `${bytes.toLocaleString("en-US")} bytes`;
  const mb = bytes / 1e6;
  return `${mb < 10 ? mb.toFixed(1) : Math.round(mb).toLocaleString("en-US")} MB`;
}

/**
 * What a chop drops, as a clause: `drops events 1-4,000 of ~zod (3.9 MB);
 * the log will start at event 4,001 after epoch 4,000's image` (planned), or
 * `dropped ...; the log starts at ...` (done).
 */
export function describeChop(plan: ChopPlan): string {
  const n = (x: number) => x.toLocaleString("en-US");
  const name = renderShip(BigInt(plan.ship));
  const images = plan.imageBytes > 0
    ? ` and the images of older epochs (${size(plan.imageBytes)})`
    : "";
  const range = plan.fromEve === plan.toEve
    ? `event ${n(plan.fromEve)}`
    : `events ${n(plan.fromEve)}-${n(plan.toEve)}`;
  const dropped = `${range} of ${name} (${size(plan.bytes)})${images}`;
  const after = `event ${n(plan.firstEve)} after epoch ${n(plan.epoch)}'s image`;
  return plan.chopped
    ? `dropped ${dropped}; the log starts at ${after}`
    : `drops ${dropped}; the log will start at ${after}`;
}
