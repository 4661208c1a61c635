/**
 * A snapshot being received, staged on disk until it is whole (tables
 * `snap_offer`, `snap_event`, `snap_image_chunk`), and its installation.
 *
 * Staged data is durable chunk by chunk, so a receiver that crashes goes on
 * where it stopped. It stays valid across offers: events and image chunks
 * of a ship never change while the ship stays (same `addedIndex`), so a new
 * offer drops only what belongs to ships that went or came back. What this
 * node already holds of a ship (same `addedIndex`) is never fetched again:
 * a follower behind by a few events fetches a few events.
 *
 * {@linkcode SnapshotStage.install} runs inside the store's transaction
 * that writes the snapshot name and empties the log, so the applied state
 * and the log move to the snapshot together or not at all.
 * @module
 */

import type { DatabaseSync, StatementSync } from "node:sqlite";
import type { SnapshotMeta } from "../../core/mod.ts";
import { type ShipInfo, shipKey, shipOfKey, type StoredEvent } from "../ships.ts";
import {
  decodeManifest,
  encodeManifest,
  type ManifestShip,
  type SnapshotManifest,
} from "../snapshot_manifest.ts";
import type { ShipTables } from "./ship_tables.ts";
import type { ImageTables } from "./image_tables.ts";
import { KeyValueTable } from "./key_value_table.ts";

/** An offer staged here: the snapshot's name and its manifest. */
export interface StagedOffer {
  /** The snapshot (index, term, membership). */
  readonly snapshot: SnapshotMeta;
  /** The mutable state at its index. */
  readonly manifest: SnapshotManifest;
}

/** The next piece a receiver lacks. */
export type SnapshotPiece =
  | { readonly kind: "events"; readonly ship: bigint; readonly from: number }
  | {
    readonly kind: "image";
    readonly ship: bigint;
    readonly epoch: number;
    readonly offset: number;
  };

/** Thrown when installing would break the state (a bug, never a condition to handle). */
export class SnapshotStageError extends Error {
  /** Creates the error; `message` names the values. */
  constructor(message: string) {
    super(message);
    this.name = "SnapshotStageError";
  }
}

/** Staging and installation of a received snapshot. */
export class SnapshotStage {
  readonly #ships: ShipTables;
  readonly #images: ImageTables;
  readonly #settings: KeyValueTable;
  readonly #write: (body: () => void) => void;
  readonly #st: Record<string, StatementSync>;

