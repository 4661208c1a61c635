/**
 * `seguro ship import`: appends a stock vere pier's event log to the cluster,
 * after the events the cluster holds of the ship already (so an import that
 * stopped resumes), then sends the pier's epoch snapshots
 * (server/pier_images.ts). The ship is added first if the cluster lacks it.
 *
 * @example
 * ```ts ignore
 * const result = await importPier(target, ship, {
 *   pier: "./zod",
 *   progress: (p) => console.error(p),
 * });
 * console.log(`${result.events} events imported; the ship has ${result.lastEve}`);
 * ```
 * @module
 */

import { withLeader } from "../cluster/api.ts";
import type { PlannedEvent } from "../cluster/machine.ts";
import { isPierLocked, listEpochs, readEvents } from "../vere/pier.ts";
import { NodeError } from "./errors.ts";
import { type ClusterTarget, pierFailure, shipPierMeta } from "./pier_client.ts";
import { type ImageProgress, importImages } from "./pier_images.ts";

/** Bytes of jobs per `events` request during an import. */
const IMPORT_BATCH_BYTES = 4 * 1024 * 1024;
/** `events` requests an import keeps in flight. */
const IMPORT_IN_FLIGHT = 2;
/** How often an import reports its events, at most. */
const IMPORT_PROGRESS_MS = 1000;

/** How far an import has come. */
export type ImportProgress =
  /** The cluster lacked the ship: it was added, with the pier's META. */
  | { kind: "added"; fake: boolean; life: number }
  /** The cluster holds `lastEve` events of the ship already: the import appends after them. */
  | { kind: "resuming"; lastEve: number }
  /** About once a second: `events` events, `bytes` bytes of jobs committed in `seconds`. */
  | { kind: "events"; events: number; bytes: number; seconds: number }
  | ImageProgress;

/** Options of {@linkcode importPier}. */
export interface ImportPierOptions {
  /** The pier directory. */
  pier: string;
  /** Read the pier although a running urbit holds its lock. */
  live?: boolean;
  /** Told how the import goes. */
  progress?: (p: ImportProgress) => void;
}

/** What an import did. */
export interface ImportResult {
  /** Events appended by this import. */
  events: number;
  /** Bytes of their jobs. */
  bytes: number;
  /** Seconds the events took (the images not counted). */
  seconds: number;
  /** The ship's last event on the cluster now. */
  lastEve: number;
  /** Bytes of images sent. */
  imageBytes: number;
}

/**
 * Imports the pier `options.pier` of `ship` into the cluster at `target`
 * (through its leader): its events after those the cluster holds, then its
 * images. A pier in use (unless `options.live`), another ship's pier, or a
 * pier that cannot be read is a NodeError naming it; client and API errors
 * are thrown as they are.
 */
export async function importPier(
  target: ClusterTarget,
  ship: bigint,
  options: ImportPierOptions,
): Promise<ImportResult> {
  const { pier } = options;
  const progress = options.progress ?? (() => {});
  try {
    if (isPierLocked(pier) && !options.live) {
      throw new NodeError(
        `${pier} is in use by a running urbit (.vere.lock); stop it first, or pass --live`,
      );
    }
    const meta = shipPierMeta(ship, pier);
    return await withLeader(target.address, target.credentials, async (client) => {
      const ships = await client.ships.list();
      let info = ships.find((s) => s.ship === String(ship));
      if (info === undefined) {
        info = await client.ships.add(ship, { fake: meta.fake, life: meta.life });
        progress({ kind: "added", fake: meta.fake, life: meta.life });
      } else if (info.lastEve > 0) {
        progress({ kind: "resuming", lastEve: info.lastEve });
      }
      const started = performance.now();
      let sent = 0;
      let bytes = 0;
      let batch: PlannedEvent[] = [];
      let batchFirst = info.lastEve + 1;
      let batchBytes = 0;
      let lastShown = 0;
      // Two requests in flight: the next batch is read from the pier while the
      // previous one commits. One connection keeps them in order; a refusal of
      // one fails the next with a gap, and the import stops with the first error.
      const inFlight: Promise<void>[] = [];
      const flush = async () => {
        if (batch.length === 0) return;
        const n = batch.length;
        const size = batchBytes;
        const request = client.ships.write({
          kind: "events",
          ship,
          firstEve: batchFirst,
          events: batch,
        }).then(() => {
          sent += n;
          bytes += size;
          if (performance.now() - lastShown > IMPORT_PROGRESS_MS) {
            lastShown = performance.now();
            const seconds = (performance.now() - started) / 1000;
            progress({ kind: "events", events: sent, bytes, seconds });
          }
        });
        request.catch(() => {}); // awaited below; this only marks a later failure as handled
        batchFirst += n;
        batch = [];
        batchBytes = 0;
        inFlight.push(request);
        if (inFlight.length >= IMPORT_IN_FLIGHT) await inFlight.shift();
      };
      for (const e of readEvents(pier, { from: info.lastEve + 1 })) {
        batch.push({ mug: e.mug, job: e.job });
        batchBytes += e.job.length;
        if (batchBytes >= IMPORT_BATCH_BYTES) await flush();
      }
      await flush();
      await Promise.all(inFlight);
      const seconds = (performance.now() - started) / 1000;
      const imageBytes = await importImages(client, ship, {
        epochs: listEpochs(pier),
        held: info.images ?? [],
        progress,
      });
      return { events: sent, bytes, seconds, lastEve: info.lastEve + sent, imageBytes };
    });
  } catch (e) {
    throw pierFailure(e, pier);
  }
}
