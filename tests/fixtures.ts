/**
 * Where tests find the real Urbit data in ../shared/fixtures. The data is
 * third-party and never copied into the repo: tests that need it skip with a
 * one-line note where it is absent (as on a user's fresh clone).
 * @module
 */

import { fileURLToPath } from "node:url";
import { checkLiblmdb } from "../vere/pier.ts";

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

/** Why LMDB tests cannot run here (Debian's liblmdb0 absent), or undefined when they can. */
export function lmdbMissing(): string | undefined {
  try {
    checkLiblmdb();
    return undefined;
  } catch {
    return "liblmdb is absent (apt-get install liblmdb0)";
  }
}

/** As {@linkcode lmdbMissing}, and also Debian's lmdb-utils (`mdb_dump`), which some tests compare with. */
export function lmdbToolsMissing(): string | undefined {
  const lib = lmdbMissing();
  if (lib !== undefined) return lib;
  try {
    const ok = new Deno.Command("mdb_dump", { args: ["-V"], stdout: "null", stderr: "null" })
      .outputSync().success;
    return ok ? undefined : "mdb_dump does not run (apt-get install lmdb-utils)";
  } catch {
    return "lmdb-utils is absent (apt-get install lmdb-utils)";
  }
}