  /** Prepares the statements; `write` runs its body in one durable transaction of the store. */
  constructor(
    db: DatabaseSync,
    tables: { ships: ShipTables; images: ImageTables },
    write: (body: () => void) => void,
  ) {
    this.#ships = tables.ships;
    this.#images = tables.images;
    this.#settings = new KeyValueTable(db, "machine_setting");
    this.#write = write;
    const p = (sql: string) => db.prepare(sql);
    this.#st = {
      offer: p("SELECT idx, term, conf, manifest FROM snap_offer WHERE singleton = 1"),
      putOffer: p(
        "INSERT OR REPLACE INTO snap_offer (singleton, idx, term, conf, manifest) VALUES (1, ?, ?, ?, ?)",
      ),
      stagedShips: p(
        "SELECT DISTINCT ship FROM snap_event UNION SELECT DISTINCT ship FROM snap_image_chunk",
      ),
      dropShipEvents: p("DELETE FROM snap_event WHERE ship = ?"),
      dropShipChunks: p("DELETE FROM snap_image_chunk WHERE ship = ?"),
      dropImageChunks: p("DELETE FROM snap_image_chunk WHERE ship = ? AND epoch = ?"),
      eventRange: p("SELECT min(eve) AS lo, max(eve) AS hi FROM snap_event WHERE ship = ?"),
      chunkRange: p(
        "SELECT min(offset) AS lo, max(offset + length(data)) AS hi FROM snap_image_chunk WHERE ship = ? AND epoch = ?",
      ),
      putEvent: p(
        "INSERT OR REPLACE INTO snap_event (ship, eve, mug, job, entry_index, entry_term) VALUES (?, ?, ?, ?, ?, ?)",
      ),
      putChunk: p(
        "INSERT OR REPLACE INTO snap_image_chunk (ship, epoch, offset, data) VALUES (?, ?, ?, ?)",
      ),
      moveEvents: p(
        "INSERT INTO event (ship, eve, mug, job, entry_index, entry_term) SELECT ship, eve, mug, job, entry_index, entry_term FROM snap_event WHERE ship = ? AND eve > ? ORDER BY eve",
      ),
      moveChunks: p(
        "INSERT INTO image_chunk (ship, epoch, offset, data) SELECT ship, epoch, offset, data FROM snap_image_chunk WHERE ship = ? AND epoch = ? AND offset >= ? ORDER BY offset",
      ),
      lastEve: p("SELECT max(eve) AS hi FROM event WHERE ship = ?"),
      imageEnd: p(
        "SELECT coalesce(sum(length(data)), 0) AS size FROM image_chunk WHERE ship = ? AND epoch = ?",
      ),
      clearOffer: p("DELETE FROM snap_offer"),
      clearEvents: p("DELETE FROM snap_event"),
      clearChunks: p("DELETE FROM snap_image_chunk"),
      allSettings: p("SELECT key FROM machine_setting"),
    };
  }

  /** The applied state's manifest now (the sender's side). */
  manifestOfState(): SnapshotManifest {
    const ships = this.#ships.list().map((s): ManifestShip => ({
      ...s,
      images: this.#images.list(s.ship),
    }));
    return { ships, settings: this.#settings.withPrefix("") };
  }

  /** The offer staged here, if any. */
  staged(): StagedOffer | undefined {
    const row = this.#st.offer.get();
    if (row === undefined) return undefined;
    return {
      snapshot: {
        index: Number(row.idx),
        term: Number(row.term),
        conf: JSON.parse(String(row.conf)),
      },
      manifest: decodeManifest(row.manifest as Uint8Array),
    };
  }

  /**
   * Stages a new offer (durably), keeping what is staged for ships that
   * stay the same ship and dropping the rest.
   */
  stage(offer: StagedOffer): void {
    const keep = new Map(offer.manifest.ships.map((s) => [s.ship, s.addedIndex]));
    const old = this.staged();
    const oldAdded = new Map(old?.manifest.ships.map((s) => [s.ship, s.addedIndex]) ?? []);
    this.#write(() => {
      for (const row of this.#st.stagedShips.all()) {
        const key = row.ship as Uint8Array;
        const ship = shipOfKey(key);
        if (keep.get(ship) === undefined || keep.get(ship) !== oldAdded.get(ship)) {
          this.#st.dropShipEvents.run(key);
          this.#st.dropShipChunks.run(key);
        }
      }
      const s = offer.snapshot;
      this.#st.putOffer.run(
        s.index,
        s.term,
        JSON.stringify(s.conf),
        encodeManifest(offer.manifest),
      );
    });
  }

  /**
   * The first piece the staged offer still lacks, given what this node
   * holds and what is staged; undefined when the snapshot is whole (or none
   * is staged). Drops staged data that no longer joins what is held.
   */
  need(): SnapshotPiece | undefined {
    const offer = this.staged();
    if (offer === undefined) return undefined;
    for (const m of offer.manifest.ships) {
      const key = shipKey(m.ship);
      const held = this.#heldOf(m);
      const heldLast = held?.lastEve ?? 0;
      const ev = this.#st.eventRange.get(key)!;
      let have = heldLast;
      if (ev.hi !== null) {
        if (Number(ev.lo) > heldLast + 1) this.#write(() => this.#st.dropShipEvents.run(key));
        else have = Math.max(heldLast, Number(ev.hi));
      }
      if (have < m.lastEve) return { kind: "events", ship: m.ship, from: have + 1 };
      for (const image of m.images) {
        const heldSize = held === undefined ? 0 : this.#images.get(m.ship, image.epoch)?.size ?? 0;
        const ch = this.#st.chunkRange.get(key, image.epoch)!;
        let size = heldSize;
        if (ch.hi !== null) {
          if (Number(ch.lo) > heldSize) {
            this.#write(() => this.#st.dropImageChunks.run(key, image.epoch));
          } else size = Math.max(heldSize, Number(ch.hi));
        }
        if (size < image.size) {
          return { kind: "image", ship: m.ship, epoch: image.epoch, offset: size };
        }
      }
    }
    return undefined;
  }

  /** Stages events of one ship (durably). */
  stageEvents(ship: bigint, events: readonly StoredEvent[]): void {
    const key = shipKey(ship);
    this.#write(() => {
      for (const e of events) {
        this.#st.putEvent.run(key, e.eve, e.mug, e.job, e.entryIndex, e.entryTerm);
      }
    });
  }

  /** Stages one image chunk (durably). */
  stageImageChunk(ship: bigint, epoch: number, offset: number, data: Uint8Array): void {
    this.#write(() => this.#st.putChunk.run(shipKey(ship), epoch, offset, data));
  }

  /** Drops everything staged (durably). */
  clear(): void {
    this.#write(() => this.#clear());
  }

  /**
   * Makes the staged snapshot the applied state; runs INSIDE the store's
   * transaction that installs `snapshot` into the log. Throws
   * {@linkcode SnapshotStageError} when nothing whole is staged for it.
   */
  install(snapshot: SnapshotMeta): void {
    const offer = this.staged();
    if (offer?.snapshot.index !== snapshot.index || offer.snapshot.term !== snapshot.term) {
      throw new SnapshotStageError(
        `snapshot (index ${snapshot.index}, term ${snapshot.term}) is installed but the staged offer is ${
          offer === undefined
            ? "none"
            : `(index ${offer.snapshot.index}, term ${offer.snapshot.term})`
        }`,
      );
    }
    const wanted = new Map(offer.manifest.ships.map((s) => [s.ship, s]));
    for (const held of this.#ships.list()) {
      if (wanted.get(held.ship)?.addedIndex !== held.addedIndex) {
        this.#ships.deleteShip(held.ship);
        this.#images.deleteShip(held.ship);
      }
    }
    for (const m of offer.manifest.ships) {
      const key = shipKey(m.ship);
      const held = this.#heldOf(m);
      this.#st.moveEvents.run(key, held?.lastEve ?? 0);
      const last = Number(this.#st.lastEve.get(key)!.hi ?? 0);
      if (last !== m.lastEve) {
        throw new SnapshotStageError(
          `ship ${m.ship} holds events up to ${last} after installing snapshot ${snapshot.index}, which has ${m.lastEve}`,
        );
      }
      const { images, ...row } = m;
      this.#ships.putShip(row);
      for (const image of images) {
        const heldSize = held === undefined ? 0 : this.#images.get(m.ship, image.epoch)?.size ?? 0;
        this.#st.moveChunks.run(key, image.epoch, heldSize);
        const size = Number(this.#st.imageEnd.get(key, image.epoch)!.size);
        if (size !== image.size) {
          throw new SnapshotStageError(
            `ship ${m.ship} image ${image.epoch} holds ${size} bytes after installing snapshot ${snapshot.index}, which has ${image.size}`,
          );
        }
        this.#images.putImage(m.ship, image);
      }
    }
    for (const row of this.#st.allSettings.all()) this.#settings.delete(String(row.key));
    for (const { key, value } of offer.manifest.settings) this.#settings.set(key, value);
    this.#clear();
  }

  #heldOf(m: ManifestShip): ShipInfo | undefined {
    const held = this.#ships.get(m.ship);
    return held !== undefined && held.addedIndex === m.addedIndex ? held : undefined;
  }

  #clear(): void {
    this.#st.clearOffer.run();
    this.#st.clearEvents.run();
    this.#st.clearChunks.run();
  }
}
