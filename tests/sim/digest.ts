/**
 * Cheap 32-bit digests (FNV-1a) of entries and of log prefixes, so the
 * checker compares whole logs by comparing one number per index.
 *
 * @module
 */

import type { Entry } from "../../core/mod.ts";

const FNV_OFFSET = 0x811c9dc5;
const FNV_PRIME = 0x01000193;

function mix(h: number, word: number): number {
  h = Math.imul(h ^ (word & 0xff), FNV_PRIME);
  h = Math.imul(h ^ ((word >>> 8) & 0xff), FNV_PRIME);
  h = Math.imul(h ^ ((word >>> 16) & 0xff), FNV_PRIME);
  return Math.imul(h ^ (word >>> 24), FNV_PRIME) >>> 0;
}

/** Digest of one entry: its term, type and bytes. */
export function entryDigest(e: Entry): number {
  let h = mix(FNV_OFFSET, e.term);
  h = mix(h, e.type === "normal" ? 1 : e.type === "conf" ? 2 : 3);
  for (let i = 0; i < e.data.byteLength; i++) h = Math.imul(h ^ e.data[i], FNV_PRIME);
  return h >>> 0;
}

/** Digest of a log prefix ending at `index`, given the prefix digest before it. */
export function chainDigest(previous: number, index: number, digest: number): number {
  return mix(mix(mix(FNV_OFFSET, previous), index), digest);
}
