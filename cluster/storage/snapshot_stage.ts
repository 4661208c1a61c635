/**
 * A snapshot being received, staged on disk until it is whole, and its
 * installation.
 *
 * Staged data is written chunk by chunk, each in its own transaction that
 * is fsynced with the next durable write (the WAL is sequential, so a crash
 * loses at most the last few), so a receiver that crashes goes on about
 * where it stopped. It stays valid across offers: events and image chunks
 * of a ship never change while the ship stays (same `addedIndex`), so a new
 * offer drops only what belongs to ships that went or came back. What this
 * node already holds of a ship (same `addedIndex`) is never fetched again:
 * a follower behind by a few events fetches a few events.
 *
 * Where staged rows go: for a ship this node holds as the same ship, or
 * does not hold at all, into the applied tables themselves, past what the
 * ship row counts (`event` rows after `last_eve`, `image_chunk` rows at or
 * after the image's `size`): readers never see them (cluster/storage/
 * ship_tables.ts and image_tables.ts read only what the rows count), and
 * installing is then rewriting the ship rows: no copy, whatever the size.
 * Only for a ship this node holds as ANOTHER ship (removed and added again
 * while this node was behind) do they go to `snap_event` and
 * `snap_image_chunk`, moved at install.
 *
 * {@linkcode SnapshotStage.install} runs inside the store's transaction
 * that writes the snapshot name and empties the log, so the applied state
 * and the log move to the snapshot together or not at all.
 * @module
 */

