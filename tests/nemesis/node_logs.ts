/**
 * Each node's log of a ship as the nemesis reads it from outside: its head
 * while it runs (asked over its runtime socket, as a runtime would: to wait
 * until nodes have caught up or converged), and, once the nodes are
 * stopped, its committed log, read from its `seguro.db` opened read-only
 * (tables `hard_state`, `ship`, `event` and `log_entry`, see cluster/store.ts
 * and cluster/storage/: an event row points into the log entry that carried
 * its job, or holds it; rows past the ship's `last_eve` are a snapshot being
 * received, not state). The applied event table is the committed log only
 * when a node has applied all it committed, so that is checked too.
 * @module
 */

import { DatabaseSync } from "node:sqlite";
import { join } from "node:path";
import { ShipLog } from "./event_columns.ts";
import type { FinalLog } from "./history.ts";
import { CLIENT_WAIT_MS, CONVERGE_MS, CONVERGE_POLL_MS } from "./limits.ts";
import { type NodeEndpoint, SpecConnection } from "./spec_connection.ts";
import { PROTOCOL_VERSION } from "./spec_codec.ts";

/** A ship's 16-byte key in the node's tables: the @p big-endian. */
function shipKey(ship: bigint): Uint8Array {
  const key = new Uint8Array(16);
  let v = ship;
  for (let i = 15; i >= 0; i--) {
    key[i] = Number(v & 0xffn);
    v >>= 8n;
  }
  return key;
}

/** A node's final state of one ship. */
export interface NodeFinal extends FinalLog {
  /** Its commit index. */
  commit: number;
  /** Its applied index. */
  applied: number;
}

/** Reads node `node`'s log of `ship` from its data dir (the node must be stopped). */
export function readFinalLog(node: number, dataDir: string, ship: bigint): NodeFinal {
  const db = new DatabaseSync(join(dataDir, "seguro.db"), { readOnly: true });
  try {
    const hs = db.prepare("SELECT commit_index, applied_index FROM hard_state").get() as
      | { commit_index: number; applied_index: number }
      | undefined;
    const log = new ShipLog();
    const rows = db.prepare(
      `SELECT e.eve, e.mug,
         CASE WHEN e.job_at >= 0 THEN substr(l.data, e.job_at + 1, e.job_len) ELSE e.job END AS job
       FROM event e JOIN ship s ON s.ship = e.ship
       LEFT JOIN log_entry l ON l.group_id = 1 AND l.idx = e.entry_index AND e.job_at >= 0
       WHERE e.ship = ? AND e.eve <= s.last_eve ORDER BY e.eve`,
    ).iterate(shipKey(ship));
    for (const row of rows) {
      const r = row as { eve: number; mug: number; job: Uint8Array | null };
      // A job whose entry is missing reads as no bytes: the checker reports the difference.
      log.append({ eve: Number(r.eve), mug: Number(r.mug), job: r.job ?? new Uint8Array(0) });
    }
    return {
      node,
      log,
      commit: Number(hs?.commit_index ?? 0),
      applied: Number(hs?.applied_index ?? 0),
    };
  } finally {
    db.close();
  }
}

/** The ship's head on one node, asked over its runtime socket (`%hail`, `%head`). */
export async function probeHead(
  node: NodeEndpoint,
  ship: bigint,
  connId: number,
): Promise<number> {
  const c = await SpecConnection.open(connId, node, CLIENT_WAIT_MS);
  try {
    c.send({ tag: "hail", version: PROTOCOL_VERSION });
    c.send({ tag: "head", ship });
    const deadline = Date.now() + CLIENT_WAIT_MS;
    while (Date.now() < deadline) {
      const a = await c.next(deadline - Date.now());
      if (a === undefined) continue;
      if ("closed" in a) throw new Error(`node ${node.id}: ${a.closed}`);
      if (a.msg.tag === "head" && a.msg.ship === ship) return a.msg.eve;
      if (a.msg.tag === "oops") throw new Error(`node ${node.id} answered %oops: ${a.msg.why}`);
    }
    throw new Error(`node ${node.id} did not answer %head within ${CLIENT_WAIT_MS} ms`);
  } finally {
    c.close("probe done");
  }
}

/**
 * Waits until every node reports the same head twice in a row (there is no
 * event for it, so it looks every {@linkcode CONVERGE_POLL_MS}); returns it.
 */
export async function waitConverged(nodes: readonly NodeEndpoint[], ship: bigint): Promise<number> {
  const deadline = Date.now() + CONVERGE_MS;
  let previous = "";
  let last = "";
  let probes = 0;
  while (Date.now() < deadline) {
    try {
      const heads = await Promise.all(nodes.map((n) => probeHead(n, ship, 1_000_000 + probes++)));
      last = heads.join(",");
      if (heads.every((h) => h === heads[0]) && last === previous) return heads[0];
      previous = last;
    } catch (e) {
      last = (e as Error).message;
      previous = "";
    }
    await new Promise((r) => setTimeout(r, CONVERGE_POLL_MS));
  }
  throw new Error(`the nodes' heads did not converge within ${CONVERGE_MS} ms (last: ${last})`);
}

/**
 * Waits until every node in `nodes` holds the ship up to `eve` (asked every
 * {@linkcode CONVERGE_POLL_MS}, as there is no event for it); false after
 * `timeoutMs`. Nodes that do not answer count as behind.
 */
export async function waitCaughtUp(
  nodes: readonly NodeEndpoint[],
  ship: bigint,
  eve: number,
  timeoutMs: number,
): Promise<boolean> {
  const deadline = Date.now() + timeoutMs;
  let probes = 0;
  while (Date.now() < deadline) {
    const heads = await Promise.all(
      nodes.map((n) => probeHead(n, ship, 2_000_000 + probes++).catch(() => -1)),
    );
    if (heads.every((h) => h >= eve)) return true;
    await new Promise((r) => setTimeout(r, CONVERGE_POLL_MS));
  }
  return false;
}
