/**
 * The one permission set Seguro runs with, and how Seguro starts itself again
 * as a child process.
 *
 * The set is defined once, as `permissions.seguro` in deno.json. Tasks use it
 * natively (`deno run -P=seguro`). `deno install --global -P` drops a config
 * permission set (Deno 2.9.6), so the install and release scripts (dist/) pass
 * the explicit flags from {@linkcode permissionFlags}, and the release build
 * checks the permissions baked into each binary. Tests start every CLI child
 * with exactly these flags, so a missing permission fails a test.
 * @module
 */

import { fileURLToPath } from "node:url";
import denoJson from "../deno.json" with { type: "json" };

/** deno.json's `permissions.seguro`: each permission granted in full or not at all. */
const SET: Readonly<Record<string, boolean>> = denoJson.permissions.seguro;

/** The permission set as explicit `deno run` flags, e.g. `--allow-read`. */
export function permissionFlags(): string[] {
  return Object.entries(SET).map(([name, granted]) => {
    if (granted !== true) {
      throw new Error(`deno.json permissions.seguro.${name} must be true (got ${granted})`);
    }
    return `--allow-${name}`;
  });
}

/**
 * V8's heap settings for every Seguro process. `--initial-old-space-size=64`
 * (MB): V8 collects the old generation only once it holds 64 MB, instead of
 * from ~20 MB on. A node's working set is ~15 MB, and with the default it ran
 * a full (mark-compact) collection every ~10,000 events at 1 KiB: at 1024 in
 * flight the leader's CPU per event fell from 39 to 29 us (medians of five
 * runs, bench/README.md), for 30-40 MB more resident memory per node.
 */
export const V8_FLAGS: readonly string[] = ["--initial-old-space-size=64"];

/** The `deno run` / `deno compile` flags every Seguro process runs with: the permission set and {@linkcode V8_FLAGS}. */
export function runFlags(): string[] {
  return [...permissionFlags(), `--v8-flags=${V8_FLAGS.join(",")}`];
}

/** This checkout's `main.ts` (only meaningful when running under `deno run`). */
export const MAIN_PATH: string = fileURLToPath(new URL("../main.ts", import.meta.url));

/** Whether this process is `deno` running main.ts (not the compiled binary). */
function runningUnderDeno(): boolean {
  const name = Deno.execPath().split("/").pop() ?? "";
  return name === "deno" || name === "deno.exe";
}

/**
 * How to start `seguro ARGS` as a child with the release permission set: the
 * compiled binary itself (its permissions and V8 flags are baked in), or
 * `deno run` with exactly {@linkcode runFlags}.
 */
export function selfCommand(args: string[]): { cmd: string; args: string[] } {
  const exe = Deno.execPath();
  if (runningUnderDeno()) {
    return { cmd: exe, args: ["run", "-q", ...runFlags(), MAIN_PATH, ...args] };
  }
  return { cmd: exe, args };
}
