/**
 * `seguro status`: the cluster as a table, from any member.
 * @module
 */

import { Command, type CommandUnknownOpts } from "@commander-js/extra-typings";
import { ClusterClient, Op } from "../cluster/api.ts";
import { masterShipList } from "./ship.ts";
import {
  ELECTION_TICKS_DEFAULT,
  type NodeStatus,
  type ShipJson,
  TICK_MS_DEFAULT,
} from "../cluster/node.ts";
import { renderShip } from "../vere/event.ts";
import type { ClusterCredentials } from "../cluster/token.ts";
import { CliError } from "./errors.ts";
import { memberHealth } from "./health.ts";
import { addressOption, cliErrorOf, targetOf } from "./options.ts";
import { colors, count, formatTable, note, print, toJson } from "./output.ts";

/** The election timeout to judge contact by when the leader does not say (older nodes). */
const ELECTION_TIMEOUT_MS_DEFAULT = ELECTION_TICKS_DEFAULT * TICK_MS_DEFAULT;

/** How long a member may take to answer before it shows as unreachable. */
const MEMBER_TIMEOUT_MS = 2000;

/** Asks one node for its status; resolves with an Error instead of throwing. */
export async function fetchStatus(
  address: string,
  credentials: ClusterCredentials,
): Promise<NodeStatus | Error> {
  let timer: ReturnType<typeof setTimeout> | undefined;
  let client: ClusterClient | undefined;
  const timeout = new Promise<Error>((resolve) => {
    timer = setTimeout(
      () => resolve(new Error(`no answer in ${MEMBER_TIMEOUT_MS} ms`)),
      MEMBER_TIMEOUT_MS,
    );
  });
  const ask = (async () => {
    client = await ClusterClient.connect(address, credentials);
    return await client.requestJson<NodeStatus>(Op.status);
  })().catch((e) => e as Error);
  try {
    return await Promise.race([ask, timeout]);
  } finally {
    clearTimeout(timer);
    client?.close();
    ask.then(() => {}, () => {}).finally(() => client?.close());
  }
}

/** One row of the status table. */
export interface StatusRow {
  id: number;
  address: string | null;
  membership: "voter" | "learner";
  role: string;
  term: number | null;
  lastIndex: number | null;
  commitIndex: number | null;
  appliedIndex: number | null;
  lag: number | null;
  lastContactMs: number | null;
  health: string;
  error: string | null;
}

/** The cluster as `status` shows it. */
export interface ClusterStatus {
  /** Leader's node id, 0 when none. */
  leaderId: number;
  /** Term of the view. */
  term: number;
  /** Cluster id. */
  clusterId: string;
  /** One row per member. */
  rows: StatusRow[];
  /** Why the master's releases wait, if they do. */
  stalled: { need: number; have: number } | null;
  /** Released-but-lost events any reachable node has found. */
  losses: {
    node: number;
    ship: string;
    firstEve: number;
    lastEve: number;
    index: number;
    term: number;
  }[];
  /** Side-job alarms (standby piers, exec) of every reachable node. */
  alarms: { node: number; alarm: string }[];
}

/** The whole cluster seen from one member: its view, the leader's, and each member's own. */
export async function clusterStatus(
  address: string,
  credentials: ClusterCredentials,
): Promise<ClusterStatus> {
  const first = await fetchStatus(address, credentials);
  if (first instanceof Error) {
    throw new CliError(`cannot get status from ${address}: ${first.message}`);
  }
  let leader: NodeStatus | undefined = first.role === "leader" ? first : undefined;
  if (leader === undefined && first.leaderAddress !== null) {
    const l = await fetchStatus(first.leaderAddress, credentials);
    if (!(l instanceof Error) && l.role === "leader") leader = l;
  }
  const view = leader ?? first;
  const own = await Promise.all(
    view.members.map((m) =>
      m.address === null
        ? Promise.resolve(new Error("address unknown"))
        : fetchStatus(m.address, credentials)
    ),
  );
  const leaderLast = leader?.lastIndex ?? null;
  const rows = view.members.map((m, i): StatusRow => {
    const s = own[i];
    const reachable = !(s instanceof Error);
    const match = m.match;
    const lag = leaderLast === null
      ? null
      : reachable
      ? Math.max(0, leaderLast - (s as NodeStatus).lastIndex)
      : match === null
      ? null
      : leaderLast - match;
    const health = memberHealth({
      reachable,
      leaderKnown: leader !== undefined,
      isLeader: leader !== undefined && m.id === leader.nodeId,
      contactMs: m.lastContactMs,
      lag,
      electionTimeoutMs: leader?.electionTimeoutMs ?? ELECTION_TIMEOUT_MS_DEFAULT,
    });
    return {
      id: m.id,
      address: m.address,
      membership: m.membership,
      role: reachable ? (s as NodeStatus).role : "-",
      term: reachable ? (s as NodeStatus).term : null,
      lastIndex: reachable ? (s as NodeStatus).lastIndex : null,
      commitIndex: reachable ? (s as NodeStatus).commitIndex : null,
      appliedIndex: reachable ? (s as NodeStatus).appliedIndex : null,
      lag,
      lastContactMs: leader === undefined ? null : m.lastContactMs,
      health,
      error: reachable ? null : (s as Error).message,
    };
  });
  const losses = own.flatMap((s, i) =>
    s instanceof Error ? [] : s.release.losses.map((l) => ({ node: view.members[i].id, ...l }))
  );
  const alarms = own.flatMap((s, i) =>
    s instanceof Error ? [] : (s.alarms ?? []).map((alarm) => ({ node: view.members[i].id, alarm }))
  );
  return {
    alarms,
    leaderId: leader?.nodeId ?? 0,
    term: view.term,
    clusterId: view.clusterId,
    rows,
    stalled: leader?.release.stalled ?? null,
    losses,
  };
}

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
      for (const l of status.losses) {
        note(
          `RELEASED BUT LOST (found by node ${l.node}): ship ${l.ship} events ${l.firstEve}-${l.lastEve}; see 'seguro log audit'`,
        );
      }
    });
}
