/**
 * `seguro member list | add | remove | promote | transfer-leader`.
 * @module
 */

import { Command, type CommandUnknownOpts } from "@commander-js/extra-typings";
import { type ClusterClient, withLeader } from "../cluster/api.ts";
import { UsageError } from "./lib/errors.ts";
import {
  addressOption,
  cliErrorOf,
  targetFlags,
  targetOf,
  type TargetOptions,
} from "./lib/options.ts";
import { clusterStatus } from "./lib/cluster_status.ts";
import { formatTable, print, toJson } from "./lib/output.ts";

function nodeIdArgument(value: string): number {
  const n = Number(value);
  if (!Number.isInteger(n) || n < 1) {
    throw new UsageError(
      `'${value}' is not a node id; node ids are whole numbers from 1 (see 'seguro member list')`,
    );
  }
  return n;
}

async function change(
  options: TargetOptions,
  request: (c: ClusterClient) => Promise<{ message: string }>,
): Promise<void> {
  const target = targetOf(options);
  try {
    const answer = await withLeader(target.address, target.credentials, request);
    print(answer.message);
  } catch (e) {
    throw cliErrorOf(e);
  }
}

/** Builds the `member` command group. */
export function memberCommand(): CommandUnknownOpts {
  const group = new Command("member").description(
    "list and change the cluster's members (one change at a time)",
  );

  targetFlags(group.command("list").description("list members: id, address, voter or learner"))
    .option("--json", "print JSON")
    .action(async (options: TargetOptions & { json?: boolean }) => {
      const target = targetOf(options);
      let status;
      try {
        status = await clusterStatus(target.address, target.credentials);
      } catch (e) {
        throw cliErrorOf(e);
      }
      const rows = status.rows.map((r) => ({
        id: r.id,
        address: r.address,
        membership: r.membership,
        leader: r.id === status.leaderId,
        health: r.health,
      }));
      if (options.json) {
        print(toJson(rows));
        return;
      }
      print(formatTable(rows, [
        { header: "id", cell: (r) => String(r.id), right: true },
        { header: "address", cell: (r) => r.address ?? "?" },
        { header: "membership", cell: (r) => r.membership + (r.leader ? " (leader)" : "") },
        { header: "health", cell: (r) => r.health },
      ]));
    });

  targetFlags(
    group.command("add").description(
      "register a learner at HOST:PORT (then run 'seguro join' there)",
    ),
  )
    .argument("<host:port>", "the new member's address", addressOption)
    .action((address: string, options: TargetOptions) =>
      change(options, (c) => c.members.add(address))
    );

  targetFlags(
    group.command("remove").description("remove a member (refused if the rest would lose quorum)"),
  )
    .argument("<id>", "node id", nodeIdArgument)
    .option("--force", "remove even if the remaining voters cannot form a quorum now")
    .action((nodeId: number, options: TargetOptions & { force?: boolean }) =>
      change(options, (c) => c.members.remove(nodeId, { force: options.force === true }))
    );

  targetFlags(
    group.command("promote").description(
      "make a learner a voter now (normally automatic once caught up)",
    ),
  )
    .argument("<id>", "node id", nodeIdArgument)
    .action((nodeId: number, options: TargetOptions) =>
      change(options, (c) => c.members.promote(nodeId))
    );

  targetFlags(group.command("transfer-leader").description("hand leadership to another voter"))
    .argument("<id>", "node id", nodeIdArgument)
    .action((nodeId: number, options: TargetOptions) =>
      change(options, (c) => c.members.transfer(nodeId))
    );

  return group;
}
