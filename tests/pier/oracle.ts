/**
 * Test helpers for vere-format LMDB piers: whether liblmdb is loadable, the
 * C oracle `../shared/tools/lmdb_oracle.c` compiled into a temporary
 * directory (never copied into the repo), and the oracle's deterministic
 * event values. Tests that need them skip with a one-line note where they
 * are absent.
 * @module
 */

import { dirname } from "node:path";
import { fileURLToPath } from "node:url";
import { openLmdb } from "../../vere/lmdb.ts";

/** Absolute path of `../shared/tools/lmdb_oracle.c`, relative to this repo. */
export const ORACLE_SOURCE_PATH = fileURLToPath(
  new URL("../../../shared/tools/lmdb_oracle.c", import.meta.url),
);

const noted = new Set<string>();

function note(text: string): void {
  if (noted.has(text)) return;
  noted.add(text);
  console.warn(`note: ${text}`);
}

/** True when liblmdb loads; prints a one-line note once when it does not. */
export function haveLiblmdb(): boolean {
  try {
    openLmdb();
    return true;
  } catch (error) {
    note(`liblmdb is absent (${(error as Error).message}); LMDB tests are skipped`);
    return false;
  }
}

function exists(path: string): boolean {
  try {
    Deno.statSync(path);
    return true;
  } catch {
    return false;
  }
}

/** True when the command runs (exit status ignored); for `gcc`, `mdb_stat`, `mdb_dump`. */
export function haveTool(name: string, args: string[] = ["--version"]): boolean {
  try {
    new Deno.Command(name, { args, stdout: "null", stderr: "null" }).outputSync();
    return true;
  } catch {
    note(`${name} is absent; tests that need it are skipped`);
    return false;
  }
}

function buildOracle(): string | undefined {
  if (!haveLiblmdb() || !exists(ORACLE_SOURCE_PATH)) {
    note(`${ORACLE_SOURCE_PATH} or liblmdb is absent; oracle tests are skipped`);
    return undefined;
  }
  if (!exists("/usr/include/lmdb.h") || !haveTool("gcc")) {
    note("gcc or lmdb.h (Debian's liblmdb-dev) is absent; oracle tests are skipped");
    return undefined;
  }
  const dir = Deno.makeTempDirSync({ prefix: "seguro-oracle-" });
  // The binary serves every test of this process; its directory goes when the
  // process ends, whether the tests passed or failed (`deno test` fires
  // `unload` either way), or at once if gcc fails. A script that may die of an
  // uncaught error (no `unload` then) calls removeOracle() in a `finally`.
  globalThis.addEventListener("unload", () => removeDir(dir));
  const binary = `${dir}/lmdb_oracle`;
  let built: Deno.CommandOutput | undefined;
  try {
    built = new Deno.Command("gcc", {
      args: ["-O2", "-o", binary, ORACLE_SOURCE_PATH, "-llmdb"],
      stdout: "piped",
      stderr: "piped",
    }).outputSync();
  } finally {
    if (!built?.success) removeDir(dir);
  }
  if (!built.success) {
    note(`the oracle does not compile: ${new TextDecoder().decode(built.stderr).trim()}`);
    return undefined;
  }
  return binary;
}

function removeDir(dir: string): void {
  try {
    Deno.removeSync(dir, { recursive: true });
  } catch {
    // already removed
  }
}

let oracle: string | undefined | null = null;

/** Path of the compiled oracle, or `undefined` (with a note) when it cannot be built. */
export function oraclePath(): string | undefined {
  if (oracle === null) oracle = buildOracle();
  return oracle;
}

/** Removes the compiled oracle now (tests need not: it goes when the process ends). */
export function removeOracle(): void {
  if (oracle) removeDir(dirname(oracle));
  oracle = null;
}

/** Runs the oracle; returns its exit code and stdout. */
export function runOracle(args: string[]): { code: number; stdout: string; stderr: string } {
  const path = oraclePath();
  if (path === undefined) {
    throw new Error("The oracle is not built; guard the test with oraclePath()");
  }
  const out = new Deno.Command(path, { args, stdout: "piped", stderr: "piped" }).outputSync();
  const decoder = new TextDecoder();
  return { code: out.code, stdout: decoder.decode(out.stdout), stderr: decoder.decode(out.stderr) };
}

// mulberry32, one step, in u32 arithmetic.
function step(state: Uint32Array): number {
  state[0] = (state[0] + 0x6d2b79f5) >>> 0;
  let z = state[0];
  z = Math.imul(z ^ (z >>> 15), z | 1) >>> 0;
  z = (z ^ ((z + Math.imul(z ^ (z >>> 7), z | 61)) >>> 0)) >>> 0;
  return (z ^ (z >>> 14)) >>> 0;
}

/**
 * The value the oracle stores at event `key` (its 4-byte mug, then stand-in
 * jam bytes): 50..5000 bytes, or 100,000..1,000,000 when `big` and
 * `key % 97 == 0`.
 */
export function oracleValue(key: number, big: boolean): Uint8Array {
  const high = Math.floor(key / 2 ** 32) >>> 0;
  const state = new Uint32Array([
    (Math.imul(key >>> 0, 2654435761 | 0) ^ 0xa5a5a5a5 ^ high) >>> 0,
  ]);
  const r = step(state);
  const length = big && key % 97 === 0 ? 100_000 + (r % 900_001) : 50 + (r % 4_951);
  const out = new Uint8Array(length);
  for (let i = 0; i < length; i += 4) {
    const word = step(state);
    for (let j = 0; j < 4 && i + j < length; j++) out[i + j] = (word >>> (8 * j)) & 0xff;
  }
  return out;
}

/** SHA-256 of a file, in hex: to show a read never changed it. */
export async function fileSha256(path: string): Promise<string> {
  const digest = await crypto.subtle.digest("SHA-256", Deno.readFileSync(path));
  return Array.from(new Uint8Array(digest), (b) => b.toString(16).padStart(2, "0")).join("");
}
