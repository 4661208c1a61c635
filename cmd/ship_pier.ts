/**
 * The pier side of `seguro ship`: `import` and `export` move a stock vere
 * pier's event log onto the cluster and back out as a pier; `attach` follows
 * a live pier (server/pier_tail.ts); `run` marks a ship for exec mode.
 * @module
 */

import type { CommandUnknownOpts } from "@commander-js/extra-typings";
import { type ClusterClient, withLeader } from "../cluster/api.ts";
import type { PlannedEvent } from "../cluster/machine.ts";
import { PierTail, PierTailError, readLivePier, TAIL_DELAYS_KEPT } from "../server/pier_tail.ts";
import type { ShipJson } from "../cluster/admin_protocol.ts";
import { renderShip } from "../vere/event.ts";
import { basename, dirname, join, resolve } from "node:path";
import {
  type EpochContent,
  isPierLocked,
  listEpochs,
  LOG_VERSION,
  PierError,
  type PierEvent,
  type PierMeta,
  readEvents,
  readPierMeta,
  writePier,
} from "../vere/pier.ts";
import { LmdbError } from "../vere/lmdb.ts";
import { CliError, naturalOption, positiveOption } from "./lib/errors.ts";
import { downloadImage, importImages } from "./lib/ship_image.ts";
import { cliErrorOf, targetFlags, targetOf, type TargetOptions } from "./lib/options.ts";
import { shipArgument, withNode } from "./lib/ships.ts";
import { count, note, print } from "./lib/output.ts";

/** Bytes of jobs per `events` request during an import. */
const IMPORT_BATCH_BYTES = 4 * 1024 * 1024;
/** `events` requests an import keeps in flight. */
const IMPORT_IN_FLIGHT = 2;

function pierFailure(e: unknown, pier: string): unknown {
  if (e instanceof PierError || e instanceof LmdbError) {
    return new CliError(`${pier}: ${e.message}`);
  }
  return cliErrorOf(e);
}

/** The META of `pier`, which must belong to `ship`; anything else is a CliError. */
function pierMetaOf(ship: bigint, pier: string): PierMeta {
  let meta: PierMeta;
  try {
    meta = readPierMeta(pier);
  } catch (e) {
    throw pierFailure(e, pier);
  }
  if (meta.who !== ship) {
    throw new CliError(
      `${pier} belongs to ${renderShip(meta.who)}, not ${
        renderShip(ship)
      }; check the ship or the pier`,
    );
  }
  return meta;
}

/** Events per `log` request during an export. */
const EXPORT_BATCH_EVENTS = 10_000;
/** Exit codes of an export stopped by a signal: 128 plus the signal's number, as shells report. */
const EXIT_SIGINT = 130;
const EXIT_SIGTERM = 143;

/** The options of `ship export` besides the target. */
interface ExportOptions {
  vereVersion: string;
  epoch?: number;
  eve?: number;
}

