/**
 * `seguro ship export`: writes a ship's log and epoch snapshots from one node
 * of the cluster as a pier stock vere can boot.
 *
 * The pier is written in the ship's own layout (the one its import recorded;
 * docs/pier-formats.md), or the one asked for (`format`). Snapshots are never
 * converted: only images of the layout written are used, and a pier in
 * another layout replays from event 1. A log that starts after a chop
 * cannot, so such an export is refused naming the vere that boots what the
 * cluster holds.
 *
 * A chopped ship's pier starts at the epoch whose image its log starts after
 * (that epoch's `image.bin` and the events after it), so stock vere boots
 * from the image and replays only those events.
 *
 * The export is consistent: its last event is fixed when it starts (the
 * ship's last event on the node then, or the one asked for), whatever the
 * ship appends meanwhile. It is atomic: the pier is built in a hidden
 * temporary sibling of the directory asked for, then renamed into place and
 * the parent fsynced. After any failure, or an abort of `options.signal`
 * (the command aborts it on SIGINT and SIGTERM), nothing is left: neither
 * the directory nor the temporary one.
 *
 * @example
 * ```ts ignore
 * const result = await exportPier(target, ship, { dir: "./zod", vereVersion: "4.0" });
 * console.log(`events ${result.firstEve}-${result.lastEve} in ${result.seconds} s`);
 * ```
 * @module
 */

import { ClusterClient } from "../cluster/api.ts";
import type { ShipJson } from "../cluster/admin_protocol.ts";
import { renderShip } from "../vere/event.ts";
import { type EpochContent, LOG_VERSION, type PierEvent, writePier } from "../vere/pier.ts";
import {
  LAYOUT_VERE,
  type PierLayout,
  snapshotLayout,
  splitSnapshot,
} from "../vere/pier_layout.ts";
import { SHIP_LAYOUT_DEFAULT } from "../cluster/machine.ts";
import type { ImageInfo } from "../cluster/images.ts";
import { basename, dirname, join, resolve } from "node:path";
import { NodeError } from "./errors.ts";
import { type ClusterTarget, pierFailure, withNode } from "./pier_client.ts";
import { downloadImage } from "./pier_images.ts";

/** Events per `log` request during an export. */
const EXPORT_BATCH_EVENTS = 10_000;

/** How far an export has come. */
export type ExportProgress =
  /**
   * The export's events are fixed: `firstEve` to `lastEve`; `latest` when
   * `lastEve` is the ship's last event on the node now (no `eve` was asked for).
   */
  | { kind: "range"; firstEve: number; lastEve: number; latest: boolean }
  /** The failed export's temporary directory `path` could not be removed: the user must. */
  | { kind: "notRemoved"; path: string; reason: string };

/** Options of {@linkcode exportPier}. */
export interface ExportPierOptions {
  /** The pier directory to create: absent, or an empty directory. */
  dir: string;
  /**
   * Runtime version recorded in each epoch's `vere.txt`; default `"3.0"` for
   * epochs 1 and `"4.0"` for epochs 2 (log 1 has none).
   */
  vereVersion?: string;
  /** The layout to write; default the ship's own (epochs 2 when none was recorded). */
  format?: PierLayout;
  /**
   * Start at this epoch (its image and the events after it); default the
   * first: epoch 0, or for a chopped log the epoch whose image it starts after.
   */
  epoch?: number;
  /** End at this event; default the ship's last event on the node when the export starts. */
  eve?: number;
  /** Abandons the export: it removes what it wrote and rejects with the signal's reason. */
  signal?: AbortSignal;
  /** Told how the export goes. */
  progress?: (p: ExportProgress) => void;
}

/** What an export wrote. */
export interface ExportResult {
  /** Events written. */
  events: number;
  /** The first of them (when `events` is 0, one past `lastEve`). */
  firstEve: number;
  /** The last of them: the export's fixed point. */
  lastEve: number;
  /** The bases of the epochs written, ascending (`[0]` for log 1). */
  epochs: number[];
  /** The layout written. */
  layout: PierLayout;
  /** The epochs whose snapshot was written (for log 1: the event of its one snapshot). */
  snapshots: number[];
  /** Seconds the export took. */
  seconds: number;
}

