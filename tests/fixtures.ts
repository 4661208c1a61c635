/**
 * Where tests find the real Urbit data in ../shared/fixtures. The data is
 * third-party and never copied into the repo: tests that need it skip with a
 * one-line note where it is absent (as on a user's fresh clone).
 * @module
 */

import { fileURLToPath } from "node:url";

/** Absolute path of `../shared/fixtures/brass.pill`, relative to this repo. */
export const BRASS_PILL_PATH = fileURLToPath(
  new URL("../../shared/fixtures/brass.pill", import.meta.url),
);

/** True when the real brass.pill is present; prints a one-line note once when it is not. */
export function havePill(): boolean {
  try {
    Deno.statSync(BRASS_PILL_PATH);
    return true;
  } catch {
    if (!notedMissing) {
      console.warn(`note: ${BRASS_PILL_PATH} is absent; tests that need brass.pill are skipped`);
      notedMissing = true;
    }
    return false;
  }
}

let notedMissing = false;

/** Lower-case hex of bytes, for readable assertions. */
export function hex(bytes: Uint8Array): string {
  return Array.from(bytes, (b) => b.toString(16).padStart(2, "0")).join("");
}

/** Bytes of a hex string. */
export function unhex(text: string): Uint8Array {
  const out = new Uint8Array(text.length / 2);
  for (let i = 0; i < out.length; i++) out[i] = parseInt(text.slice(i * 2, i * 2 + 2), 16);
  return out;
}
