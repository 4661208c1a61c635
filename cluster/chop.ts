/**
 * Planning a chop (`seguro ship chop`): which epoch a ship's log can start
 * after, what that drops, and the leader's check of the epoch image before
 * it proposes the `chop` command (cluster/machine.ts applies it).
 *
 * A ship's log has epochs as vere's has: its start (epoch 0, or the epoch a
 * chop started it after) and every complete image after it, up to its last
 * event. Keeping N epochs starts the log after the N-th newest of them; the
 * state machine then deletes the events up to that epoch's base on every
 * node, for good: only the image stands for them.
 *
 * Everything slow here yields to the event loop between steps of at most
 * {@linkcode CHOP_STEP_BYTES} (an image may be gigabytes, a log more), so a
 * leader that plans or checks a chop keeps serving.
 * @module
 */

import { createHash } from "node:crypto";
import { setImmediate } from "node:timers";
import type { ChopPlan } from "./admin_protocol.ts";
import type { ImageInfo, ImageReader } from "./images.ts";
import type { ShipInfo, ShipReader } from "./ships.ts";

/** Bytes read between two yields to the event loop while planning or checking a chop. */
export const CHOP_STEP_BYTES = 4 * 1024 * 1024;

/** Largest number of epochs `keepEpochs` may ask for. */
export const KEEP_EPOCHS_MAX = 1_000_000;

/** Formats a ship for messages. */
type ShipName = (ship: bigint) => string;

/** Where a chop would start the log: the epoch, and the epochs that stay. */
export interface ChopTarget {
  /** The epoch whose image the log starts after (the last event dropped). */
  epoch: number;
  /** Every epoch the log keeps, ascending: `epoch` and the newer complete images. */
  keptEpochs: number[];
}

/**
 * The epoch a chop of `info` keeping `keepEpochs` epochs starts the log
 * after, or a sentence saying why there is nothing to chop. `images` are the
 * ship's images (complete ones have a sha256); only complete images between
 * the log's start and its last event count.
 */
export function chopTarget(
  info: Pick<ShipInfo, "ship" | "firstEve" | "lastEve">,
  images: readonly ImageInfo[],
  keepEpochs: number,
  name: ShipName,
): ChopTarget | string {
  if (!Number.isSafeInteger(keepEpochs) || keepEpochs < 1 || keepEpochs > KEEP_EPOCHS_MAX) {
    return `--keep-epochs must be a whole number from 1 to ${KEEP_EPOCHS_MAX} (got ${keepEpochs})`;
  }
  const start = info.firstEve - 1;
  const complete = images.filter((i) =>
    i.sha256 !== undefined && i.epoch > start && i.epoch <= info.lastEve
  ).map((i) => i.epoch);
  // Newest first: the log's epochs are its start and each complete image after it.
  const epochs = [...new Set([start, ...complete])].sort((a, b) => b - a);
  if (epochs.length === 1) {
    return start === 0
      ? `${
        name(info.ship)
      } has no complete epoch image on the cluster, so no event can be dropped; import its pier with its image.bin ('seguro ship import') first`
      : `${
        name(info.ship)
      }'s log starts at event ${info.firstEve}, after epoch ${start}'s image, and no newer complete image exists; nothing to drop`;
  }
  if (keepEpochs >= epochs.length) {
    const list = [...epochs].reverse().map((e) => `0i${e}`).join(", ");
    return `${
      name(info.ship)
    }'s log has ${epochs.length} epochs (${list}); keeping ${keepEpochs} drops nothing`;
  }
  const epoch = epochs[keepEpochs - 1];
  return { epoch, keptEpochs: epochs.slice(0, keepEpochs).reverse() };
}

/** Resolves on the next turn of the event loop, after pending I/O. */
function turn(): Promise<void> {
  return new Promise((resolve) => setImmediate(resolve));
}

/**
 * Bytes of jam of `ship`'s events `from`..`to`, read in steps of about
 * {@linkcode CHOP_STEP_BYTES} with a yield between them.
 */
export async function eventBytes(
  ships: ShipReader,
  ship: bigint,
  from: number,
  to: number,
): Promise<number> {
  let bytes = 0;
  for (let next = from; next <= to;) {
    const batch = ships.events(ship, next, to - next + 1, CHOP_STEP_BYTES);
    if (batch.length === 0 || batch[0].eve !== next) break;
    for (const e of batch) bytes += e.job.length;
    next = batch[batch.length - 1].eve + 1;
    await turn();
  }
  return bytes;
}

/**
 * The plan of a chop of `ship` keeping `keepEpochs` epochs, from the state
 * `ships` and `images` hold now, or a sentence saying why there is none.
 */
export async function planChop(
  ships: ShipReader,
  images: ImageReader,
  ship: bigint,
  keepEpochs: number,
  name: ShipName,
): Promise<ChopPlan | string> {
  const info = ships.get(ship);
  if (info === undefined) {
    return `${name(ship)} is not on this cluster; see 'seguro ship list'`;
  }
  const list = images.list(ship);
  const target = chopTarget(info, list, keepEpochs, name);
  if (typeof target === "string") return target;
  const bytes = await eventBytes(ships, ship, info.firstEve, target.epoch);
  return {
    ship: String(ship),
    fromEve: info.firstEve,
    toEve: target.epoch,
    firstEve: target.epoch + 1,
    epoch: target.epoch,
    bytes,
    imageBytes: list.filter((i) => i.epoch < target.epoch).reduce((n, i) => n + i.size, 0),
    lastEve: info.lastEve,
    keptEpochs: target.keptEpochs,
    chopped: false,
  };
}

/**
 * Checks the image of `ship`'s epoch `epoch` as this node stores it: complete,
 * and the SHA-256 over its chunks, read one at a time with a yield after
 * each {@linkcode CHOP_STEP_BYTES}, equal to the one recorded when it
 * completed. Returns undefined when sound, else the problem.
 */
export async function checkImage(
  images: ImageReader,
  ship: bigint,
  epoch: number,
  name: ShipName,
): Promise<string | undefined> {
  const image = images.get(ship, epoch);
  if (image?.sha256 === undefined) {
    return `${name(ship)} has no complete image of epoch ${epoch} on this node`;
  }
  const hash = createHash("sha256");
  let offset = 0;
  let sinceTurn = 0;
  while (offset < image.size) {
    const data = images.chunk(ship, epoch, offset);
    if (data === undefined || data.length === 0) {
      return `${
        name(ship)
      }'s image of epoch ${epoch} has no chunk at offset ${offset} of ${image.size} on this node; import the epoch's image.bin again`;
    }
    hash.update(data);
    offset += data.length;
    sinceTurn += data.length;
    if (sinceTurn >= CHOP_STEP_BYTES) {
      sinceTurn = 0;
      await turn();
    }
  }
  const digest = hash.digest("hex");
  if (offset !== image.size || digest !== image.sha256) {
    return `${name(ship)}'s image of epoch ${epoch} does not match its SHA-256 on this node (${
      digest.slice(0, 16)
    }..., recorded ${
      image.sha256.slice(0, 16)
    }...); nothing was dropped: import the epoch's image.bin again, or chop at an older epoch`;
  }
  return undefined;
}
