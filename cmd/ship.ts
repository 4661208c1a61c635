/**
 * `seguro ship add | list | remove`: the ships whose event logs the cluster keeps.
 * @module
 */

import { Command, type CommandUnknownOpts } from "@commander-js/extra-typings";

import { ClusterClient, withLeader } from "../cluster/api.ts";

import type { PlannedEvent } from "../cluster/machine.ts";

import type { ShipJson } from "../cluster/admin_protocol.ts";

import { bootSequence, daFromMillis, parsePill, renderShip } from "../vere/event.ts";

import { jam, NounError } from "../vere/noun.ts";

import { CliError, UsageError } from "./lib/errors.ts";

import {
  cliErrorOf,
  type Target,
  targetFlags,
  targetOf,
  type TargetOptions,
} from "./lib/options.ts";

import { readNounFile } from "./lib/files.ts";

import { masterShipList, optimismOption, shipArgument, shipInfo } from "./lib/ships.ts";

import { count, formatTable, hex32, note, print, toJson } from "./lib/output.ts";

/** Events per `events` request: big enough to batch, small enough for one frame. */
const PLAN_BATCH_BYTES = 4 * 1024 * 1024;

async function planEvents(target: Target, ship: bigint, events: PlannedEvent[]): Promise<void> {
  const total = events.reduce((n, e) => n + e.job.length, 0);
  let sent = 0;
  let bytes = 0;
  await withLeader(target.address, target.credentials, async (client) => {
    while (sent < events.length) {
      const batch: PlannedEvent[] = [];
      let size = 0;
      while (
        sent + batch.length < events.length &&
        (batch.length === 0 || size + events[sent + batch.length].job.length <= PLAN_BATCH_BYTES)
      ) {
        size += events[sent + batch.length].job.length;
        batch.push(events[sent + batch.length]);
      }
      await client.ships.write({ kind: "events", ship, firstEve: sent + 1, events: batch });
      sent += batch.length;
      bytes += size;
      note(`planned ${sent}/${events.length} events (${count(bytes)} of ${count(total)} bytes)`);
    }
  });
}

/** Sends one ship request to the leader; errors become one-line CliErrors. */
async function shipRequestToLeader(
  options: TargetOptions,
  request: (c: ClusterClient) => Promise<unknown>,
): Promise<void> {
  const target = targetOf(options);
  try {
    await withLeader(target.address, target.credentials, request);
  } catch (e) {
    throw cliErrorOf(e);
  }
}

/** The `runtime` column of `ship list`: where the ship's runtime runs. */
function runtimeCell(s: ShipJson): string {
  const r = s.runtime;
  if (r !== undefined) {
    const pid = r.pid === undefined ? "" : ` pid ${r.pid}`;
    return `node ${r.nodeId}: ${r.state}${pid}${r.alarm === undefined ? "" : " (alarm)"}`;
  }
  if (s.run) return s.master ? `on node ${s.master}` : "waiting for a master";
  return "-";
}

