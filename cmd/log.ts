/**
 * `seguro log tail | show | verify ~ship`: a ship's events, decoded.
 * @module
 */

import { Command, type CommandUnknownOpts } from "@commander-js/extra-typings";
import type { EventView, ShipVerify } from "../cluster/admin_protocol.ts";
import { decodeJob, type EventSummary, renderShip, summarizeEvent } from "../vere/event.ts";
import { cue, type Noun } from "../vere/noun.ts";
import { renderNoun } from "../vere/noun_show.ts";
import { CliError, positiveOption as positive } from "./lib/errors.ts";
import { targetFlags, targetOf, type TargetOptions } from "./lib/options.ts";
import { shipArgument, shipInfo, withNode } from "./lib/ships.ts";
import { clusterStatus } from "./lib/cluster_status.ts";
import { colors, count, formatTable, hex32, note, print, toJson } from "./lib/output.ts";

/** One decoded line of a ship's log. */
interface LogLine extends EventSummary {
  /** Stored mug. */
  mug: string;
}

function describe(e: EventView, life: number): LogLine {
  let summary: EventSummary;
  try {
    summary = summarizeEventBytes(e, life);
  } catch {
    summary = {
      eve: e.eve,
      kind: "ovum",
      time: null,
      wire: null,
      card: "(undecodable)",
      bytes: e.job.length,
    };
  }
  return { ...summary, mug: hex32(e.mug) };
}

function summarizeEventBytes(e: EventView, life: number): EventSummary {
  // summarizeEvent measures the jam itself; the stored bytes are that jam already.
  const s = summarizeEvent(e.eve, cue(e.job), life);
  return { ...s, bytes: e.job.length };
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
      const info = await shipInfo(target, ship);
      let next = Math.max(1, info.lastEve - options.lines + 1);
      await withNode(target, async (client) => {
        // Answers stop at a few MiB; ask again until the last `lines` events are in.
        const first: LogLine[] = [];
        while (next <= info.lastEve) {
          const batch = await client.ships.events(ship, next, info.lastEve - next + 1);
          if (batch.length === 0) break;
          for (const e of batch) first.push(describe(e, info.life));
          next = batch[batch.length - 1].eve + 1;
        }
        if (options.json && !options.follow) print(toJson(first));
        else if (options.json) { for (const l of first) console.log(JSON.stringify(l)); }
        else if (first.length > 0) print(formatTable(first, LOG_COLUMNS));
        else note(`${renderShip(ship)} has no events yet`);
        let widths = first;
        while (options.follow) {
          const batch = await client.ships.events(ship, next, 1000, 30_000);
          for (const e of batch) {
            const l = describe(e, info.life);
            if (options.json) console.log(JSON.stringify(l));
            else {
              // Same columns as the table; each line alone, aligned to the table's widths so far.
              widths = [...widths.slice(-50), l];
              print(formatTable(widths, LOG_COLUMNS).split("\n").pop()!);
            }
            next = e.eve + 1;
          }
        }
      });
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
      const info = await shipInfo(target, ship);
      const [e] = await withNode(
        target,
        (c) => c.ships.events(ship, eve, 1),
      );
      if (e === undefined || e.eve !== eve) {
        throw new CliError(`${renderShip(ship)} has no event ${eve} (its last is ${info.lastEve})`);
      }
      const job: Noun = cue(e.job);
      const formula = eve <= info.life;
      const record = formula ? undefined : decodeJob(job);
      const shown = renderNoun(formula ? job : record!.data, options.maxChars);
      const fields = {
        ship: renderShip(ship),
        eve,
        kind: formula ? "boot formula" : "ovum",
        time: record?.time ?? null,
        wire: record?.wire ?? null,
        card: record ? `%${record.tag}` : null,
        mug: hex32(e.mug),
        bytes: e.job.length,
        [formula ? "formula" : "data"]: shown.text,
      };
      if (options.json) {
        print(toJson(fields));
        return;
      }
      for (const [k, v] of Object.entries(fields)) {
        // Numbers as every table prints them (`log tail`'s SIZE): 3,356,302.
        print(`${colors.dim(k.padEnd(7))} ${typeof v === "number" ? count(v) : v ?? "-"}`);
      }
      if (shown.truncated) note(`(truncated at ${options.maxChars} characters; raise --max-chars)`);
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
    const results = await Promise.all(status.rows.map(async (row) => {
      if (row.address === null) return { id: row.id, error: "address unknown" };
      try {
        const v = await withNode(
          { address: row.address, credentials: target.credentials },
          (c) => c.ships.verify(ship),
        );
        return { id: row.id, ...v };
      } catch (e) {
        return { id: row.id, error: (e as Error).message };
      }
    }));
    const ok = results.filter((r): r is typeof r & ShipVerify => !("error" in r));
    const digests = new Set(ok.map((r) => `${r.lastEve}/${r.digest}`));
    const problems = ok.flatMap((r) => r.problems.map((p) => ({ node: r.id, ...p })));
    const agree = digests.size === 1 && ok.length === results.length;
    if (options.json) {
      print(toJson({ ship: renderShip(ship), agree, problems, nodes: results }));
    } else {
      print(formatTable(results, [
        { header: "node", cell: (r) => String(r.id), right: true },
        { header: "events", cell: (r) => "error" in r ? "-" : count(r.lastEve), right: true },
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
      note(`${renderShip(ship)}: ${ok.length} nodes agree on ${count(ok[0]?.lastEve ?? 0)} events`);
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
