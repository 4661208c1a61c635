/**
 * The manifest of a state-machine snapshot: everything in the applied state
 * that can change (ship rows, image sizes, the machine's settings), as of
 * the snapshot's index. The bulk of the state (events, image bytes) is not
 * in it: committed events and image chunks never change once applied (they
 * go only with their ship, whose `addedIndex` then changes), so a receiver
 * fetches them as prefixes that stay valid across offers
 * (cluster/snapshot_stream.ts).
 *
 * Encoded as UTF-8 JSON (ships as decimal strings), at most
 * {@linkcode MANIFEST_BYTES_MAX}; decoding validates every field.
 * @module
 */

import { WireError } from "./codec.ts";
import { SHIP_MAX, type ShipInfo } from "./ships.ts";
import type { ImageInfo } from "./images.ts";

/** Largest encoded manifest accepted. */
export const MANIFEST_BYTES_MAX = 8 * 1024 * 1024;

/** One ship in a manifest: its row and its images. */
export interface ManifestShip extends ShipInfo {
  /** Its epoch images (complete ones carry `sha256`). */
  readonly images: readonly ImageInfo[];
}

/** The mutable part of the applied state at a snapshot's index. */
export interface SnapshotManifest {
  /** Every ship, in @p order. */
  readonly ships: readonly ManifestShip[];
  /** Every row of the machine's settings table, in key order. */
  readonly settings: readonly { readonly key: string; readonly value: string }[];
}

/** Encodes a manifest. */
export function encodeManifest(m: SnapshotManifest): Uint8Array {
  const json = JSON.stringify({
    v: 1,
    ships: m.ships.map((s) => ({ ...s, ship: s.ship.toString() })),
    settings: m.settings.map((s) => [s.key, s.value]),
  });
  const bytes = new TextEncoder().encode(json);
  if (bytes.length > MANIFEST_BYTES_MAX) {
    throw new RangeError(
      `A snapshot manifest of ${bytes.length} bytes passes the limit of ${MANIFEST_BYTES_MAX}`,
    );
  }
  return bytes;
}

/** Decodes and validates a manifest; throws {@linkcode WireError}. */
export function decodeManifest(bytes: Uint8Array): SnapshotManifest {
  if (bytes.length > MANIFEST_BYTES_MAX) {
    throw new WireError(`A snapshot manifest of ${bytes.length} bytes is too large`);
  }
  let raw: unknown;
  try {
    raw = JSON.parse(new TextDecoder("utf-8", { fatal: true }).decode(bytes));
  } catch (e) {
    throw new WireError(`A snapshot manifest is not JSON: ${(e as Error).message}`);
  }
  const o = object(raw, "manifest");
  if (o.v !== 1) throw new WireError(`A snapshot manifest has version ${o.v}, expected 1`);
  const ships = array(o.ships, "ships").map((x): ManifestShip => {
    const s = object(x, "ship");
    const shipText = string(s.ship, "ship");
    if (!/^[0-9]{1,39}$/.test(shipText) || BigInt(shipText) > SHIP_MAX) {
      throw new WireError(`A snapshot manifest names ship '${shipText}'`);
    }
    return {
      ship: BigInt(shipText),
      fake: boolean(s.fake, "fake"),
      optimism: integer(s.optimism, "optimism", -2),
      life: integer(s.life, "life", 0),
      lastEve: integer(s.lastEve, "lastEve", 0),
      lastMug: integer(s.lastMug, "lastMug", 0),
      bytes: integer(s.bytes, "bytes", 0),
      addedIndex: integer(s.addedIndex, "addedIndex", 0),
      firstEve: integer(s.firstEve, "firstEve", 1),
      images: array(s.images, "images").map((y) => {
        const i = object(y, "image");
        const image: ImageInfo = {
          epoch: integer(i.epoch, "epoch", 0),
          size: integer(i.size, "size", 0),
        };
        if (i.sha256 !== undefined) {
          const digest = string(i.sha256, "sha256");
          if (!/^[0-9a-f]{64}$/.test(digest)) throw new WireError("A manifest image sha256 is bad");
          image.sha256 = digest;
        }
        return image;
      }),
    };
  });
  const settings = array(o.settings, "settings").map((x) => {
    const pair = array(x, "setting");
    if (pair.length !== 2) throw new WireError("A manifest setting is not a [key, value] pair");
    return { key: string(pair[0], "setting key"), value: string(pair[1], "setting value") };
  });
  return { ships, settings };
}

function object(x: unknown, what: string): Record<string, unknown> {
  if (typeof x !== "object" || x === null || Array.isArray(x)) {
    throw new WireError(`A snapshot manifest's ${what} is not an object`);
  }
  return x as Record<string, unknown>;
}

function array(x: unknown, what: string): unknown[] {
  if (!Array.isArray(x)) throw new WireError(`A snapshot manifest's ${what} is not a list`);
  return x;
}

function string(x: unknown, what: string): string {
  if (typeof x !== "string") throw new WireError(`A snapshot manifest's ${what} is not text`);
  return x;
}

function boolean(x: unknown, what: string): boolean {
  if (typeof x !== "boolean") throw new WireError(`A snapshot manifest's ${what} is not a flag`);
  return x;
}

function integer(x: unknown, what: string, min: number): number {
  if (typeof x !== "number" || !Number.isSafeInteger(x) || x < min) {
    throw new WireError(`A snapshot manifest's ${what} is not an integer >= ${min}`);
  }
  return x;
}