/** What an export read from a node, ready for {@linkcode writePier}. */
interface ShipExport {
  info: ShipJson;
  /** The layout written. */
  layout: PierLayout;
  /** The epochs whose snapshot is written (for log 1: the event its one snapshot holds). */
  snapshots: number[];
  /** The export's last event: fixed when it starts, whatever the ship appends meanwhile. */
  eve: number;
  /** The epochs from the first exported one; their events end at `eve`. */
  epochs: EpochContent[];
}

/**
 * Checks that `dir` is absent or an empty directory, and creates the
 * directory the export is built in: a hidden sibling of `dir` (mode 0700,
 * with `.urb/`), so that the final rename is atomic. Returns its path.
 */
function makeExportDir(dir: string): string {
  const path = resolve(dir);
  let info: Deno.FileInfo | undefined;
  try {
    info = Deno.statSync(path);
  } catch (e) {
    if (!(e instanceof Deno.errors.NotFound)) throw e;
  }
  if (info !== undefined && (!info.isDirectory || [...Deno.readDirSync(path)].length > 0)) {
    throw new NodeError(
      `${dir} exists and is not an empty directory; export into a new or empty directory`,
    );
  }
  const parent = dirname(path);
  let tmp: string;
  try {
    tmp = Deno.makeTempDirSync({ dir: parent, prefix: `.${basename(path)}.seguro-export-` });
  } catch (e) {
    if (e instanceof Deno.errors.NotFound) {
      throw new NodeError(`the directory ${parent} does not exist; create it, or export elsewhere`);
    }
    throw new NodeError(`cannot create a directory in ${parent}: ${(e as Error).message}`);
  }
  try {
    Deno.chmodSync(tmp, 0o700); // a pier's first events hold the ship's keys
    Deno.mkdirSync(join(tmp, ".urb"), { mode: 0o700 });
  } catch (e) {
    removeTree(tmp);
    throw e;
  }
  return tmp;
}

/** Renames the finished export `tmp` to `dir` (absent or empty) and makes the rename durable. */
function moveIntoPlace(tmp: string, dir: string): void {
  try {
    Deno.renameSync(tmp, resolve(dir));
  } catch (e) {
    throw new NodeError(
      `cannot move the export into ${dir} (${
        (e as Error).message
      }); export into a new or empty directory`,
    );
  }
  const parent = Deno.openSync(dirname(resolve(dir)), { read: true });
  try {
    parent.syncSync();
  } finally {
    parent.close();
  }
}

/** Removes a directory tree; one already gone is fine. */
/** The emptied directory a split snapshot was in (its files were moved into the pier). */
function removeSnapshotDirs(tmp: string, base: number): void {
  try {
    Deno.removeSync(join(tmp, ".urb", `tmp-image-${base}.d`));
  } catch (e) {
    if (!(e instanceof Deno.errors.NotFound)) throw e;
  }
}

function removeTree(path: string): void {
  try {
    Deno.removeSync(path, { recursive: true });
  } catch (e) {
    if (!(e instanceof Deno.errors.NotFound)) throw e;
  }
}

/**
 * Settles as `work` does, or rejects with the signal's reason as soon as
 * `signal` aborts. `work` is then left running unobserved: the export is
 * about to fail, and the process to exit.
 */
function unlessAborted<T>(work: Promise<T>, signal: AbortSignal | undefined): Promise<T> {
  if (signal === undefined) return work;
  work.catch(() => {}); // a failure after the abort is of no interest
  return new Promise<T>((resolve, reject) => {
    const onAbort = () => reject(signal.reason);
    if (signal.aborted) return onAbort();
    signal.addEventListener("abort", onAbort, { once: true });
    work.then(resolve, reject).finally(() => signal.removeEventListener("abort", onAbort));
  });
}

/**
 * Reads what an export writes from the node `c`: the ship's record, its
 * complete images (downloaded into `tmp`/.urb) and its events up to the
 * export's last event, which is fixed here: `options.eve`, else the ship's
 * last event on the node now. Events the ship appends meanwhile are not read.
 */
