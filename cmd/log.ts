/**
 * `seguro log tail | show | verify | audit ~ship`: a ship's events, decoded.
 * Reading, following and checking the log is server/ship_log.ts; this module
 * parses the arguments and prints (tables, JSON).
 * @module
 */

import { Command, type CommandUnknownOpts } from "@commander-js/extra-typings";
import { renderShip } from "../vere/event.ts";
import {
  firstEveOf,
  type LogEvent,
  type ShownEvent,
  showShipEvent,
  type TailProgress,
  tailShipLog,
  verifyShipLog,
} from "../server/ship_log.ts";
import { CliError, positiveOption as positive } from "./lib/errors.ts";
import { cliErrorOf, targetFlags, targetOf, type TargetOptions } from "./lib/options.ts";
import { eventRange, shipArgument } from "./lib/ships.ts";
import { clusterStatus } from "./lib/cluster_status.ts";
import { colors, count, formatTable, hex32, note, print, toJson } from "./lib/output.ts";

/** One decoded line of a ship's log, as printed: the mug in hex. */
interface LogLine extends Omit<LogEvent, "mug"> {
  /** Stored mug. */
  mug: string;
}

function logLine(e: LogEvent): LogLine {
  return { ...e, mug: hex32(e.mug) };
}

const LOG_COLUMNS = [
  { header: "eve", cell: (l: LogLine) => count(l.eve), right: true },
  { header: "time", cell: (l: LogLine) => l.time ?? "-" },
  { header: "wire", cell: (l: LogLine) => l.wire ?? "-" },
  { header: "card", cell: (l: LogLine) => l.card === null ? "(formula)" : `%${l.card}` },
  { header: "size", cell: (l: LogLine) => count(l.bytes), right: true },
  { header: "mug", cell: (l: LogLine) => l.mug },
];

