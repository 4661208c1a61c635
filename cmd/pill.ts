/**
 * `seguro pill events FILE`: the boot sequence a pill gives a fake ship.
 * @module
 */

import { Command, type CommandUnknownOpts } from "@commander-js/extra-typings";
import { parse as parseAura } from "@urbit/aura";
import {
  bootSequence,
  daFromMillis,
  type EventSummary,
  parsePill,
  parseShip,
  renderShip,
  summarizeEvent,
} from "../vere/event.ts";
import { NounError } from "../vere/noun.ts";
import { CliError, UsageError } from "./lib/errors.ts";
import { readNounFile } from "./lib/files.ts";
import { count, formatTable, note, print, toJson } from "./lib/output.ts";

function parseShipOption(value: string): bigint {
  const ship = parseShip(value);
  if (ship === undefined) {
    throw new UsageError(
      `'${value}' is not a ship name; give an @p such as ~zod or ~sampel-palnet`,
    );
  }
  return ship;
}

function parseTimeOption(value: string): bigint {
  if (value.startsWith("~")) {
    try {
      return parseAura("da", value);
    } catch {
      // fall through to the error below
    }
  } else {
    const millis = Date.parse(value);
    if (!Number.isNaN(millis)) return daFromMillis(millis);
  }
  throw new UsageError(
    `'${value}' is not a time; give an ISO time (2026-11-26T07:00:00Z) or an @da (~2026.11.26..07.00.00)`,
  );
}

/** Builds the `pill` command group. */
export function pillCommand(): CommandUnknownOpts {
  const group = new Command("pill").description("read Urbit boot pills");

  group
    .command("events")
    .description("list the boot events a pill gives a fake ship, one line per event")
    .argument("<file>", "a pill file (jam of [%pill typ bot mod use]), e.g. brass.pill")
    .option("--ship <ship>", "the fake ship to boot", parseShipOption, 0n)
    .option("--time <time>", "boot time, ISO or @da (default: now)", parseTimeOption)
    .option("--json", "print JSON")
    .action((file, options) => {
      const { noun } = readNounFile(file);
      let events: EventSummary[];
      let life: number;
      try {
        const pill = parsePill(noun);
        const entropy = crypto.getRandomValues(new Uint8Array(64));
        const bootTime = options.time ?? daFromMillis(Date.now());
        const seq = bootSequence(pill, { ship: options.ship, bootTime, entropy });
        life = seq.life;
        events = seq.events.map((job, i) => summarizeEvent(i + 1, job, seq.life));
      } catch (e) {
        if (e instanceof NounError) {
          throw new CliError(`${file} is not a usable pill: ${e.message}`);
        }
        throw e;
      }
      const ship = renderShip(options.ship);
      if (options.json) {
        print(toJson({ file, ship, life, events }));
        return;
      }
      print(formatTable(events, [
        { header: "eve", cell: (e) => String(e.eve), right: true },
        { header: "time", cell: (e) => e.time ?? "-" },
        { header: "wire", cell: (e) => e.wire ?? "-" },
        { header: "card", cell: (e) => e.card === null ? "(formula)" : `%${e.card}` },
        { header: "size", cell: (e) => count(e.bytes), right: true },
      ]));
      const total = events.reduce((sum, e) => sum + e.bytes, 0);
      note(`${ship}: ${events.length} boot events (life ${life}), ${count(total)} bytes`);
    });

  return group;
}
