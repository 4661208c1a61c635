/**
 * The whole cluster seen from one member: its view, the leader's, and each
 * member's own status, with health (`seguro status`, and commands that need a
 * member's address or the leader).
 * @module
 */

import { ClusterClient } from "../../cluster/api.ts";
import { ELECTION_TICKS_DEFAULT, TICK_MS_DEFAULT } from "../../cluster/node.ts";
import type { NodeStatus } from "../../cluster/admin_protocol.ts";
import type { ClusterCredentials } from "../../cluster/token.ts";
import { CliError } from "./errors.ts";
import { memberHealth } from "./health.ts";

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
    return await client.status();
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
  /** When each reachable node's certificate expires (ISO 8601), and the CA; empty in plaintext. */
  certificates: { node: number; serial: string; notAfter: string; caNotAfter: string }[];
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
  const certificates = own.flatMap((s, i) =>
    s instanceof Error || !s.certificates ? [] : [{
      node: view.members[i].id,
      ...s.certificates.node,
      caNotAfter: s.certificates.caNotAfter,
    }]
  );
  return {
    alarms,
    certificates,
    leaderId: leader?.nodeId ?? 0,
    term: view.term,
    clusterId: view.clusterId,
    rows,
    stalled: leader?.release.stalled ?? null,
    losses,
  };
}