import type { DatabaseSync, StatementSync } from "node:sqlite";
import type { SnapshotMeta } from "../../core/mod.ts";
import { type ShipInfo, shipKey, type StoredEvent } from "../ships.ts";
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
  /** The `snap_offer` row as last read or written (null: not read yet). */
  #offer: StagedOffer | undefined | null = null;

  /** Prepares the statements; `write` runs its body in one transaction of the store (not fsynced on its own). */
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
      // Rows staged past what a ship row counts (direct staging).
      // (Ends found through the index, one row each: min() and max() together would scan.)
      eventsPast: p(
        `SELECT (SELECT eve FROM event WHERE ship = ?1 AND eve > ?2 ORDER BY eve LIMIT 1) AS lo,
          (SELECT eve FROM event WHERE ship = ?1 AND eve > ?2 ORDER BY eve DESC LIMIT 1) AS hi`,
      ),
      dropEventsPast: p("DELETE FROM event WHERE ship = ? AND eve > ?"),
      chunksPast: p(
        `SELECT (SELECT offset FROM image_chunk WHERE ship = ?1 AND epoch = ?2 AND offset >= ?3
            ORDER BY offset LIMIT 1) AS lo,
          (SELECT offset + max(length(data), data_len) FROM image_chunk
            WHERE ship = ?1 AND epoch = ?2 AND offset >= ?3 ORDER BY offset DESC LIMIT 1) AS hi`,
      ),
      dropChunksPast: p("DELETE FROM image_chunk WHERE ship = ? AND epoch = ? AND offset >= ?"),
      dropOrphanChunks: p(
        "DELETE FROM image_chunk WHERE ship = ?1 AND epoch NOT IN (SELECT epoch FROM image WHERE ship = ?1)",
      ),
      // Rows staged for another ship of the same name (snap_ tables).
      snapEvents: p(
        `SELECT (SELECT eve FROM snap_event WHERE ship = ?1 ORDER BY eve LIMIT 1) AS lo,
          (SELECT eve FROM snap_event WHERE ship = ?1 ORDER BY eve DESC LIMIT 1) AS hi`,
      ),
      snapChunks: p(
        `SELECT (SELECT offset FROM snap_image_chunk WHERE ship = ?1 AND epoch = ?2
            ORDER BY offset LIMIT 1) AS lo,
          (SELECT offset + length(data) FROM snap_image_chunk WHERE ship = ?1 AND epoch = ?2
            ORDER BY offset DESC LIMIT 1) AS hi`,
      ),
      dropSnapEvents: p("DELETE FROM snap_event WHERE ship = ?"),
      dropSnapChunks: p("DELETE FROM snap_image_chunk WHERE ship = ?"),
      dropSnapImageChunks: p("DELETE FROM snap_image_chunk WHERE ship = ? AND epoch = ?"),
      putSnapEvent: p(
        "INSERT OR REPLACE INTO snap_event (ship, eve, mug, job, entry_index, entry_term) VALUES (?, ?, ?, ?, ?, ?)",
      ),
      putSnapChunk: p(
        "INSERT OR REPLACE INTO snap_image_chunk (ship, epoch, offset, data) VALUES (?, ?, ?, ?)",
      ),
      moveEvents: p(
        "INSERT INTO event (ship, eve, mug, job, entry_index, entry_term) SELECT ship, eve, mug, job, entry_index, entry_term FROM snap_event WHERE ship = ? AND eve <= ? ORDER BY eve",
      ),
      moveChunks: p(
        "INSERT INTO image_chunk (ship, epoch, offset, data) SELECT ship, epoch, offset, data FROM snap_image_chunk WHERE ship = ? AND epoch = ? AND offset < ? ORDER BY offset",
      ),
      // Checks of an install.
      eventSpan: p(
        `SELECT (SELECT eve FROM event WHERE ship = ?1 AND eve > ?2 AND eve <= ?3
            ORDER BY eve LIMIT 1) AS lo,
          (SELECT eve FROM event WHERE ship = ?1 AND eve > ?2 AND eve <= ?3
            ORDER BY eve DESC LIMIT 1) AS hi`,
      ),
      imageBytes: p(
        "SELECT coalesce(sum(max(length(data), data_len)), 0) AS size FROM image_chunk WHERE ship = ? AND epoch = ? AND offset < ?",
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

  /** The offer staged here, if any (read from the table once, then kept with it). */
  staged(): StagedOffer | undefined {
    if (this.#offer !== null) return this.#offer;
    const row = this.#st.offer.get();
    this.#offer = row === undefined ? undefined : {
      snapshot: {
        index: Number(row.idx),
        term: Number(row.term),
        conf: JSON.parse(String(row.conf)),
      },
      manifest: decodeManifest(row.manifest as Uint8Array),
    };
    return this.#offer;
  }

  /**
   * Stages a new offer, keeping what is staged for ships that
   * stay the same ship and dropping the rest.
   */
  stage(offer: StagedOffer): void {
    const added = new Map(offer.manifest.ships.map((s) => [s.ship, s.addedIndex]));
    const old = this.staged();
    this.#write(() => {
      for (const m of old?.manifest.ships ?? []) {
        if (added.get(m.ship) !== m.addedIndex) this.#dropStaged(m.ship);
      }
      const s = offer.snapshot;
      this.#st.putOffer.run(
        s.index,
        s.term,
        JSON.stringify(s.conf),
        encodeManifest(offer.manifest),
      );
    });
    this.#offer = offer;
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
      const where = this.#whereOf(m);
      const heldLast = where.direct ? where.held?.lastEve ?? 0 : 0;
      // Events before the manifest's first (chopped there) are not fetched.
      const base = Math.max(heldLast, m.firstEve - 1);
      const ev = where.direct
        ? this.#st.eventsPast.get(key, heldLast)!
        : this.#st.snapEvents.get(key)!;
      let have = base;
      if (ev.hi !== null) {
        if (Number(ev.lo) > base + 1) {
          this.#write(() =>
            where.direct
              ? this.#st.dropEventsPast.run(key, heldLast)
              : this.#st.dropSnapEvents.run(key)
          );
        } else have = Math.max(base, Number(ev.hi));
      }
      if (have < m.lastEve) return { kind: "events", ship: m.ship, from: have + 1 };
      for (const image of m.images) {
        const heldSize = where.direct ? this.#heldSize(where.held, image.epoch) : 0;
        const ch = where.direct
          ? this.#st.chunksPast.get(key, image.epoch, heldSize)!
          : this.#st.snapChunks.get(key, image.epoch)!;
        let size = heldSize;
        if (ch.hi !== null) {
          if (Number(ch.lo) > heldSize) {
            this.#write(() =>
              where.direct
                ? this.#st.dropChunksPast.run(key, image.epoch, heldSize)
                : this.#st.dropSnapImageChunks.run(key, image.epoch)
            );
          } else size = Math.max(heldSize, Number(ch.hi));
        }
        if (size < image.size) {
          return { kind: "image", ship: m.ship, epoch: image.epoch, offset: size };
        }
      }
    }
    return undefined;
  }

  /** Stages events of one ship of the staged offer (fsynced with the next durable write). */
  stageEvents(ship: bigint, events: readonly StoredEvent[]): void {
    const key = shipKey(ship);
    const direct = this.#whereOf(this.#manifestShip(ship)).direct;
    this.#write(() => {
      for (const e of events) {
        if (direct) this.#ships.stageEvent(ship, e);
        else this.#st.putSnapEvent.run(key, e.eve, e.mug, e.job, e.entryIndex, e.entryTerm);
      }
    });
  }

  /** Stages one image chunk of a ship of the staged offer (fsynced with the next durable write). */
  stageImageChunk(ship: bigint, epoch: number, offset: number, data: Uint8Array): void {
    const direct = this.#whereOf(this.#manifestShip(ship)).direct;
    this.#write(() => {
      if (direct) this.#images.stageChunk(ship, epoch, offset, data);
      else this.#st.putSnapChunk.run(shipKey(ship), epoch, offset, data);
    });
  }

  /** Drops the staged offer and everything staged for it. */
  clear(): void {
    const offer = this.staged();
    this.#write(() => {
      for (const m of offer?.manifest.ships ?? []) this.#dropStaged(m.ship);
      this.#clear();
    });
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
    const direct = new Map(offer.manifest.ships.map((m) => [m.ship, this.#whereOf(m)]));
    for (const held of this.#ships.list()) {
      if (wanted.get(held.ship)?.addedIndex !== held.addedIndex) {
        this.#ships.deleteShip(held.ship);
        this.#images.deleteShip(held.ship);
      }
    }
    for (const m of offer.manifest.ships) {
      const key = shipKey(m.ship);
      const where = direct.get(m.ship)!;
      const held = where.direct ? where.held : undefined;
      if (held !== undefined && held.firstEve < m.firstEve) {
        // Chopped since this node held it: the events and images before the new start go.
        this.#ships.chop(m.ship, m.firstEve);
        this.#images.deleteBefore(m.ship, m.firstEve - 1);
      }
      // Only up to the manifest: more may be staged for a later offer (a newer state).
      if (!where.direct) this.#st.moveEvents.run(key, m.lastEve);
      const base = Math.max(held?.lastEve ?? 0, m.firstEve - 1);
      if (m.lastEve > base) {
        const span = this.#st.eventSpan.get(key, base, m.lastEve)!;
        if (Number(span.lo) !== base + 1 || Number(span.hi) !== m.lastEve) {
          throw new SnapshotStageError(
            `ship ${m.ship} holds events ${span.lo}..${span.hi} after ${base} on installing snapshot ${snapshot.index}, which has them up to ${m.lastEve}`,
          );
        }
      }
      const { images, ...row } = m;
      this.#ships.putShip(row);
      for (const image of images) {
        if (!where.direct) this.#st.moveChunks.run(key, image.epoch, image.size);
        const size = Number(this.#st.imageBytes.get(key, image.epoch, image.size)!.size);
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

  /**
   * Where a manifest ship's rows are staged: directly past what this node
   * holds (it holds the same ship, `held`, or none), or in the snap_ tables
   * (it holds another ship of that name).
   */
  #whereOf(m: ManifestShip): { direct: boolean; held: ShipInfo | undefined } {
    const held = this.#ships.get(m.ship);
    if (held === undefined) return { direct: true, held: undefined };
    return held.addedIndex === m.addedIndex
      ? { direct: true, held }
      : { direct: false, held: undefined };
  }

  #manifestShip(ship: bigint): ManifestShip {
    const m = this.staged()?.manifest.ships.find((s) => s.ship === ship);
    if (m === undefined) {
      throw new SnapshotStageError(`ship ${ship} is not in the staged offer`);
    }
    return m;
  }

  #heldSize(held: ShipInfo | undefined, epoch: number): number {
    return held === undefined ? 0 : this.#images.get(held.ship, epoch)?.size ?? 0;
  }

  /** Drops what is staged for `ship`, wherever it is (inside a write). */
  #dropStaged(ship: bigint): void {
    const key = shipKey(ship);
    this.#st.dropSnapEvents.run(key);
    this.#st.dropSnapChunks.run(key);
    const held = this.#ships.get(ship);
    this.#st.dropEventsPast.run(key, held?.lastEve ?? 0);
    for (const image of held === undefined ? [] : this.#images.list(ship)) {
      this.#st.dropChunksPast.run(key, image.epoch, image.size);
    }
    this.#st.dropOrphanChunks.run(key);
  }

  #clear(): void {
    this.#offer = undefined;
    this.#st.clearOffer.run();
    this.#st.clearEvents.run();
    this.#st.clearChunks.run();
  }
}
