/**
 * The patched vere 3.0 of hook mode (tools/vere-hook/) for tests: why it
 * cannot be built or run here ({@linkcode hookMissing}), and the binary
 * itself ({@linkcode hookBinary}), built once per patch (its SHA-256) under
 * `$XDG_CACHE_HOME/seguro-tests/vere-hook/` (or `~/.cache/...`) behind a file
 * lock, so that `.ci/run`'s background build (tests/real_vere_boot.ts) and a
 * test asking for it at the same time build it once. The sources come from
 * MIRROR_ROOT (default /work/.mirror).
 * @module
 */

import { createHash } from "node:crypto";
import { join } from "node:path";
import { fileURLToPath } from "node:url";
import { lmdbMissing } from "./fixtures.ts";
import { vereMissing } from "./real_vere.ts";

const BUILD_SH = fileURLToPath(new URL("../tools/vere-hook/build.sh", import.meta.url));
const PATCH = fileURLToPath(new URL("../tools/vere-hook/seguro-hook.patch", import.meta.url));
const MIRROR_ROOT = Deno.env.get("MIRROR_ROOT") ?? "/work/.mirror";

function cacheRoot(): string {
  const base = Deno.env.get("XDG_CACHE_HOME") ?? join(Deno.env.get("HOME") ?? "/tmp", ".cache");
  return join(base, "seguro-tests", "vere-hook");
}

/** Why the patched vere cannot be built or run here (one line), or undefined. */
export function hookMissing(): string | undefined {
  const vere = vereMissing("3.0");
  if (vere !== undefined) return vere;
  const lmdb = lmdbMissing();
  if (lmdb !== undefined) return lmdb;
  const out = new Deno.Command("bash", {
    args: [BUILD_SH, "--check"],
    env: { WORK: join(cacheRoot(), "work"), MIRROR_ROOT },
    stdout: "null",
    stderr: "piped",
  }).outputSync();
  if (!out.success) return new TextDecoder().decode(out.stderr).trim().split("\n")[0];
  return undefined;
}

/** The patched binary for the current patch: built once (under a lock), then cached. */
export async function hookBinary(): Promise<string> {
  const sum = createHash("sha256").update(Deno.readFileSync(PATCH)).digest("hex").slice(0, 16);
  const root = cacheRoot();
  Deno.mkdirSync(join(root, sum), { recursive: true, mode: 0o700 });
  const bin = join(root, sum, "urbit");
  const lock = await Deno.open(join(root, "build.lock"), { create: true, write: true });
  try {
    await lock.lock(true);
    try {
      Deno.statSync(bin);
      return bin;
    } catch {
      // not built yet
    }
    const work = join(root, "work");
    const out = await new Deno.Command("bash", {
      args: [BUILD_SH],
      env: { WORK: work, MIRROR_ROOT, JOBS: "2" },
      stdout: "piped",
      stderr: "piped",
    }).output();
    const err = new TextDecoder().decode(out.stderr);
    if (!out.success) throw new Error(`building the patched vere failed: ${err}`);
    const built = new TextDecoder().decode(out.stdout).trim();
    await Deno.copyFile(built, `${bin}.tmp`);
    await Deno.chmod(`${bin}.tmp`, 0o755);
    await Deno.rename(`${bin}.tmp`, bin);
    return bin;
  } finally {
    lock.close();
  }
}
