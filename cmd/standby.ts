/**
 * Standby piers: on every node that runs with `--standby-dir DIR`, each ship
 * on the cluster has a pier `DIR/<ship>/` whose event log holds every event
 * this node has applied, so stock vere can boot from it after a failover.
 * The cluster's applied state is the source; the pier is written with vere's
 * own LMDB format (vere/pier.ts, vere/lmdb.ts).
 * @module
 */

import { join } from "node:path";
import type { ShipTables } from "../cluster/ships.ts";
import { renderShip } from "../vere/event.ts";
import { Env, eventKey } from "../vere/lmdb.ts";
import { LOG_VERSION, readPierMeta, writePier } from "../vere/pier.ts";

/** Events appended per call, so a long catch-up does not stall the node. */
const CATCH_UP_EVENTS_MAX = 10_000;

interface Standby {
  env: Env;
  last: number;
}

/** Keeps one standby pier per ship up to date with the applied state. */
export class StandbyPiers {
  readonly #dir: string;
  readonly #ships: ShipTables;
  readonly #log: (line: string) => void;
  readonly #open = new Map<bigint, Standby>();

  /** Standby piers under `dir` for the ships in `ships`. */
  constructor(dir: string, ships: ShipTables, log: (line: string) => void) {
    this.#dir = dir;
    this.#ships = ships;
    this.#log = log;
    Deno.mkdirSync(dir, { recursive: true });
  }

  /** Brings every ship's pier up to its applied events (at most a bounded batch per call). */
  sync(): void {
    for (const info of this.#ships.list()) {
      let s = this.#open.get(info.ship);
      if (s === undefined) s = this.#openPier(info.ship, info.fake, info.life);
      if (s.last >= info.lastEve) continue;
      const events = this.#ships.events(info.ship, s.last + 1, CATCH_UP_EVENTS_MAX);
      s.env.writeTxn((txn) => {
        const db = txn.openDb("EVENTS", { integerKey: true });
        for (const e of events) {
          const value = new Uint8Array(4 + e.job.length);
          new DataView(value.buffer).setUint32(0, e.mug, true);
          value.set(e.job, 4);
          txn.put(db, eventKey(e.eve), value, { noOverwrite: true });
        }
      });
      s.last = events[events.length - 1]?.eve ?? s.last;
    }
    for (const [ship, s] of this.#open) {
      if (this.#ships.get(ship) === undefined) {
        s.env.close();
        this.#open.delete(ship);
        this.#log(`standby pier of ${renderShip(ship)} left in place: the ship was removed`);
      }
    }
  }

  #openPier(ship: bigint, fake: boolean, life: number): Standby {
    const pier = join(this.#dir, renderShip(ship));
    let last = 0;
    try {
      readPierMeta(pier);
    } catch {
      // No pier yet: write one with no events, then append as events apply.
      writePier(pier, {
        meta: { version: LOG_VERSION, who: ship, fake, life },
        events: [],
        vereVersion: "4.0",
      });
      this.#log(`standby pier of ${renderShip(ship)} created at ${pier}`);
    }
    const env = Env.open(join(pier, ".urb", "log", "0i0"));
    env.readTxn((txn) => {
      const db = txn.openDb("EVENTS", { integerKey: true });
      last = txn.stat(db).entries;
    });
    const s = { env, last };
    this.#open.set(ship, s);
    return s;
  }

  /** Closes the piers' environments. */
  close(): void {
    for (const s of this.#open.values()) s.env.close();
    this.#open.clear();
  }
}
