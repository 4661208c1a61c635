/**
 * `seguro ship add | list | set | run | default | remove | chop`: the ships
 * whose event logs the cluster keeps. `add` with a pill and `chop` (plan,
 * confirm, apply) are workflows (server/ship_admin.ts); the others are one
 * request each.
 * @module
 */

import { Command, type CommandUnknownOpts } from "@commander-js/extra-typings";

import { ClusterClient, withLeader } from "../cluster/api.ts";

import type { ShipJson } from "../cluster/admin_protocol.ts";

import { renderShip } from "../vere/event.ts";

import { addShip, chopShip, describeChop } from "../server/ship_admin.ts";

import { CliError, positiveOption, UsageError } from "./lib/errors.ts";

import { cliErrorOf, targetFlags, targetOf, type TargetOptions } from "./lib/options.ts";

import { readNounFile } from "./lib/files.ts";

import { eventRange, masterShipList, optimismOption, shipArgument, shipInfo } from "./lib/ships.ts";

import { count, formatTable, hex32, note, print, toJson } from "./lib/output.ts";

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
    if (options.pill !== undefined && !options.fake) {
      throw new UsageError(
        "--pill boots a fake ship; pass --fake too (real ships are imported from their pier)",
      );
    }
    const pill = options.pill === undefined
      ? undefined
      : { noun: readNounFile(options.pill).noun, name: options.pill };
    try {
      const r = await addShip(target, ship, {
        fake: options.fake === true,
        pill,
        progress: (p) =>
          note(
            `planned ${p.events}/${p.total} events (${count(p.bytes)} of ${
              count(p.totalBytes)
            } bytes)`,
          ),
      });
      print(
        `Added ${renderShip(ship)}${
          r.events > 0 ? ` with its ${r.events} boot events (life ${r.life})` : ""
        }.`,
      );
    } catch (e) {
      throw cliErrorOf(e);
    }
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
        { header: "events", cell: (s) => eventRange(s.firstEve ?? 1, s.lastEve), right: true },
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

  targetFlags(
    group.command("chop")
      .description(
        "drop a ship's events before its newest epoch image the cluster holds, on every node, for good (asks for confirmation)",
      )
      .argument("<ship>", "the ship", shipArgument)
      .option(
        "--keep-epochs <n>",
        "epochs whose events stay (1: only the newest epoch's)",
        positiveOption("--keep-epochs"),
        1,
      )
      .option("--yes", "do not ask: chop"),
  ).action(async (ship: bigint, options: TargetOptions & { keepEpochs: number; yes?: boolean }) => {
    const target = targetOf(options);
    const name = renderShip(ship);
    const keepEpochs = options.keepEpochs;
    let agreed: number | undefined;
    try {
      if (!options.yes) {
        const plan = await chopShip(target, ship, { keepEpochs });
        const what = `Chopping ${describeChop(plan)}.`;
        if (!Deno.stdin.isTerminal()) {
          print(what);
          throw new UsageError(
            `not chopped: the events it drops are gone for good on every node; pass --yes to chop ${name}`,
          );
        }
        print(what);
        const answer = prompt(`The dropped events are gone for good. Type ${name} to chop:`);
        if (answer?.trim() !== name) throw new CliError(`not chopped: the answer was not ${name}`);
        agreed = plan.firstEve;
      }
      note(`asking the leader to chop ${name} (it checks the epoch image's SHA-256 first)`);
      const done = await chopShip(target, ship, { keepEpochs, confirm: true, firstEve: agreed });
      const line = describeChop(done);
      print(`${line[0].toUpperCase()}${line.slice(1)}.`);
    } catch (e) {
      throw cliErrorOf(e);
    }
  });

  return group;
}