/** Builds the `log` command group. */
export function logCommand(): CommandUnknownOpts {
  const group = new Command("log").description("read a ship's event log, decoded");

  targetFlags(
    group.command("tail")
      .description("the last events of a ship; -f follows new events as they commit")
      .argument("<ship>", "the ship, e.g. ~zod", shipArgument)
      .option("-n, --lines <n>", "how many of the last events", positive("-n"), 10)
      .option("-f, --follow", "keep printing new events as they are committed (Ctrl-C stops)")
      .option("--json", "print JSON (one object per line with -f)"),
  ).action(
    async (
      ship: bigint,
      options: TargetOptions & { lines: number; follow?: boolean; json?: boolean },
    ) => {
      const target = targetOf(options);
      let widths: LogLine[] = [];
      const printTail = (p: TailProgress) => {
        if (p.kind === "last") {
          const first = p.events.map(logLine);
          if (options.json && !options.follow) print(toJson(first));
          else if (options.json) { for (const l of first) console.log(JSON.stringify(l)); }
          else if (first.length > 0) print(formatTable(first, LOG_COLUMNS));
          else note(`${renderShip(ship)} has no events yet`);
          widths = first;
          return;
        }
        const l = logLine(p.event);
        if (options.json) console.log(JSON.stringify(l));
        else {
          // Same columns as the table; each line alone, aligned to the table's widths so far.
          widths = [...widths.slice(-50), l];
          print(formatTable(widths, LOG_COLUMNS).split("\n").pop()!);
        }
      };
      try {
        await tailShipLog(target, ship, {
          lines: options.lines,
          follow: options.follow,
          progress: printTail,
        });
      } catch (e) {
        throw cliErrorOf(e);
      }
    },
  );

  targetFlags(
    group.command("show")
      .description("one event, decoded: time, wire, card, and the card's contents")
      .argument("<ship>", "the ship", shipArgument)
      .argument("<eve>", "event number", positive("eve"))
      .option("--max-chars <n>", "longest rendering of the card", positive("--max-chars"), 4000)
      .option("--json", "print JSON"),
  ).action(
    async (
      ship: bigint,
      eve: number,
      options: TargetOptions & { maxChars: number; json?: boolean },
    ) => {
      const target = targetOf(options);
      let e: ShownEvent;
      try {
        e = await showShipEvent(target, ship, eve, { maxChars: options.maxChars });
      } catch (err) {
        throw cliErrorOf(err);
      }
      const fields = {
        ship: renderShip(ship),
        eve,
        kind: e.formula ? "boot formula" : "ovum",
        time: e.time,
        wire: e.wire,
        card: e.card,
        mug: hex32(e.mug),
        bytes: e.bytes,
        [e.formula ? "formula" : "data"]: e.text,
      };
      if (options.json) {
        print(toJson(fields));
        return;
      }
      for (const [k, v] of Object.entries(fields)) {
        // Numbers as every table prints them (`log tail`'s SIZE): 3,356,302.
        print(`${colors.dim(k.padEnd(7))} ${typeof v === "number" ? count(v) : v ?? "-"}`);
      }
      if (e.truncated) note(`(truncated at ${options.maxChars} characters; raise --max-chars)`);
    },
  );

  targetFlags(
    group.command("verify")
      .description(
        "check a ship's log on every node: no gaps, valid jams, the same bytes everywhere",
      )
      .argument("<ship>", "the ship", shipArgument)
      .option("--json", "print JSON"),
  ).action(async (ship: bigint, options: TargetOptions & { json?: boolean }) => {
    const target = targetOf(options);
    const status = await clusterStatus(target.address, target.credentials);
    const { nodes: results, problems, agree, answered, firstEve, lastEve } = await verifyShipLog(
      status.rows,
      target.credentials,
      ship,
    );
    if (options.json) {
      print(toJson({ ship: renderShip(ship), agree, problems, nodes: results }));
    } else {
      print(formatTable(results, [
        { header: "node", cell: (r) => String(r.id), right: true },
        {
          header: "events",
          cell: (r) => "error" in r ? "-" : eventRange(firstEveOf(r), r.lastEve),
          right: true,
        },
        { header: "bytes", cell: (r) => "error" in r ? "-" : count(r.bytes), right: true },
        {
          header: "digest",
          cell: (r) => "error" in r ? `unreachable: ${r.error}` : r.digest.slice(0, 16),
        },
        {
          header: "problems",
          cell: (r) => "error" in r ? "-" : String(r.problems.length),
          right: true,
        },
      ]));
      for (const p of problems) note(`node ${p.node}: event ${p.eve}: ${p.problem}`);
    }
    if (problems.length > 0 || !agree) {
      throw new CliError(
        problems.length > 0
          ? `${renderShip(ship)}'s log has ${problems.length} problem(s); see above`
          : `the nodes do not hold the same log of ${
            renderShip(ship)
          } (or some did not answer); see above`,
      );
    }
    if (!options.json) {
      note(
        firstEve === 1
          ? `${renderShip(ship)}: ${answered} nodes agree on ${count(lastEve)} events`
          : `${renderShip(ship)}: ${answered} nodes agree on events ${
            eventRange(firstEve, lastEve)
          } (the log starts after epoch ${firstEve - 1}'s image)`,
      );
    }
  });

  targetFlags(
    group.command("audit")
      .description("events of a ship that were released before commit and then lost in a failover")
      .argument("<ship>", "the ship", shipArgument)
      .option("--json", "print JSON"),
  ).action(async (ship: bigint, options: TargetOptions & { json?: boolean }) => {
    const target = targetOf(options);
    const status = await clusterStatus(target.address, target.credentials);
    const losses = status.losses.filter((l) => l.ship === String(ship));
    if (options.json) {
      print(toJson({ ship: renderShip(ship), losses }));
    } else if (losses.length === 0) {
      print(`${renderShip(ship)}: no released-but-lost events reported by the reachable nodes`);
    } else {
      print(formatTable(losses, [
        { header: "found by", cell: (l) => `node ${l.node}`, right: true },
        { header: "events", cell: (l) => `${l.firstEve}-${l.lastEve}` },
        { header: "entry", cell: (l) => String(l.index), right: true },
        { header: "term", cell: (l) => String(l.term), right: true },
      ]));
    }
    const unreachable = status.rows.filter((r) => r.error !== null).length;
    if (unreachable > 0) {
      note(`${unreachable} node(s) did not answer; their findings are not included`);
    }
  });

  return group;
}