async function fetchShip(
  c: ClusterClient,
  ship: bigint,
  tmp: string,
  options: ExportPierOptions,
): Promise<ShipExport> {
  const name = renderShip(ship);
  const ships = await c.ships.list();
  const info = ships.find((s) => s.ship === String(ship));
  if (info === undefined) {
    throw new NodeError(`${name} is not on this cluster; see 'seguro ship list'`);
  }
  const last = info.lastEve;
  if (options.eve !== undefined && options.eve > last) {
    throw new NodeError(
      last === 0
        ? `${name} has no events on this node; export it without --eve`
        : `--eve ${options.eve} is past ${name}'s last event on this node, ${last}; give --eve ${last} or less`,
    );
  }
  const eve = options.eve ?? last;
  const own = info.layout ?? SHIP_LAYOUT_DEFAULT;
  const layout = options.format ?? own;
  // A chopped log starts after the image of epoch `start`: the pier starts at that epoch,
  // whose snapshot stands for the events dropped, so vere boots from it.
  const start = (info.firstEve ?? 1) - 1;
  const images = await imagesOfLayout(
    c,
    ship,
    (info.images ?? []).filter((i) =>
      i.sha256 !== undefined && i.epoch <= last && i.epoch >= start
    ),
  );
  const complete = images.filter((i) => i.layout === layout);
  const chopped = start > 0
    ? ` (its events before ${start + 1} were chopped: its first epoch is ${start})`
    : "";
  if (start > 0 && !complete.some((i) => i.epoch === start)) {
    const held = images.find((i) => i.epoch === start);
    if (held === undefined) {
      throw new NodeError(
        `${name}'s log starts after epoch ${start}, but the node holds no complete image of it; run 'seguro log verify ${name}' and export from another node`,
      );
    }
    throw new NodeError(
      `${name}'s log starts after epoch ${start}, whose snapshot is ${held.layout}: only ${
        LAYOUT_VERE[held.layout]
      } boots it, and a ${layout} pier would need every event from 1; export with --format ${held.layout} and start it with ${
        LAYOUT_VERE[held.layout]
      }`,
    );
  }
  if (layout === "log1" && start > 0) {
    throw new NodeError(
      `a log-1 pier (${LAYOUT_VERE.log1}) holds every event from 1, and ${name}'s events before ${
        start + 1
      } were chopped; export it with --format ${own === "log1" ? "epochs1" : own}`,
    );
  }
  if (layout === "log1" && options.epoch !== undefined && options.epoch > 0) {
    throw new NodeError(
      `a log-1 pier (${LAYOUT_VERE.log1}) has no epochs; export without --epoch, or with --format epochs1`,
    );
  }
  let bases = layout === "log1"
    ? [0]
    : [...new Set([start, ...complete.map((i) => i.epoch)])].sort((a, b) => a - b);
  if (eve < start) {
    throw new NodeError(
      `--eve ${eve} is before ${name}'s first epoch${chopped}; give --eve ${start} or more`,
    );
  }
  if (options.epoch !== undefined) {
    const epoch = options.epoch;
    if (!bases.includes(epoch)) {
      throw new NodeError(
        `${name} has no epoch ${epoch}; its epochs start at ${bases.join(", ")}${chopped}`,
      );
    }
    if (eve < epoch) {
      throw new NodeError(
        `--eve ${eve} is before epoch ${epoch}, whose image is the state after event ${epoch}; give --eve ${epoch} or more, or an earlier --epoch`,
      );
    }
    bases = bases.filter((b) => b >= epoch);
  }
  bases = bases.filter((b) => b <= eve);
  const first = bases[0];
  options.progress?.({
    kind: "range",
    firstEve: first + 1,
    lastEve: eve,
    latest: options.eve === undefined,
  });
  const epochs: EpochContent[] = [];
  const snapshots: number[] = [];
  for (const base of bases) {
    // Log 1 keeps one snapshot, in .urb/chk: the newest up to the export's last event.
    const image = layout === "log1"
      ? complete.filter((i) => i.epoch <= eve).at(-1)
      : complete.find((i) => i.epoch === base);
    if (image !== undefined) snapshots.push(image.epoch);
    epochs.push({
      base,
      events: [],
      image: image === undefined ? undefined : await fetchSnapshot(c, ship, image, tmp),
    });
  }
  // The events are gathered first: the pier is written in one go, tmp -> fsync -> rename.
  const events: PierEvent[] = [];
  for (let from = first + 1; from <= eve;) {
    const want = Math.min(EXPORT_BATCH_EVENTS, eve - from + 1);
    const batch = await c.ships.events(ship, from, want);
    if (batch.length === 0) {
      throw new NodeError(
        `the node returned no event ${from} of ${name}; run 'seguro log verify ${name}' and retry`,
      );
    }
    for (const e of batch.slice(0, want)) {
      if (e.eve !== from) {
        throw new NodeError(`the node sent ${name}'s event ${e.eve} where ${from} belongs; retry`);
      }
      events.push(e); // its job is a view of the answer's frame, held until the pier is written
      from++;
    }
  }
  for (let i = 0; i < epochs.length; i++) {
    const end = epochs[i + 1]?.base ?? eve;
    epochs[i].events = events.slice(epochs[i].base - first, end - first);
  }
  return { info, layout, snapshots, eve, epochs };
}

