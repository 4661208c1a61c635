/**
 * What the pier workflows of a client share (`seguro ship import`, `export`
 * and `attach`: server/pier_import.ts, pier_export.ts, pier_attach.ts): the
 * cluster they reach, the META of the ship's pier, and a pier's failures as
 * NodeErrors that name the pier.
 * @module
 */

import { ClusterClient } from "../cluster/api.ts";
import type { ClusterCredentials } from "../cluster/token.ts";
import { renderShip } from "../vere/event.ts";
import { LmdbError } from "../vere/lmdb.ts";
import { PierError, type PierMeta, readPierMeta } from "../vere/pier.ts";
import { NodeError } from "./errors.ts";

/** The cluster a pier workflow talks to: a member's address and the cluster's credentials. */
export interface ClusterTarget {
  /** Address of a member. */
  address: string;
  /** Cluster credentials. */
  credentials: ClusterCredentials;
}

/**
 * A failure of reading or writing the pier `pier` (vere/pier.ts, vere/lmdb.ts)
 * as a NodeError whose message names it; any other error unchanged.
 */
export function pierFailure(e: unknown, pier: string): unknown {
  if (e instanceof PierError || e instanceof LmdbError) {
    return new NodeError(`${pier}: ${e.message}`);
  }
  return e;
}

/** The META of `pier`, which must belong to `ship`; anything else is a NodeError. */
export function shipPierMeta(ship: bigint, pier: string): PierMeta {
  let meta: PierMeta;
  try {
    meta = readPierMeta(pier);
  } catch (e) {
    throw pierFailure(e, pier);
  }
  if (meta.who !== ship) {
    throw new NodeError(
      `${pier} belongs to ${renderShip(meta.who)}, not ${
        renderShip(ship)
      }; check the ship or the pier`,
    );
  }
  return meta;
}

/** Runs `f` with a client connected to the node at `target`, closed afterwards. */
export async function withNode<T>(
  target: ClusterTarget,
  f: (c: ClusterClient) => Promise<T>,
): Promise<T> {
  const client = await ClusterClient.connect(target.address, target.credentials);
  return await f(client).finally(() => client.close());
}
