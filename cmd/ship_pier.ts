/**
 * `seguro ship import ~ship PIER` and `seguro ship export ~ship DIR`: moving
 * a stock vere pier's event log onto the cluster, and back out as a pier.
 * @module
 */

import type { CommandUnknownOpts } from "@commander-js/extra-typings";
import { decodeEvents, encodeLogRequest, Op, withLeader } from "../cluster/api.ts";
import { encodeCommand, type PlannedEvent } from "../cluster/machine.ts";
import type { ShipJson } from "../cluster/node.ts";
import { shipKey } from "../cluster/ships.ts";
import { renderShip } from "../vere/event.ts";
import { join } from "node:path";
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
import { CliError, naturalOption, positiveOption } from "./errors.ts";
import { downloadImage, importImages } from "./ship_image.ts";
import { cliErrorOf, targetFlags, targetOf, type TargetOptions } from "./cluster_options.ts";
import { shipArgument, withNode } from "./ship.ts";
import { count, note, print } from "./output.ts";

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
        const ships = await client.requestJson<ShipJson[]>(Op.ship, { action: "list" });
        let info = ships.find((s) => s.ship === String(ship));
        if (info === undefined) {
          info = await client.requestJson<ShipJson>(Op.ship, {
            action: "add",
            ship: String(ship),
            fake: meta.fake,
            life: meta.life,
          });
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
          const request = client.request(
            Op.events,
            encodeCommand({ kind: "events", ship, firstEve: batchFirst, events: batch }),
          ).then(() => {
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
    const onSignal = () => stop = true;
    Deno.addSignalListener("SIGINT", onSignal);
    Deno.addSignalListener("SIGTERM", onSignal);
    try {
      await withLeader(target.address, target.credentials, async (client) => {
        const ships = await client.requestJson<ShipJson[]>(Op.ship, { action: "list" });
        let last = ships.find((s) => s.ship === String(ship))?.lastEve;
        if (last === undefined) {
          await client.requestJson(Op.ship, {
            action: "add",
            ship: String(ship),
            fake: meta.fake,
            life: meta.life,
          });
          last = 0;
        }
        note(
          `following ${pier} for ${name} from event ${
            last + 1
          } (every ${options.pollMs} ms; Ctrl-C stops)`,
        );
        const delays: number[] = [];
        while (!stop) {
          const seen = performance.now();
          const batch: PlannedEvent[] = [];
          let bytes = 0;
          // Read transactions are short and read-only: vere's writer is never blocked.
          for (const e of readEvents(pier, { from: last + 1 })) {
            batch.push({ mug: e.mug, job: e.job });
            bytes += e.job.length;
            if (bytes >= IMPORT_BATCH_BYTES) break;
          }
          if (batch.length > 0) {
            // A divergent event (same eve, other bytes) is refused by the cluster: the
            // request fails and the tail stops with that alarm, never silently.
            await client.request(
              Op.events,
              encodeCommand({ kind: "events", ship, firstEve: last + 1, events: batch }),
            );
            last += batch.length;
            delays.push(performance.now() - seen);
            print(`replicated ${name} up to event ${count(last)} (+${batch.length})`);
            continue;
          }
          await new Promise((r) => setTimeout(r, options.pollMs));
        }
        delays.sort((a, b) => a - b);
        const q = (p: number) =>
          delays.length
            ? delays[Math.min(delays.length - 1, Math.floor(p * delays.length))].toFixed(1)
            : "-";
        note(
          `stopped at event ${last}; read-to-commit p50 ${q(0.5)} ms, p99 ${
            q(0.99)
          } ms over ${delays.length} batches`,
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
      .argument("<dir>", "the pier directory to create (must not hold a log yet)")
      .option(
        "--epoch <n>",
        "start at this epoch (its image.bin and the events after it)",
        naturalOption("--epoch"),
      )
      .option("--vere-version <v>", "runtime version recorded in vere.txt", "4.0"),
  ).action(
    async (
      ship: bigint,
      dir: string,
      options: TargetOptions & { vereVersion: string; epoch?: number },
    ) => {
      const target = targetOf(options);
      const name = renderShip(ship);
      const events: PierEvent[] = [];
      const started = performance.now();
      const temps: string[] = [];
      try {
        const { info, epochs } = await withNode(target, async (c) => {
          const ships = await c.requestJson<ShipJson[]>(Op.ship, { action: "list" });
          const found = ships.find((s) => s.ship === String(ship));
          if (found === undefined) {
            throw new CliError(`${name} is not on this cluster; see 'seguro ship list'`);
          }
          const complete = (found.images ?? [])
            .filter((i) => i.sha256 !== undefined && i.epoch <= found.lastEve);
          let bases = [...new Set([0, ...complete.map((i) => i.epoch)])].sort((a, b) => a - b);
          if (options.epoch !== undefined) {
            if (!bases.includes(options.epoch)) {
              throw new CliError(
                `${name} has no epoch ${options.epoch}; its epochs start at ${bases.join(", ")}`,
              );
            }
            bases = bases.filter((b) => b >= options.epoch!);
          }
          const epochs: EpochContent[] = [];
          Deno.mkdirSync(join(dir, ".urb"), { recursive: true });
          for (const base of bases) {
            const image = complete.find((i) => i.epoch === base);
            let path: string | undefined;
            if (image !== undefined) {
              path = join(dir, ".urb", `tmp-image-${base}-${Deno.pid}`);
              temps.push(path);
              await downloadImage(c, ship, image, path);
            }
            epochs.push({ base, events: [], image: path === undefined ? undefined : { path } });
          }
          // The events are gathered first: the pier is written in one go, tmp -> fsync -> rename.
          for (let from = bases[0] + 1; from <= found.lastEve;) {
            const batch = decodeEvents(
              await c.request(Op.log, encodeLogRequest(shipKey(ship), from, 10_000)),
            );
            if (batch.length === 0) break;
            for (const e of batch) events.push({ eve: e.eve, mug: e.mug, job: e.job.slice() });
            from = batch[batch.length - 1].eve + 1;
          }
          return { info: found, epochs };
        });
        const first = epochs[0].base;
        if (events.length !== info.lastEve - first) {
          throw new CliError(
            `read ${events.length} of ${info.lastEve - first} events of ${name}; retry`,
          );
        }
        for (let i = 0; i < epochs.length; i++) {
          const end = epochs[i + 1]?.base ?? info.lastEve;
          epochs[i].events = events.slice(epochs[i].base - first, end - first);
        }
        writePier(dir, {
          meta: { version: LOG_VERSION, who: ship, fake: info.fake, life: info.life },
          epochs,
          vereVersion: options.vereVersion,
        });
        const secs = (performance.now() - started) / 1000;
        print(
          `Wrote ${count(events.length)} events of ${name} to ${dir}/.urb/log (epochs ${
            epochs.map((e) => `0i${e.base}`).join(", ")
          }) in ${secs.toFixed(1)} s (${(events.length / secs).toFixed(0)} events/s).`,
        );
      } catch (e) {
        throw pierFailure(e, dir);
      } finally {
        for (const t of temps) {
          try {
            Deno.removeSync(t); // moved into the pier unless the export failed
          } catch { /* gone */ }
        }
      }
    },
  );
}
