/**
 * Files only their owner may read: a data dir holds the cluster secret, and
 * a pier (standby or exported) the ship's event log, whose first events hold
 * its keys. Directories are 0700 and files 0600, whatever the umask.
 * @module
 */

import { join } from "node:path";

/** Mode of a private directory. */
const PRIVATE_DIR_MODE = 0o700;
/** Mode of a private file. */
export const PRIVATE_FILE_MODE = 0o600;
/** Permission bits of the group and of others. */
const OTHERS = 0o077;

/** Creates `dir` (and missing parents) and makes it 0700, also when it existed. */
export function makePrivateDir(dir: string): void {
  Deno.mkdirSync(dir, { recursive: true, mode: PRIVATE_DIR_MODE });
  Deno.chmodSync(dir, PRIVATE_DIR_MODE);
}

/** Octal text of a mode's permission bits, e.g. "755". */
function modeText(mode: number): string {
  return (mode & 0o777).toString(8).padStart(3, "0");
}

/**
 * What is wrong when the group or others have any access to `dir` (one
 * line: the dir, its mode, the fix), else undefined. What it held may
 * already have been read, so a node does not fix it silently.
 */
export function openDirProblem(dir: string, what: string): string | undefined {
  const mode = Deno.statSync(dir).mode;
  if (mode === null || (mode & OTHERS) === 0) return undefined;
  return `${what} ${dir} is open to other users (mode ${
    modeText(mode)
  }) and holds the cluster secret; run 'chmod -R go-rwx ${dir}' and start again (whoever could read it may hold the secret)`;
}

/**
 * Makes every file directly in `dir` 0600 (the caller has checked `dir`
 * itself with {@linkcode openDirProblem}): files of an older Seguro, and
 * what SQLite made from them, end private too.
 */
export function privatizeDir(dir: string): void {
  for (const e of Deno.readDirSync(dir)) {
    if (!e.isFile) continue;
    const path = join(dir, e.name);
    const mode = Deno.statSync(path).mode;
    if (mode !== null && (mode & OTHERS) !== 0) Deno.chmodSync(path, PRIVATE_FILE_MODE);
  }
}
