/**
 * `seguro status`: the cluster as a table, from any member.
 * @module
 */

import { Command, type CommandUnknownOpts } from "@commander-js/extra-typings";

import { masterShipList } from "./lib/ships.ts";

import { clusterStatus } from "./lib/cluster_status.ts";

import type { ShipJson } from "../cluster/admin_protocol.ts";

import { renderShip } from "../vere/event.ts";

import { addressOption, cliErrorOf, targetOf } from "./lib/options.ts";

import { colors, count, formatTable, note, print, toJson } from "./lib/output.ts";

function ago(ms: number | null): string {
  if (ms === null) return "-";
  if (ms < 1000) return `${ms}ms ago`;
  return `${(ms / 1000).toFixed(1)}s ago`;
}

function num(n: number | null): string {
  return n === null ? "-" : count(n);
}

/** Builds the `status` command. */
export function statusCommand(): CommandUnknownOpts {
  return new Command("status")
    .description("show every member: role, term, indexes, lag behind the leader, health")
    .option(
      "--data-dir <dir>",
      "ask the node of this data dir (default $SEGURO_DATA_DIR or ~/.seguro)",
    )
    .option("--cluster <host:port>", "ask this member instead (needs the token)", addressOption)
    .option("--token-file <file>", "file holding the cluster token (or set SEGURO_TOKEN)")
    .option(
      "--token <token>",
      "the cluster token (visible in ps; prefer SEGURO_TOKEN or --token-file)",
    )
    .option("--json", "print JSON")
    .action(async (options) => {
      const target = targetOf(options);
      let status;
      try {
        status = await clusterStatus(target.address, target.credentials);
      } catch (e) {
        throw cliErrorOf(e);
      }
      // Where each ship's runtime runs (exec mode), as the master reports it.
      const ships = status.leaderId === 0
        ? []
        : await masterShipList(target).catch(() => [] as ShipJson[]);
      const runtimes = ships.filter((s) => s.run || s.runtime !== undefined).map((s) => ({
        ship: s.ship,
        name: renderShip(BigInt(s.ship)),
        runtime: s.runtime ?? null,
      }));
      if (options.json) {
        print(toJson({ ...status, runtimes }));
        return;
      }
      const health = (h: string) => h === "ok" ? colors.green(h) : colors.red(h);
      print(formatTable(status.rows, [
        { header: "id", cell: (r) => String(r.id), right: true },
        { header: "address", cell: (r) => r.address ?? "?" },
        {
          header: "role",
          cell: (r) => r.membership === "learner" && r.role !== "-" ? "learner" : r.role,
        },
        { header: "term", cell: (r) => num(r.term), right: true },
        { header: "last", cell: (r) => num(r.lastIndex), right: true },
        { header: "commit", cell: (r) => num(r.commitIndex), right: true },
        { header: "applied", cell: (r) => num(r.appliedIndex), right: true },
        { header: "lag", cell: (r) => num(r.lag), right: true },
        {
          header: "contact",
          cell: (r) => r.id === status.leaderId ? "(leader)" : ago(r.lastContactMs),
        },
        { header: "health", cell: (r) => health(r.health) },
      ]));
      const voters = status.rows.filter((r) => r.membership === "voter");
      // Stale voters answer this CLI but not the leader: they do not make a quorum.
      const up = voters.filter((r) => r.health !== "unreachable" && r.health !== "stale").length;
      const quorum = Math.floor(voters.length / 2) + 1;
      note(
        `cluster ${status.clusterId.slice(0, 8)}: ${
          status.leaderId ? `leader node ${status.leaderId}` : "NO LEADER"
        }, term ${status.term}; ${up} of ${voters.length} voters reachable (quorum ${quorum}${
          up >= quorum ? "" : ", LOST"
        })`,
      );
      for (const r of status.rows) if (r.error) note(`node ${r.id}: ${r.error}`);
      if (status.stalled !== null) {
        note(
          `releases are STALLED: an event needs ${status.stalled.need} replicas besides the master, ${status.stalled.have} hold it; they resume when replicas return`,
        );
      }
      for (const r of runtimes) {
        const rt = r.runtime;
        note(
          rt === null
            ? `${r.name}: its runtime waits for a master`
            : `${r.name}: runtime on node ${rt.nodeId} (${rt.state}${
              rt.pid === undefined ? "" : `, pid ${rt.pid}`
            })${rt.alarm === undefined ? "" : `; ALARM: ${rt.alarm}`}`,
        );
      }
      for (const a of status.alarms) note(`node ${a.node} ALARM ${a.alarm}`);
      const soonest = status.certificates.toSorted((a, b) => a.notAfter.localeCompare(b.notAfter));
      if (soonest.length > 0) {
        const first = soonest[0];
        const days = (iso: string) => Math.round((Date.parse(iso) - Date.now()) / 86_400_000);
        const left = days(first.notAfter);
        const text =
          `certificates: node ${first.node}'s expires first, ${first.notAfter} (in ${left} days); the CA ${first.caNotAfter}`;
        note(
          left < 14
            ? `${text}; RENEW: run 'seguro cert rotate' on node ${first.node} (or restart it)`
            : text,
        );
      }
      for (const l of status.losses) {
        note(
          `RELEASED BUT LOST (found by node ${l.node}): ship ${l.ship} events ${l.firstEve}-${l.lastEve}; see 'seguro log audit'`,
        );
      }
    });
}
