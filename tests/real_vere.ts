/**
 * The real Urbit runtime for tests: the vere binaries in
 * `../shared/tools/vere/` (third-party, built from urbit/vere's sources; never
 * copied into the repo), a fake ~zod booted once per machine and cached
 * outside the repo, and a way to make a running ship produce events.
 *
 * Booting a fake ~zod from brass.pill compiles the whole kernel (~150 s on 2
 * cores), so {@linkcode bootedPier} does it once per (binary, pill) pair and
 * keeps the pier under `$XDG_CACHE_HOME/seguro/vere-piers` (or `~/.cache/...`,
 * shared with `seguro demo`),
 * keyed by both files' SHA-256. Tests copy it ({@linkcode copyPier}) and never
 * touch the cached one. Where the binary, its Debian libraries or the pill
 * are absent, {@linkcode vereMissing} says why in one line and the test is
 * registered as ignored with that reason.
 * @module
 */

import { exists } from "../vere/pier.ts";
import { fileURLToPath } from "node:url";
import { join } from "node:path";
import { BRASS_PILL_PATH } from "./fixtures.ts";
import {
  bootedZod,
  copyPier,
  freeVerePorts,
  growPier,
  outputTail,
  vereCacheDir,
  vereProblem,
} from "../server/vere_process.ts";

export { copyPier };

/** The vere versions in `../shared/tools/vere/`. */
export type VereVersion = "1.16" | "3.0";

/** Where the real binaries live, relative to this repo. */
export const VERE_TOOLS_DIR = fileURLToPath(new URL("../../shared/tools/vere/", import.meta.url));

/** The path of the real `urbit` binary of a version. */
export function vereBinary(version: VereVersion): string {
  return join(VERE_TOOLS_DIR, `urbit-${version}`);
}

/**
 * Why the real vere of a version cannot run here (binary, Debian runtime
 * libraries or brass.pill absent), or undefined when it can. The answer is
 * one line naming the fix; it is worked out once per process.
 */
export function vereMissing(version: VereVersion): string | undefined {
  if (missingMemo.has(version)) return missingMemo.get(version);
  let why = vereProblem(vereBinary(version));
  if (why === undefined && !exists(BRASS_PILL_PATH)) why = `${BRASS_PILL_PATH} is absent`;
  missingMemo.set(version, why);
  return why;
}

const missingMemo = new Map<VereVersion, string | undefined>();

/**
 * The path of a fake ~zod booted by the real vere `version` from
 * brass.pill, live and stopped: booted the first time (about 150 s, once
 * per machine), cached afterwards. Never write into it: copy it first.
 */
export function bootedPier(version: VereVersion): Promise<string> {
  const why = vereMissing(version);
  if (why !== undefined) throw new Error(`bootedPier: ${why}`);
  return bootedZod(vereBinary(version), BRASS_PILL_PATH, vereCacheDir());
}

/** Flags that keep a test's vere off fixed ports (server/vere_process.ts). */
export const quietPorts: () => Promise<string[]> = freeVerePorts;

/** The event number of vere's `pier (N): live` line in `output`, or undefined. */
export function liveEvent(output: string): number | undefined {
  const m = /pier \(([0-9]+)\): live/.exec(output);
  return m === null ? undefined : Number(m[1]);
}

/** What one start of vere printed, and the event it reached live at. */
export interface VereRun {
  /** stdout and stderr. */
  output: string;
  /** `N` of `pier (N): live`. */
  live: number;
}

/**
 * Starts the real vere `version` on `pier` with `-t -x` (start, reach live,
 * exit) and returns where it went live. A vere that exits without reaching
 * live, or fails, throws with the end of its output.
 */
export async function startToLive(version: VereVersion, pier: string): Promise<VereRun> {
  const out = await new Deno.Command(vereBinary(version), {
    args: ["-t", "-x", "--no-dock", ...(await quietPorts()), pier],
    stdin: "null",
    stdout: "piped",
    stderr: "piped",
  }).output();
  const output = new TextDecoder().decode(out.stdout) + new TextDecoder().decode(out.stderr);
  const live = liveEvent(output);
  if (!out.success || live === undefined) {
    throw new Error(
      `vere ${version} did not reach live on ${pier} (exit ${out.code}):\n${outputTail(output)}`,
    );
  }
  return { output, live };
}

/**
 * A copy at `dir` of the cached fake ~zod of vere 3.0, grown: started once
 * (which rolls its first epoch, 0i25, with a snapshot) and made to compute
 * `wakes` behn %wakes through conn.sock, then stopped.
 */
export async function grownPier(dir: string, wakes: number): Promise<void> {
  await copyPier(await bootedPier("3.0"), dir);
  await growPier(vereBinary("3.0"), dir, wakes);
}