/** Builds the `ship` command group. */
export function shipCommand(): CommandUnknownOpts {
  const group = new Command("ship").description("the ships whose event logs this cluster keeps");

  targetFlags(
    group.command("add")
      .description("add a ship; with --pill, plan a fake ship's boot sequence as its first events")
      .argument("<ship>", "the ship, e.g. ~zod", shipArgument)
      .option("--fake", "a fake ship (no network identity), as for development")
      .option("--pill <file>", "boot the fake ship from this pill (e.g. brass.pill)"),
  ).action(async (ship: bigint, options: TargetOptions & { fake?: boolean; pill?: string }) => {
    const target = targetOf(options);
    let events: PlannedEvent[] = [];
    let life = 0;
    if (options.pill !== undefined) {
      if (!options.fake) {
        throw new UsageError(
          "--pill boots a fake ship; pass --fake too (real ships are imported from their pier)",
        );
      }
      const { noun } = readNounFile(options.pill);
      try {
        const seq = bootSequence(parsePill(noun), {
          ship,
          bootTime: daFromMillis(Date.now()),
          entropy: crypto.getRandomValues(new Uint8Array(64)),
        });
        life = seq.life;
        events = seq.events.map((job) => ({ mug: 0, job: jam(job) }));
      } catch (e) {
        if (e instanceof NounError) {
          throw new CliError(`${options.pill} is not a usable pill: ${e.message}`);
        }
        throw e;
      }
    }
    try {
      await withLeader(
        target.address,
        target.credentials,
        (c) => c.ships.add(ship, { fake: options.fake === true, life }),
      );
      if (events.length > 0) await planEvents(target, ship, events);
    } catch (e) {
      throw cliErrorOf(e);
    }
    print(
      `Added ${renderShip(ship)}${
        events.length > 0 ? ` with its ${events.length} boot events (life ${life})` : ""
      }.`,
    );
  });

  targetFlags(
    group.command("list").description("every ship: events, last mug, bytes").option(
      "--json",
      "print JSON",
    ),
  )
    .action(async (options: TargetOptions & { json?: boolean }) => {
      const ships = await masterShipList(targetOf(options));
      if (options.json) {
        print(toJson(ships.map((s) => ({ ...s, name: renderShip(BigInt(s.ship)) }))));
        return;
      }
      print(formatTable(ships, [
        { header: "ship", cell: (s) => renderShip(BigInt(s.ship)) },
        { header: "events", cell: (s) => count(s.lastEve), right: true },
        { header: "last mug", cell: (s) => hex32(s.lastMug) },
        { header: "bytes", cell: (s) => count(s.bytes), right: true },
        { header: "life", cell: (s) => String(s.life), right: true },
        {
          header: "optimism",
          cell: (s) => {
            const k = s.optimism === -1 ? s.defaultOptimism ?? -1 : s.optimism;
            const text = k < 0 ? "quorum" : String(k);
            return s.optimism === -1 ? `${text} (default)` : text;
          },
        },
        { header: "master", cell: (s) => s.master ? `node ${s.master}` : "none" },
        { header: "runtime", cell: runtimeCell },
        { header: "kind", cell: (s) => s.fake ? "fake" : "real" },
      ]));
      for (const s of ships) {
        if (s.runtime?.alarm !== undefined) {
          note(`${renderShip(BigInt(s.ship))}: ${s.runtime.alarm}`);
        }
      }
      if (ships.length === 0) note("no ships yet; add one with 'seguro ship add ~ship'");
    });

  targetFlags(
    group.command("set")
      .description("change a ship's optimism: replicas that must hold an event before release")
      .argument("<ship>", "the ship", shipArgument)
      .requiredOption(
        "--optimism <k>",
        "replicas besides the master: 0 (fastest) up to the other voters (2 on 3 nodes), 'quorum', or 'default' (the cluster's)",
        optimismOption,
      ),
  ).action(async (ship: bigint, options: TargetOptions & { optimism: number }) => {
    await shipRequestToLeader(options, (c) => c.ships.set(ship, options.optimism));
    print(
      `${renderShip(ship)}: optimism ${
        options.optimism === -1
          ? "the cluster default"
          : options.optimism === -2
          ? "quorum"
          : options.optimism
      }.`,
    );
  });

  targetFlags(
    group.command("run")
      .description(
        "have the master run the ship's runtime (its 'seguro run --exec' command) and move it on failover",
      )
      .argument("<ship>", "the ship", shipArgument)
      .option("--off", "stop running it: the master stops the runtime and leaves the pier"),
  ).action(async (ship: bigint, options: TargetOptions & { off?: boolean }) => {
    await shipRequestToLeader(options, (c) => c.ships.run(ship, options.off !== true));
    print(
      options.off
        ? `${renderShip(ship)}: the master stops its runtime.`
        : `${renderShip(ship)}: the master runs it (see 'seguro ship list').`,
    );
  });

  targetFlags(
    group.command("default")
      .description("the cluster-wide optimism for ships without their own (default: quorum)")
      .requiredOption(
        "--optimism <k>",
        "replicas besides the master: 0 (fastest) up to the other voters (2 on 3 nodes), or 'quorum'",
        optimismOption,
      ),
  ).action(async (options: TargetOptions & { optimism: number }) => {
    await shipRequestToLeader(options, (c) => c.ships.setDefault(options.optimism));
    print(`Default optimism: ${options.optimism < 0 ? "quorum" : options.optimism}.`);
  });

  targetFlags(
    group.command("remove")
      .description("remove a ship and every event of it from the cluster (asks for confirmation)")
      .argument("<ship>", "the ship", shipArgument)
      .option("--yes", "do not ask: remove it"),
  ).action(async (ship: bigint, options: TargetOptions & { yes?: boolean }) => {
    const target = targetOf(options);
    const info = await shipInfo(target, ship);
    const name = renderShip(ship);
    if (!options.yes) {
      if (!Deno.stdin.isTerminal()) {
        throw new UsageError(
          `removing ${name} deletes its ${info.lastEve} events on every node; pass --yes to confirm`,
        );
      }
      const answer = prompt(
        `Remove ${name} and its ${info.lastEve} events from every node? Type ${name} to confirm:`,
      );
      if (answer?.trim() !== name) throw new CliError(`not removed: the answer was not ${name}`);
    }
    try {
      await withLeader(
        target.address,
        target.credentials,
        (c) => c.ships.remove(ship),
      );
    } catch (e) {
      throw cliErrorOf(e);
    }
    print(`Removed ${name} (${info.lastEve} events).`);
  });

  return group;
}