/** An image the node holds, with the layout of its snapshot. */
interface LayoutImage extends ImageInfo {
  layout: PierLayout;
}

/** The layout of each image, read from its first chunk (a container's header, or not). */
async function imagesOfLayout(
  c: ClusterClient,
  ship: bigint,
  images: readonly ImageInfo[],
): Promise<LayoutImage[]> {
  const out: LayoutImage[] = [];
  for (const image of images) {
    const first = await c.ships.imageChunk(ship, image.epoch, 0);
    out.push({ ...image, layout: snapshotLayout(first, image.size) });
  }
  return out.sort((a, b) => a.epoch - b.epoch);
}

/**
 * Downloads an image into `tmp`/.urb, the same file system as the pier, so
 * that writePier moves it into place: an `image.bin`, or a container split
 * into its `north.bin` and `south.bin`.
 */
async function fetchSnapshot(
  c: ClusterClient,
  ship: bigint,
  image: LayoutImage,
  tmp: string,
): Promise<{ path: string } | { north: string; south: string }> {
  const path = join(tmp, ".urb", `tmp-image-${image.epoch}`);
  await downloadImage(c, ship, { image, path });
  if (image.layout === "epochs2") return { path };
  const dir = `${path}.d`;
  Deno.mkdirSync(dir, { mode: 0o700 });
  return splitSnapshot(path, dir);
}

/**
 * Exports `ship` from the node at `target` into the new pier `options.dir`.
 * Every failure leaves nothing behind; it is a NodeError (a pier or
 * directory the export cannot write names it), a client or API error as it
 * is, or the reason of `options.signal` when that aborted the export.
 */
export async function exportPier(
  target: ClusterTarget,
  ship: bigint,
  options: ExportPierOptions,
): Promise<ExportResult> {
  const { dir, signal } = options;
  const started = performance.now();
  try {
    const tmp = makeExportDir(dir);
    try {
      signal?.throwIfAborted(); // aborted already: no node is asked
      const got = await unlessAborted(
        withNode(target, (c) => fetchShip(c, ship, tmp, options)),
        signal,
      );
      signal?.throwIfAborted();
      writePier(tmp, {
        meta: { version: LOG_VERSION, who: ship, fake: got.info.fake, life: got.info.life },
        epochs: got.epochs,
        layout: got.layout,
        vereVersion: options.vereVersion ?? (got.layout === "epochs1" ? "3.0" : "4.0"),
      });
      for (const e of got.epochs) removeSnapshotDirs(tmp, e.base);
      // A signal that came during the (synchronous) write is dispatched on the next
      // turn of the event loop: take it before the rename, the point of no return.
      await new Promise((resolve) => setTimeout(resolve, 0));
      signal?.throwIfAborted();
      moveIntoPlace(tmp, dir);
      return {
        events: got.eve - got.epochs[0].base,
        firstEve: got.epochs[0].base + 1,
        lastEve: got.eve,
        epochs: got.epochs.map((e) => e.base),
        layout: got.layout,
        snapshots: got.snapshots,
        seconds: (performance.now() - started) / 1000,
      };
    } catch (e) {
      try {
        removeTree(tmp);
      } catch (removal) {
        options.progress?.({ kind: "notRemoved", path: tmp, reason: (removal as Error).message });
      }
      throw e;
    }
  } catch (e) {
    throw pierFailure(e, dir);
  }
}
