/**
 * The node as the runtime protocol sees it: the one place that turns a
 * {@linkcode NodeDriver} into the backend `vere/runtime_hub.ts` serves
 * (structurally typed, so cluster/ does not import vere/). Used by
 * `seguro run` and by the whole-node simulator alike.
 * @module
 */

import type { NodeDriver } from "./driver.ts";
import type { Release } from "./release.ts";

/** Largest number of events one `%read` answers. */
export const RUNTIME_READ_EVENTS_MAX = 10_000;

/**
 * What a `read` answers: the applied events from `from`, or, when `from` is
 * before the ship's first event (a chop dropped the events before it), that
 * first event: the runtime is refused, not sent a list that starts elsewhere.
 */
export type RuntimeRead = { eve: number; mug: number; job: Uint8Array }[] | { firstEve: number };

/** The runtime protocol's view of one node. */
export interface RuntimeNode {
  /** This node's id. */
  nodeId: number;
  /** True while this node may release. */
  isMaster(): boolean;
  /** The master's address, '' when unknown, null while this node is becoming master. */
  masterAddress(): string | null;
  /** Every ship on the cluster. */
  ships(): bigint[];
  /** Plans one event. */
  plan(p: { ship: bigint; eve: number; mug: number; job: Uint8Array }): void;
  /** The ship's last event and mug (the master counts plans it accepted). */
  head(ship: bigint): { eve: number; mug: number } | undefined;
  /** Applied events from `from`, or the ship's first event when `from` is before it. */
  read(ship: bigint, from: number, count: number): RuntimeRead;
  /** Releases, refusals and role changes. */
  subscribe(listener: {
    release(r: Release): void;
    refuse(ship: bigint, eve: number, why: string): void;
    role(master: boolean): void;
    leader(): void;
  }): () => void;
}

/** The runtime protocol's view of `driver`. */
export function runtimeNodeOf(driver: NodeDriver): RuntimeNode {
  return {
    nodeId: driver.id,
    isMaster: () => driver.ships.isMaster,
    masterAddress: () =>
      driver.ships.becomingMaster ? null : driver.machine.addresses.get(driver.raft.leaderId) ?? "",
    ships: () => driver.machine.ships.list().map((s) => s.ship),
    plan: (p) => driver.ships.plan(p),
    head: (ship) => driver.ships.head(ship),
    read: (ship, from, count) => {
      const firstEve = driver.machine.ships.get(ship)?.firstEve ?? 1;
      if (from < firstEve) return { firstEve };
      return driver.machine.ships.events(ship, from, Math.min(count, RUNTIME_READ_EVENTS_MAX))
        .map(({ eve, mug, job }) => ({ eve, mug, job }));
    },
    subscribe: (l) => driver.ships.subscribe({ ...l, leader: () => l.leader(), lost: () => {} }),
  };
}