/** What an export read from a node, ready for {@linkcode writePier}. */
interface ShipExport {
  info: ShipJson;
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
    throw new CliError(
      `${dir} exists and is not an empty directory; export into a new or empty directory`,
    );
  }
  const parent = dirname(path);
  let tmp: string;
  try {
    tmp = Deno.makeTempDirSync({ dir: parent, prefix: `.${basename(path)}.seguro-export-` });
  } catch (e) {
    if (e instanceof Deno.errors.NotFound) {
      throw new CliError(`the directory ${parent} does not exist; create it, or export elsewhere`);
    }
    throw new CliError(`cannot create a directory in ${parent}: ${(e as Error).message}`);
  }
  try {
    Deno.chmodSync(tmp, 0o700); // a pier's first events hold the ship's keys
    Deno.mkdirSync(join(tmp, ".urb"));
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
    throw new CliError(
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
function removeTree(path: string): void {
  try {
    Deno.removeSync(path, { recursive: true });
  } catch (e) {
    if (!(e instanceof Deno.errors.NotFound)) throw e;
  }
}

/**
 * Settles as `work` does, or rejects with the signal's reason as soon as
 * `signal` aborts. `work` is then left running unobserved: the command is
 * about to fail, and the process to exit.
 */
function unlessAborted<T>(work: Promise<T>, signal: AbortSignal): Promise<T> {
  work.catch(() => {}); // a failure after the abort is of no interest
  return new Promise<T>((resolve, reject) => {
    const onAbort = () => reject(signal.reason);
    if (signal.aborted) return onAbort();
    signal.addEventListener("abort", onAbort, { once: true });
    work.then(resolve, reject).finally(() => signal.removeEventListener("abort", onAbort));
  });
}

/**
 * Reads what `ship export` writes from the node `c`: the ship's record, its
 * complete images (downloaded into `tmp`/.urb) and its events up to the
 * export's last event, which is fixed here: `options.eve`, else the ship's
 * last event on the node now. Events the ship appends meanwhile are not read.
 */
async function fetchShip(
  c: ClusterClient,
  ship: bigint,
  tmp: string,
  options: ExportOptions,
): Promise<ShipExport> {
  const name = renderShip(ship);
  const ships = await c.ships.list();
  const info = ships.find((s) => s.ship === String(ship));
  if (info === undefined) {
    throw new CliError(`${name} is not on this cluster; see 'seguro ship list'`);
  }
  const last = info.lastEve;
  if (options.eve !== undefined && options.eve > last) {
    throw new CliError(
      last === 0
        ? `${name} has no events on this node; export it without --eve`
        : `--eve ${options.eve} is past ${name}'s last event on this node, ${last}; give --eve ${last} or less`,
    );
  }
  const eve = options.eve ?? last;
  const complete = (info.images ?? []).filter((i) => i.sha256 !== undefined && i.epoch <= last);
  let bases = [...new Set([0, ...complete.map((i) => i.epoch)])].sort((a, b) => a - b);
  if (options.epoch !== undefined) {
    const epoch = options.epoch;
    if (!bases.includes(epoch)) {
      throw new CliError(`${name} has no epoch ${epoch}; its epochs start at ${bases.join(", ")}`);
    }
    if (eve < epoch) {
      throw new CliError(
        `--eve ${eve} is before epoch ${epoch}, whose image is the state after event ${epoch}; give --eve ${epoch} or more, or an earlier --epoch`,
      );
    }
    bases = bases.filter((b) => b >= epoch);
  }
  bases = bases.filter((b) => b <= eve);
  const first = bases[0];
  note(
    `exporting ${name} from event ${count(first + 1)} to ${count(eve)}${
      options.eve === undefined ? " (its last event on this node now)" : ""
    }`,
  );
  const epochs: EpochContent[] = [];
  for (const base of bases) {
    const image = complete.find((i) => i.epoch === base);
    let path: string | undefined;
    if (image !== undefined) {
      // Moved into its epoch by writePier: the same file system, no copy.
      path = join(tmp, ".urb", `tmp-image-${base}`);
      await downloadImage(c, ship, image, path);
    }
    epochs.push({ base, events: [], image: path === undefined ? undefined : { path } });
  }
  // The events are gathered first: the pier is written in one go, tmp -> fsync -> rename.
  const events: PierEvent[] = [];
  for (let from = first + 1; from <= eve;) {
    const want = Math.min(EXPORT_BATCH_EVENTS, eve - from + 1);
    const batch = await c.ships.events(ship, from, want);
    if (batch.length === 0) {
      throw new CliError(
        `the node returned no event ${from} of ${name}; run 'seguro log verify ${name}' and retry`,
      );
    }
    for (const e of batch.slice(0, want)) {
      if (e.eve !== from) {
        throw new CliError(`the node sent ${name}'s event ${e.eve} where ${from} belongs; retry`);
      }
      events.push({ eve: e.eve, mug: e.mug, job: e.job.slice() });
      from++;
    }
  }
  for (let i = 0; i < epochs.length; i++) {
    const end = epochs[i + 1]?.base ?? eve;
    epochs[i].events = events.slice(epochs[i].base - first, end - first);
  }
  return { info, eve, epochs };
}

/** Adds `import` and `export` to the `ship` command group. */
export function addPierCommands(group: CommandUnknownOpts): void {
  targetFlags(
    group.command("import")
      .description("append a stock vere pier's event log to the cluster (resumable)")
      .argument("<ship>", "the ship the pier belongs to", shipArgument)
      .argument("<pier>", "the pier directory")
      .option("--live", "read the pier although a running urbit holds its lock"),
  ).action(async (ship: bigint, pier: string, options: TargetOptions & { live?: boolean }) => {
    const target = targetOf(options);
    const name = renderShip(ship);
    if (isPierLocked(pier) && !options.live) {
      throw new CliError(
        `${pier} is in use by a running urbit (.vere.lock); stop it first, or pass --live`,
      );
    }
    const meta = pierMetaOf(ship, pier);
    try {
      await withLeader(target.address, target.credentials, async (client) => {
        const ships = await client.ships.list();
        let info = ships.find((s) => s.ship === String(ship));
        if (info === undefined) {
          info = await client.ships.add(ship, { fake: meta.fake, life: meta.life });
          note(`added ${name} (${meta.fake ? "fake" : "real"}, life ${meta.life})`);
        } else if (info.lastEve > 0) {
          note(
            `${name} already has ${count(info.lastEve)} events on the cluster; resuming after them`,
          );
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
            if (performance.now() - lastShown > 1000) {
              lastShown = performance.now();
              const secs = (performance.now() - started) / 1000;
              note(
                `imported ${count(sent)} events, ${count(bytes)} bytes (${
                  (sent / secs).toFixed(0)
                } events/s)`,
              );
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
        const secs = (performance.now() - started) / 1000;
        const imageBytes = await importImages(client, ship, listEpochs(pier), info.images ?? []);
        print(
          `Imported ${count(sent)} events of ${name} (${count(bytes)} bytes) in ${
            secs.toFixed(1)
          } s; it now has ${count(info.lastEve + sent)}.${
            imageBytes > 0 ? ` Images: ${count(imageBytes)} bytes.` : ""
          }`,
        );
      });
    } catch (e) {
      throw pierFailure(e, pier);
    }
  });

  targetFlags(
    group.command("attach")
      .description(
        "follow a live pier's log as stock vere writes it and replicate each new event (tail mode)",
      )
      .argument("<ship>", "the ship the pier belongs to", shipArgument)
      .argument("<pier>", "the pier directory (read only; vere keeps writing it)")
      .option("--poll-ms <n>", "how often to look for new events", positiveOption("--poll-ms"), 5),
  ).action(async (ship: bigint, pier: string, options: TargetOptions & { pollMs: number }) => {
    const target = targetOf(options);
    const name = renderShip(ship);
    const meta = pierMetaOf(ship, pier);
    let stop = false;
    let tail: PierTail | undefined;
    const onSignal = () => {
      stop = true;
      tail?.stop();
    };
    Deno.addSignalListener("SIGINT", onSignal);
    Deno.addSignalListener("SIGTERM", onSignal);
    try {
      await withLeader(target.address, target.credentials, async (client) => {
        const ships = await client.ships.list();
        let last = ships.find((s) => s.ship === String(ship))?.lastEve;
        if (last === undefined) {
          await client.ships.add(ship, { fake: meta.fake, life: meta.life });
          last = 0;
        }
        note(
          `following ${pier} for ${name} from event ${
            last + 1
          } (every ${options.pollMs} ms; Ctrl-C stops)`,
        );
        const following = new PierTail({
          after: last,
          read: readLivePier(pier),
          // A divergent event (same eve, other bytes) is refused by the cluster: the
          // request fails and the tail stops with that error, never silently.
          propose: (firstEve, events) =>
            client.ships.write({ kind: "events", ship, firstEve, events }),
          pollMs: options.pollMs,
          onBatch: (b) =>
            print(
              `replicated ${name} up to event ${count(b.lastEve)} (+${b.lastEve - b.firstEve + 1})`,
            ),
        });
        tail = following;
        if (stop) following.stop();
        try {
          await following.run();
        } catch (e) {
          throw e instanceof PierTailError ? e.cause : e;
        }
        const q = (p: number) => following.delayQuantile(p)?.toFixed(1) ?? "-";
        const batches = following.batches;
        note(
          `stopped at event ${following.committed}; read-to-commit p50 ${q(0.5)} ms, p99 ${
            q(0.99)
          } ms over ${
            batches > TAIL_DELAYS_KEPT ? `the last ${TAIL_DELAYS_KEPT} of ` : ""
          }${batches} batches`,
        );
      });
    } catch (e) {
      throw pierFailure(e, pier);
    } finally {
      Deno.removeSignalListener("SIGINT", onSignal);
      Deno.removeSignalListener("SIGTERM", onSignal);
    }
  });

  targetFlags(
    group.command("export")
      .description(
        "write a ship's log and epoch snapshots from the cluster as a pier stock vere can boot",
      )
      .argument("<ship>", "the ship", shipArgument)
      .argument("<dir>", "the pier directory to create (it must not exist, or be empty)")
      .option(
        "--epoch <n>",
        "start at this epoch (its image.bin and the events after it)",
        naturalOption("--epoch"),
      )
      .option(
        "--eve <n>",
        "end at this event (default: the ship's last event on the node when the export starts)",
        positiveOption("--eve"),
      )
      .option("--vere-version <v>", "runtime version recorded in vere.txt", "4.0"),
  ).action(
    async (ship: bigint, dir: string, options: TargetOptions & ExportOptions) => {
      const target = targetOf(options);
      const name = renderShip(ship);
      const started = performance.now();
      // Ctrl-C or SIGTERM abandons the export; the temporary directory is removed below.
      const interrupt = new AbortController();
      const listeners = (["SIGINT", "SIGTERM"] as const).map((signal) => {
        const listener = () =>
          interrupt.abort(
            new CliError(
              `the export of ${name} was interrupted (${signal}) and nothing was written to ${dir}; run it again to export`,
              signal === "SIGINT" ? EXIT_SIGINT : EXIT_SIGTERM,
            ),
          );
        Deno.addSignalListener(signal, listener);
        return { signal, listener };
      });
      try {
        const tmp = makeExportDir(dir);
        try {
          const got = await unlessAborted(
            withNode(target, (c) => fetchShip(c, ship, tmp, options)),
            interrupt.signal,
          );
          interrupt.signal.throwIfAborted();
          writePier(tmp, {
            meta: { version: LOG_VERSION, who: ship, fake: got.info.fake, life: got.info.life },
            epochs: got.epochs,
            vereVersion: options.vereVersion,
          });
          // A signal that came during the (synchronous) write is dispatched on the next
          // turn of the event loop: take it before the rename, the point of no return.
          await new Promise((resolve) => setTimeout(resolve, 0));
          interrupt.signal.throwIfAborted();
          moveIntoPlace(tmp, dir);
          const n = got.eve - got.epochs[0].base;
          const secs = (performance.now() - started) / 1000;
          print(
            `Wrote ${count(n)} events of ${name} (${
              n === 0 ? "none" : `events ${count(got.epochs[0].base + 1)}-${count(got.eve)}`
            }) to ${dir}/.urb/log (epochs ${got.epochs.map((e) => `0i${e.base}`).join(", ")}) in ${
              secs.toFixed(1)
            } s (${(n / secs).toFixed(0)} events/s).`,
          );
        } catch (e) {
          try {
            removeTree(tmp);
          } catch (removal) {
            note(`could not remove ${tmp} (${(removal as Error).message}); delete it`);
          }
          throw e;
        }
      } catch (e) {
        throw pierFailure(e, dir);
      } finally {
        for (const { signal, listener } of listeners) Deno.removeSignalListener(signal, listener);
      }
    },
  );
}
