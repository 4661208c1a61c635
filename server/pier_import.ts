/**
 * `seguro ship import`: appends a stock vere pier's event log to the cluster,
 * after the events the cluster holds of the ship already (so an import that
 * stopped resumes), then sends the pier's epoch snapshots
 * (server/pier_images.ts). The ship is added first if the cluster lacks it.
 *
 * An import rides out leader changes and lost connections by itself
 * (server/leader_retry.ts): it reconnects to the leader, re-reads what the
 * cluster holds and goes on from there. Writing an event the cluster holds
 * already, with the same mug and bytes, is a no-op, so a write whose answer
 * was lost is simply sent again.
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

import { ClusterClient, type ShipClient } from "../cluster/api.ts";
import { ApiError, type ShipJson, Status } from "../cluster/admin_protocol.ts";
import type { PlannedEvent } from "../cluster/machine.ts";
import { renderShip } from "../vere/event.ts";
import { isPierLocked, type PierMeta, readEvents } from "../vere/pier.ts";
import { detectLayout, LAYOUT_VERE, type PierLayout, pierSnapshots } from "../vere/pier_layout.ts";
import { NodeError } from "./errors.ts";
import {
  type Retry,
  type RetryClient,
  type RetryClock,
  type RetryLimits,
  retryReason,
  retryThroughLeader,
  StalledError,
} from "./leader_retry.ts";
import { type ClusterTarget, pierFailure, shipPierMeta } from "./pier_client.ts";
import { type ImageProgress, importImages } from "./pier_images.ts";

/**
 * Bytes of jobs per `events` request during an import: one log entry each,
 * so small enough that writing and applying one keeps the nodes' event loops
 * free for heartbeats (a 4 MiB entry held a leader's loop for about 200 ms).
 */
export const IMPORT_BATCH_BYTES = 512 * 1024;
/** `events` requests an import keeps in flight. */
export const IMPORT_IN_FLIGHT = 2;
/** How often an import reports its events, at most. */
const IMPORT_PROGRESS_MS = 1000;

/** How far an import has come. */
export type ImportProgress =
  /** The cluster lacked the ship: it was added, with the pier's META. */
  | { kind: "added"; fake: boolean; life: number }
  /** The cluster now records the ship's pier layout as this pier's. */
  | { kind: "layout"; layout: PierLayout }
  /** The cluster holds `lastEve` events of the ship already: the import appends after them. */
  | { kind: "resuming"; lastEve: number }
  /** About once a second: `events` events, `bytes` bytes of jobs committed in `seconds`. */
  | { kind: "events"; events: number; bytes: number; seconds: number }
  /**
   * A run failed in a way that passes (`retry` says how): after `retry.delayMs`
   * the import goes on from event `fromEve`, or with the images once `images`.
   */
  | { kind: "retrying"; retry: Retry; fromEve: number; images: boolean }
  | ImageProgress;

/** What an import needs of a connection to the leader (ClusterClient has it). */
export interface ImportClient extends RetryClient {
  /** The ship operations: list, add, layout and write. */
  readonly ships: Pick<ShipClient, "list" | "add" | "write" | "layout">;
}

