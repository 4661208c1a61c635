/**
 * The pier side of `seguro ship`: `import` and `export` move a stock vere
 * pier's event log onto the cluster and back out as a pier
 * (server/pier_import.ts, server/pier_export.ts); `attach` follows a live
 * pier (server/pier_attach.ts). Each command parses its arguments, calls one
 * of them and prints what it reports.
 * @module
 */

import type { CommandUnknownOpts } from "@commander-js/extra-typings";
import { renderShip } from "../vere/event.ts";
import { LAYOUT_VERE, PIER_LAYOUTS, type PierLayout } from "../vere/pier_layout.ts";
import { importPier, type ImportProgress } from "../server/pier_import.ts";
import { RETRY_LIMITS, retryReason } from "../server/leader_retry.ts";
import { exportPier, type ExportProgress } from "../server/pier_export.ts";
import { attachPier, type AttachProgress } from "../server/pier_attach.ts";
import { CliError, naturalOption, positiveOption } from "./lib/errors.ts";
import { cliErrorOf, targetFlags, targetOf, type TargetOptions } from "./lib/options.ts";
import { shipArgument } from "./lib/ships.ts";
import { count, note, print } from "./lib/output.ts";

/** Exit codes of an export stopped by a signal: 128 plus the signal's number, as shells report. */
const EXIT_SIGINT = 130;
const EXIT_SIGTERM = 143;

/** The signals that stop `attach` and abandon `export`. */
type StopSignal = "SIGINT" | "SIGTERM";

/** The options of `ship import`. */
interface ImportOptions extends TargetOptions {
  live?: boolean;
  retryMs: number;
}

/** The options of `ship export` besides the target. */
interface ExportOptions {
  vereVersion?: string;
  format?: PierLayout;
  epoch?: number;
  eve?: number;
}

/** Parses `--format`. */
function layoutOption(value: string): PierLayout {
  const layout = PIER_LAYOUTS.find((l) => l === value);
  if (layout === undefined) {
    throw new CliError(`--format ${value} is not a pier layout; give log1, epochs1 or epochs2`);
  }
  return layout;
}

/**
 * Aborts the returned signal on SIGINT or SIGTERM, with `reason` of the
 * signal as its reason; `release` removes the listeners.
 */
function abortOnSignals(
  reason: (signal: StopSignal) => unknown = () => undefined,
): { signal: AbortSignal; release: () => void } {
  const stop = new AbortController();
  const listeners = (["SIGINT", "SIGTERM"] as const).map((signal) => {
    const listener = () => stop.abort(reason(signal));
    Deno.addSignalListener(signal, listener);
    return { signal, listener };
  });
  const release = () => {
    for (const { signal, listener } of listeners) Deno.removeSignalListener(signal, listener);
  };
  return { signal: stop.signal, release };
}

/** A line of an import's progress, for stderr. */
function importLine(name: string, p: ImportProgress): string {
  switch (p.kind) {
    case "added":
      return `added ${name} (${p.fake ? "fake" : "real"}, life ${p.life})`;
    case "layout":
      return `${name}'s pier is ${p.layout} (${LAYOUT_VERE[p.layout]}); the cluster records it`;
    case "resuming":
      return `${name} already has ${count(p.lastEve)} events on the cluster; resuming after them`;
    case "events":
      return `imported ${count(p.events)} events, ${count(p.bytes)} bytes (${
        (p.events / p.seconds).toFixed(0)
      } events/s)`;
    case "retrying":
      return `${retryReason(p.retry)}; resuming ${
        p.images ? "the images" : `from event ${count(p.fromEve)}`
      } in ${(p.retry.delayMs / 1000).toFixed(1)} s`;
    case "imageBytes":
      return `image of epoch ${p.epoch}: ${count(p.bytes)} of ${count(p.size)} bytes`;
    case "imageStored":
      return `image of epoch ${p.epoch}: ${
        count(p.size)
      } bytes stored and checked on the cluster (${p.seconds.toFixed(1)} s)`;
  }
}

/** A line of an export's progress, for stderr. */
function exportLine(name: string, p: ExportProgress): string {
  switch (p.kind) {
    case "range":
      return `exporting ${name} from event ${count(p.firstEve)} to ${count(p.lastEve)}${
        p.latest ? " (its last event on this node now)" : ""
      }`;
    case "notRemoved":
      return `could not remove ${p.path} (${p.reason}); delete it`;
  }
}

