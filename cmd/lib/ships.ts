/**
 * What the ship commands share: parsing ship and optimism arguments, and
 * asking a node (or the master) for the ship list.
 * @module
 */

import { ClusterClient } from "../../cluster/api.ts";
import type { ShipJson } from "../../cluster/admin_protocol.ts";
import { OPTIMISM_DEFAULT, OPTIMISM_QUORUM } from "../../cluster/release.ts";
import { parseShip, renderShip } from "../../vere/event.ts";
import { CliError, UsageError } from "./errors.ts";
import { cliErrorOf, type Target } from "./options.ts";
import { count } from "./output.ts";

/**
 * The events a ship's log holds, for a table cell: their number when it
 * starts at event 1, else (a chopped log) `first-last`, or `none` when a chop
 * left no event after its image.
 */
export function eventRange(firstEve: number, lastEve: number): string {
  if (firstEve === 1) return count(lastEve);
  return lastEve < firstEve ? "none" : `${count(firstEve)}-${count(lastEve)}`;
}

/** Parses a ship argument; a bad one is a usage error. */
export function shipArgument(value: string): bigint {
  const ship = parseShip(value);
  if (ship === undefined) {
    throw new UsageError(
      `'${value}' is not a ship name; give an @p such as ~zod or ~sampel-palnet`,
    );
  }
  return ship;
}

/** Runs `f` with a client connected to the target node (reads: any node will do). */
export async function withNode<T>(target: Target, f: (c: ClusterClient) => Promise<T>): Promise<T> {
  try {
    const client = await ClusterClient.connect(target.address, target.credentials);
    try {
      return await f(client);
    } finally {
      client.close();
    }
  } catch (e) {
    throw cliErrorOf(e);
  }
}

/**
 * The ship list as the master answers it: only the master knows where each
 * ship's runtime runs (any node answers a list, so asking the master takes
 * a status first). Without a reachable master, the target node's list.
 */
export async function masterShipList(target: Target): Promise<ShipJson[]> {
  const list = (c: ClusterClient) => c.ships.list();
  const status = await withNode(target, (c) => c.status());
  const master = status.leaderId !== 0 && status.leaderId !== status.nodeId
    ? status.leaderAddress
    : null;
  if (master === null) return await withNode(target, list);
  return await withNode({ ...target, address: master }, list)
    .catch(() => withNode(target, list));
}

/** The cluster's record of one ship, or a CliError saying it is not there. */
export async function shipInfo(target: Target, ship: bigint): Promise<ShipJson> {
  const ships = await withNode(target, (c) => c.ships.list());
  const found = ships.find((s) => s.ship === String(ship));
  if (found === undefined) {
    throw new CliError(`${renderShip(ship)} is not on this cluster; see 'seguro ship list'`);
  }
  return found;
}

/**
 * Parses --optimism: a replica count, `quorum` (-2), or `default` (-1: the
 * cluster's). Only the form: the leader checks the range against the
 * cluster's voters (cluster/release.ts `optimismProblem`).
 */
export function optimismOption(value: string): number {
  if (value === "quorum") return OPTIMISM_QUORUM;
  if (value === "default") return OPTIMISM_DEFAULT;
  if (!/^[0-9]{1,9}$/.test(value)) {
    throw new UsageError(
      `--optimism must be 'quorum', 'default' or a number of replicas (got '${value}')`,
    );
  }
  return Number(value);
}