/** Options of {@linkcode importPier}. */
export interface ImportPierOptions {
  /** The pier directory. */
  pier: string;
  /** Read the pier although a running urbit holds its lock. */
  live?: boolean;
  /** Told how the import goes. */
  progress?: (p: ImportProgress) => void;
  /** Retry limits other than RETRY_LIMITS (server/leader_retry.ts); `stallMs` 0 never retries. */
  retry?: Partial<RetryLimits>;
  /** Connects to a member; by default a ClusterClient with the target's credentials. */
  connect?: (address: string, answerTimeoutMs: number) => Promise<ImportClient>;
  /** Time for the waits between runs; the real clock by default. */
  clock?: RetryClock;
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
 * images. Leader changes, lost connections and silent nodes are retried
 * (`options.retry`); an import that makes no progress for `stallMs` is a
 * NodeError saying so. A pier in use (unless `options.live`), another ship's
 * pier, or a pier that cannot be read is a NodeError naming it; a refusal
 * (another event at the same number) and other client errors are thrown as
 * they are.
 */
export async function importPier(
  target: ClusterTarget,
  ship: bigint,
  options: ImportPierOptions,
): Promise<ImportResult> {
  const { pier } = options;
  const progress = options.progress ?? (() => {});
  if (isPierLocked(pier) && !options.live) {
    throw new NodeError(
      `${pier} is in use by a running urbit (.vere.lock); stop it first, or pass --live`,
    );
  }
  const meta = shipPierMeta(ship, pier);
  let layout: PierLayout;
  try {
    layout = detectLayout(pier);
  } catch (e) {
    throw pierFailure(e, pier);
  }
  const run = new ImportRun(ship, pier, meta, layout, progress);
  const connect = options.connect ??
    ((address: string, answerTimeoutMs: number) =>
      ClusterClient.connect(address, target.credentials, { answerTimeoutMs }));
  try {
    return await retryThroughLeader(
      target.address,
      (client, progressed) => run.attempt(client, progressed),
      {
        connect,
        limits: options.retry,
        clock: options.clock,
        retrying: (retry) =>
          progress({ kind: "retrying", retry, fromEve: run.known + 1, images: run.eventsDone }),
      },
    );
  } catch (e) {
    if (e instanceof StalledError) {
      throw new NodeError(
        `the import of ${renderShip(ship)} made no progress for ${
          (e.stalledMs / 1000).toFixed(0)
        } s (${retryReason(e.last)}); check that most voters are up with 'seguro status', ` +
          `then run the same command again: it resumes after the last event the cluster holds${
            run.known > 0 ? ` (${run.known} or later)` : ""
          }`,
      );
    }
    throw pierFailure(e, pier);
  }
}

/**
 * One import across its runs: what the cluster is known to hold, and the
 * counts. Each run re-reads the ship and goes on after the higher of what it
 * read and what a write confirmed (a new leader may not have applied all it
 * holds yet; entries apply in order, so nothing is skipped).
 */
class ImportRun {
  /** The highest event the cluster is known to hold. */
  known = 0;
  /** Every event of the pier is held: only the images are left. */
  eventsDone = false;
  readonly #ship: bigint;
  readonly #pier: string;
  readonly #meta: PierMeta;
  readonly #layout: PierLayout;
  readonly #progress: (p: ImportProgress) => void;
  /** The ship's last event when the import began; undefined until the first run read it. */
  #startEve: number | undefined;
  /** Bytes of the jobs of events `#startEve + 1` to `known`. */
  #bytes = 0;
  /** For each batch sent and not yet known held: its last event, and #bytes once it is. */
  readonly #batchEnds = new Map<number, number>();
  #imageBytes = 0;
  #started = 0;
  #shown = 0;
  #seconds = 0;

  constructor(
    ship: bigint,
    pier: string,
    meta: PierMeta,
    layout: PierLayout,
    progress: (p: ImportProgress) => void,
  ) {
    this.#ship = ship;
    this.#pier = pier;
    this.#meta = meta;
    this.#layout = layout;
    this.#progress = progress;
  }