/** Prints an attach's progress: the start on stderr, each batch on stdout. */
function printAttach(name: string, pier: string, pollMs: number, p: AttachProgress): void {
  switch (p.kind) {
    case "following":
      note(`following ${pier} for ${name} from event ${p.from} (every ${pollMs} ms; Ctrl-C stops)`);
      return;
    case "replicated":
      print(`replicated ${name} up to event ${count(p.lastEve)} (+${p.lastEve - p.firstEve + 1})`);
      return;
  }
}

/** A delay in ms as the attach summary shows it: one decimal, `-` without one. */
function delayText(ms: number | undefined): string {
  return ms?.toFixed(1) ?? "-";
}

/** Adds `import`, `attach` and `export` to the `ship` command group. */
export function addPierCommands(group: CommandUnknownOpts): void {
  targetFlags(
    group.command("import")
      .description(
        "append a stock vere pier's event log to the cluster (resumes by itself after a leader change)",
      )
      .argument("<ship>", "the ship the pier belongs to", shipArgument)
      .argument("<pier>", "the pier directory")
      .option("--live", "read the pier although a running urbit holds its lock")
      .option(
        "--retry-ms <n>",
        "after a leader change or a lost connection, keep retrying this long without progress (0: stop at the first failure)",
        naturalOption("--retry-ms"),
        RETRY_LIMITS.stallMs,
      ),
  ).action(async (ship: bigint, pier: string, options: ImportOptions) => {
    const target = targetOf(options);
    const name = renderShip(ship);
    try {
      const r = await importPier(target, ship, {
        pier,
        live: options.live,
        retry: { stallMs: options.retryMs },
        progress: (p) => note(importLine(name, p)),
      });
      print(
        `Imported ${count(r.events)} events of ${name} (${count(r.bytes)} bytes) in ${
          r.seconds.toFixed(1)
        } s; it now has ${count(r.lastEve)}.${
          r.imageBytes > 0 ? ` Images: ${count(r.imageBytes)} bytes.` : ""
        }`,
      );
    } catch (e) {
      throw cliErrorOf(e);
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
    const { pollMs } = options;
    // Ctrl-C or SIGTERM stops the tail after the batch in flight.
    const stop = abortOnSignals();
    try {
      const r = await attachPier(target, ship, {
        pier,
        pollMs,
        signal: stop.signal,
        progress: (p) => printAttach(name, pier, pollMs, p),
      });
      note(
        `stopped at event ${r.committed}; read-to-commit p50 ${delayText(r.delayP50Ms)} ms, p99 ${
          delayText(r.delayP99Ms)
        } ms over ${
          r.batches > r.delayBatches ? `the last ${r.delayBatches} of ` : ""
        }${r.batches} batches`,
      );
    } catch (e) {
      throw cliErrorOf(e);
    } finally {
      stop.release();
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
      .option(
        "--format <layout>",
        "the pier layout to write: log1 (vere < 3.0), epochs1 (vere 3.x) or epochs2 (vere 4.x); default the ship's own",
        layoutOption,
      )
      .option(
        "--vere-version <v>",
        "runtime version recorded in vere.txt (default 3.0 for epochs1, 4.0 for epochs2)",
      ),
  ).action(
    async (ship: bigint, dir: string, options: TargetOptions & ExportOptions) => {
      const target = targetOf(options);
      const name = renderShip(ship);
      // Ctrl-C or SIGTERM abandons the export; exportPier removes what it wrote.
      const interrupt = abortOnSignals((signal) =>
        new CliError(
          `the export of ${name} was interrupted (${signal}) and nothing was written to ${dir}; run it again to export`,
          signal === "SIGINT" ? EXIT_SIGINT : EXIT_SIGTERM,
        )
      );
      try {
        const r = await exportPier(target, ship, {
          dir,
          vereVersion: options.vereVersion,
          format: options.format,
          epoch: options.epoch,
          eve: options.eve,
          signal: interrupt.signal,
          progress: (p) => note(exportLine(name, p)),
        });
        print(
          `Wrote ${count(r.events)} events of ${name} (${
            r.events === 0 ? "none" : `events ${count(r.firstEve)}-${count(r.lastEve)}`
          }) to ${dir}/.urb/log as ${r.layout} (${LAYOUT_VERE[r.layout]}; ${
            r.layout === "log1" ? "one log" : `epochs ${r.epochs.map((b) => `0i${b}`).join(", ")}`
          }; ${
            r.snapshots.length === 0
              ? "no snapshot: vere replays from the first event"
              : `snapshot after event ${r.snapshots.map(count).join(", ")}`
          }) in ${r.seconds.toFixed(1)} s (${(r.events / r.seconds).toFixed(0)} events/s).`,
        );
      } catch (e) {
        throw cliErrorOf(e);
      } finally {
        interrupt.release();
      }
    },
  );
}
