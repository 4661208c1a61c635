/**
 * Creating a node's data dir, the one way for `seguro init`, `seguro join`
 * and `seguro run --machines`: refuse one that holds something, write the
 * store and the node files, undo a half-made one; and the address a node
 * advertises.
 * @module
 */

import { parseAddress } from "../cluster/address.ts";
import { writeNodeFiles } from "../cluster/datadir.ts";
import { Store, StoreError } from "../cluster/store.ts";
import type { ClusterToken } from "../cluster/token.ts";
import { NodeError, NodeUsageError } from "./errors.ts";

/** What a new node's data dir records. */
export interface NewNode {
  /** The cluster and its secret (the cluster token). */
  credentials: ClusterToken;
  /** This node's id. */
  nodeId: number;
  /** Where it listens and where others reach it. */
  listen: string;
  advertise: string;
  /** The founding membership: empty for a node that joins (it learns it from the log). */
  voters: number[];
  /** Founding members' addresses (a static cluster), as if applied. */
  addresses?: ReadonlyMap<number, string>;
}

/**
 * Writes the data dir of a new node into `dir` (absent or empty: see
 * {@linkcode assertFreshDataDir}, whose answer is `existed`): the store and
 * the node files. On any failure it removes what it wrote and throws a
 * NodeError (a store refusal) or the original error.
 */
export function createNodeDir(dir: string, node: NewNode, existed: boolean): void {
  try {
    Store.create(dir, {
      identity: { clusterId: node.credentials.clusterId, nodeId: node.nodeId, groupId: 1 },
      secret: node.credentials.secret,
      conf: { voters: node.voters, learners: [] },
      settings: { listen: node.listen, advertise: node.advertise },
      addresses: node.addresses,
    }).close();
    writeNodeFiles(dir, {
      clusterId: node.credentials.clusterId,
      nodeId: node.nodeId,
      listen: node.listen,
      advertise: node.advertise,
    }, node.credentials);
  } catch (e) {
    undoCreate(dir, existed);
    throw e instanceof StoreError ? new NodeError(e.message) : e;
  }
}

/** Default address a node listens on. */
export const LISTEN_DEFAULT = "127.0.0.1:7700";

/** Refuses a data dir that already holds something; returns whether it exists (empty). */
export function assertFreshDataDir(dir: string): boolean {
  try {
    for (const _ of Deno.readDirSync(dir)) {
      throw new NodeError(
        `${dir} is not empty (it may hold a node already); use 'seguro run --data-dir ${dir}', or choose another --data-dir`,
      );
    }
    return true;
  } catch (e) {
    if (e instanceof Deno.errors.NotFound) return false;
    throw e;
  }
}

/**
 * Undoes a half-made node after a failure: removes what was written into
 * `dir` (empty before) and `dir` itself unless it `existed`.
 */
export function undoCreate(dir: string, existed: boolean): void {
  try {
    if (!existed) {
      Deno.removeSync(dir, { recursive: true });
      return;
    }
    for (const entry of Deno.readDirSync(dir)) {
      Deno.removeSync(`${dir}/${entry.name}`, { recursive: true });
    }
  } catch (e) {
    if (!(e instanceof Deno.errors.NotFound)) throw e;
  }
}

/** The advertised address: --advertise, else --listen unless that is a wildcard. */
export function advertiseOf(listen: string, advertise: string | undefined): string {
  if (advertise !== undefined) return advertise;
  const host = parseAddress(listen).hostname;
  if (host === "0.0.0.0" || host === "::") {
    throw new NodeUsageError(
      `--listen ${listen} is every interface; also pass --advertise HOST:PORT, the address other machines reach this one at`,
    );
  }
  return listen;
}