  /** One run over `client`, a connection to the leader. */
  async attempt(client: ImportClient, progressed: () => void): Promise<ImportResult> {
    let info = await this.#shipInfo(client);
    if (info.layout !== this.#layout) {
      info = await client.ships.layout(this.#ship, this.#layout);
      if (info.layout !== this.#layout) {
        throw new NodeError(
          `${renderShip(this.#ship)} is on the cluster as a ${info.layout} pier (${
            LAYOUT_VERE[info.layout!]
          }), newer than this ${this.#layout} one (${
            LAYOUT_VERE[this.#layout]
          }); import the pier its newer vere wrote`,
        );
      }
      this.#progress({ kind: "layout", layout: this.#layout });
    }
    if (this.#startEve === undefined) {
      this.#startEve = this.known = info.lastEve;
      if (info.lastEve > 0) this.#progress({ kind: "resuming", lastEve: info.lastEve });
      this.#started = performance.now();
    }
    // Held beyond what a write confirmed: writes whose answers were lost. That is progress.
    if (this.#held(info.lastEve)) progressed();
    if (!this.eventsDone) {
      await this.#sendEvents(client, progressed);
      this.eventsDone = true;
      this.#seconds = (performance.now() - this.#started) / 1000;
    }
    await importImages(client, this.#ship, {
      // Epochs before a chop's are gone from the cluster on purpose: not sent again.
      snapshots: pierSnapshots(this.#pier, this.#layout).filter((s) =>
        s.epoch >= (info.firstEve ?? 1) - 1 && s.epoch <= this.known
      ),
      held: info.images ?? [],
      progress: (p) => {
        if (p.kind === "imageStored") progressed();
        this.#progress(p);
      },
      stored: (bytes) => {
        this.#imageBytes += bytes;
        progressed();
      },
    });
    return {
      events: this.known - this.#startEve,
      bytes: this.#bytes,
      seconds: this.#seconds,
      lastEve: this.known,
      imageBytes: this.#imageBytes,
    };
  }

  /** The ship as the leader has it, added (with the pier's META) if it lacks it. */
  async #shipInfo(client: ImportClient): Promise<ShipJson> {
    const find = async () => (await client.ships.list()).find((s) => s.ship === String(this.#ship));
    const info = await find();
    if (info !== undefined) return info;
    const { fake, life } = this.#meta;
    try {
      const added = await client.ships.add(this.#ship, { fake, life });
      this.#progress({ kind: "added", fake, life });
      return added;
    } catch (e) {
      // An earlier run's add, whose answer a leader change lost, is applied by the time
      // this one is refused: the ship is there now.
      if (!(e instanceof ApiError) || e.status !== Status.error) throw e;
      const again = await find();
      if (again === undefined) throw e;
      return again;
    }
  }

  /** Records that the cluster holds the ship's events up to `eve`; false if that was known. */
  #held(eve: number): boolean {
    if (eve <= this.known) return false;
    // Undefined only for events this import did not send (another writer's): not counted.
    this.#bytes = this.#batchEnds.get(eve) ?? this.#bytes;
    this.known = eve;
    for (const end of this.#batchEnds.keys()) if (end <= eve) this.#batchEnds.delete(end);
    return true;
  }

  /** Sends the pier's events after `known`, {@linkcode IMPORT_IN_FLIGHT} batches in flight. */
  async #sendEvents(client: ImportClient, progressed: () => void): Promise<void> {
    let batch: PlannedEvent[] = [];
    let batchFirst = this.known + 1;
    let batchBytes = 0;
    let bytes = this.#bytes;
    // Several requests in flight: the next batch is read from the pier while the
    // previous ones commit. One connection keeps them in order; a refusal of
    // one fails the next with a gap, and the run stops with the first error.
    const inFlight: Promise<void>[] = [];
    const flush = async () => {
      if (batch.length === 0) return;
      const last = batchFirst + batch.length - 1;
      this.#batchEnds.set(last, bytes);
      const request = client.ships.write({
        kind: "events",
        ship: this.#ship,
        firstEve: batchFirst,
        events: batch,
      }).then(() => {
        this.#held(last);
        progressed();
        this.#report();
      });
      request.catch(() => {}); // awaited below; this only marks a later failure as handled
      batchFirst = last + 1;
      batch = [];
      batchBytes = 0;
      inFlight.push(request);
      if (inFlight.length >= IMPORT_IN_FLIGHT) await inFlight.shift();
    };
    for (const e of readEvents(this.#pier, { from: this.known + 1 })) {
      batch.push({ mug: e.mug, job: e.job });
      batchBytes += e.job.length;
      bytes += e.job.length;
      if (batchBytes >= IMPORT_BATCH_BYTES) await flush();
    }
    await flush();
    // In order: the failure reported is the first batch's, not a gap it caused.
    for (const request of inFlight) await request;
  }

  /** Reports the events, at most once a second. */
  #report(): void {
    if (performance.now() - this.#shown <= IMPORT_PROGRESS_MS) return;
    this.#shown = performance.now();
    this.#progress({
      kind: "events",
      events: this.known - this.#startEve!,
      bytes: this.#bytes,
      seconds: (performance.now() - this.#started) / 1000,
    });
  }
}
