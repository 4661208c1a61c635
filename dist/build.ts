/**
 * Release builds: `deno compile` of main.ts with the release permission set
 * (deno.json `permissions.seguro`), for this machine (`deno task compile`,
 * writes dist/out/seguro) or for every release target (`deno task dist`,
 * writes dist/out/seguro-VERSION-TARGET, SHA256SUMS and install.sh).
 *
 * `deno compile` downloads its runtime (denort) for each target from
 * dl.deno.land. Where that host is unreachable, set DENORT_BIN to a denort
 * binary of this Deno version for the target and build one target at a time
 * (`--target T`). Every binary built is checked: the permissions baked into
 * it must be exactly the release set.
 * @module
 */

import { Command } from "@commander-js/extra-typings";
import { dirname, join } from "node:path";
import { fileURLToPath } from "node:url";
import denoJson from "../deno.json" with { type: "json" };
import { MAIN_PATH, permissionFlags, runFlags, V8_FLAGS } from "../server/self_command.ts";

/** The release targets (Deno's target triples). */
export const TARGETS = [
  "x86_64-unknown-linux-gnu",
  "aarch64-unknown-linux-gnu",
  "x86_64-apple-darwin",
  "aarch64-apple-darwin",
] as const;

const DIST = dirname(fileURLToPath(import.meta.url));
const OUT = join(DIST, "out");

/** A build that cannot go on: one line for the user. */
class BuildError extends Error {}

/** The file name of the release binary for `target`. */
export function binaryName(target: string): string {
  return `seguro-${denoJson.version}-${target}`;
}

/** This machine's target triple. */
function hostTarget(): string {
  const { arch, os } = Deno.build;
  const osPart = os === "darwin" ? "apple-darwin" : os === "linux" ? "unknown-linux-gnu" : null;
  if (osPart === null) throw new BuildError(`no release target for ${os}; build on Linux or macOS`);
  return `${arch}-${osPart}`;
}

/**
 * The permissions baked into a compiled binary, read from the metadata
 * `deno compile` embeds (`"allow_read":[]` means granted in full, null not
 * granted). Returns the granted names, e.g. `["read", "write"]`.
 */
export function bakedPermissions(binary: Uint8Array): string[] {
  const text = new TextDecoder("latin1").decode(binary);
  const at = text.lastIndexOf('"allow_read":');
  if (at < 0) throw new BuildError("no permission metadata found in the compiled binary");
  const granted: string[] = [];
  for (
    const m of text.slice(Math.max(0, at - 4000), at + 4000).matchAll(/"allow_(\w+)":(\[\]|true)/g)
  ) {
    if (!granted.includes(m[1])) granted.push(m[1]);
  }
  return granted.sort();
}

/** The V8 flags baked into a compiled binary (`"v8_flags"` of its metadata), in order. */
export function bakedV8Flags(binary: Uint8Array): string[] {
  const text = new TextDecoder("latin1").decode(binary);
  const m = text.match(/"v8_flags":(\[[^\]]*\])/);
  if (m === null) throw new BuildError("no V8 flag metadata found in the compiled binary");
  return JSON.parse(m[1]);
}

/** What the release set grants, by name, sorted. */
export function releasePermissions(): string[] {
  return permissionFlags().map((f) => f.replace(/^--allow-/, "")).sort();
}

/**
 * Files of npm packages left out of the binary, relative to the npm cache's
 * registry folder. bintrees@1.0.2 (prom-client -> tdigest -> bintrees) ships
 * a 2 MB test fixture that overflows `deno compile`'s stack (Deno 2.9.6); it
 * is never loaded at run time.
 */
const COMPILE_EXCLUDES = ["bintrees/1.0.2/test"];

/** `--exclude` flags for {@linkcode COMPILE_EXCLUDES}, in this machine's npm cache. */
async function excludeFlags(): Promise<string[]> {
  const { code, stdout } = await new Deno.Command(Deno.execPath(), {
    args: ["info", "--json"],
    stdout: "piped",
    stderr: "null",
  }).output();
  if (code !== 0) throw new BuildError("deno info --json failed: cannot find the npm cache");
  const cache: string = JSON.parse(new TextDecoder().decode(stdout)).npmCache;
  return COMPILE_EXCLUDES.flatMap((p) => ["--exclude", join(cache, "registry.npmjs.org", p)]);
}

/** Compiles main.ts for `target` into `output`, then checks its baked permissions. */
async function compile(target: string, output: string): Promise<void> {
  const { code, stderr } = await new Deno.Command(Deno.execPath(), {
    args: [
      "compile",
      "--quiet",
      "--exclude-unused-npm",
      ...await excludeFlags(),
      ...runFlags(),
      "--target",
      target,
      "--output",
      output,
      MAIN_PATH,
    ],
    stdout: "inherit",
    stderr: "piped",
  }).output();
  if (code !== 0) {
    const text = new TextDecoder().decode(stderr);
    if (/download|dl\.deno\.land|denort|dns|connect/i.test(text)) {
      throw new BuildError(
        `deno compile could not get its runtime (denort) for ${target}: this machine cannot ` +
          `reach dl.deno.land. Offline, set DENORT_BIN to denort ${Deno.version.deno} for ` +
          `${target} (denort-${target}.zip from dl.deno.land/release/v${Deno.version.deno}/) ` +
          `and build that target alone with --target ${target}`,
      );
    }
    throw new BuildError(`deno compile failed for ${target}: ${text.trim().split("\n")[0]}`);
  }
  const baked = bakedPermissions(await Deno.readFile(output));
  const want = releasePermissions();
  if (baked.join(",") !== want.join(",")) {
    throw new BuildError(
      `${output} grants ${baked.join(", ")}; the release set (deno.json) is ${want.join(", ")}`,
    );
  }
  const v8 = bakedV8Flags(await Deno.readFile(output));
  const missing = V8_FLAGS.filter((f) => !v8.includes(f));
  if (missing.length > 0) {
    throw new BuildError(`${output} runs without the V8 flags ${missing.join(" ")}`);
  }
}

async function sha256(path: string): Promise<string> {
  const digest = await crypto.subtle.digest("SHA-256", await Deno.readFile(path));
  return [...new Uint8Array(digest)].map((b) => b.toString(16).padStart(2, "0")).join("");
}

/** Builds `targets` into `out` as release files, with SHA256SUMS and install.sh. */
async function release(targets: string[], out: string, baseUrl: string | undefined): Promise<void> {
  await Deno.mkdir(out, { recursive: true });
  const sums: string[] = [];
  for (const target of targets) {
    const name = binaryName(target);
    console.error(`building ${name} ...`);
    await compile(target, join(out, name));
    sums.push(`${await sha256(join(out, name))}  ${name}`);
  }
  await Deno.writeTextFile(join(out, "SHA256SUMS"), sums.join("\n") + "\n");
  let script = (await Deno.readTextFile(join(DIST, "install.sh")))
    .replace("@VERSION@", denoJson.version);
  if (baseUrl !== undefined) script = script.replace("@BASE_URL@", baseUrl);
  await Deno.writeTextFile(join(out, "install.sh"), script, { mode: 0o755 });
  console.log(`${targets.length} binaries, SHA256SUMS and install.sh in ${out}`);
}

if (import.meta.main) {
  const program = new Command("build")
    .description("build seguro binaries with the release permission set")
    .option("--release", "release files: seguro-VERSION-TARGET, SHA256SUMS, install.sh")
    .option(
      "--target <triple...>",
      `targets (default: this machine; --release: ${TARGETS.join(", ")})`,
    )
    .option("--out <dir>", "output directory", OUT)
    .option("--base-url <url>", "with --release: where install.sh downloads the release from")
    .action(async (o) => {
      const targets = o.target ?? (o.release ? [...TARGETS] : [hostTarget()]);
      for (const t of targets) {
        if (!(TARGETS as readonly string[]).includes(t)) {
          throw new BuildError(`unknown target ${t}; one of ${TARGETS.join(", ")}`);
        }
      }
      if (o.release) return await release(targets, o.out, o.baseUrl);
      if (targets.length !== 1) throw new BuildError("without --release, build one target");
      await Deno.mkdir(o.out, { recursive: true });
      await compile(targets[0], join(o.out, "seguro"));
      console.log(`built ${join(o.out, "seguro")} (${targets[0]})`);
    });
  try {
    await program.parseAsync(Deno.args, { from: "user" });
  } catch (e) {
    if (!(e instanceof BuildError)) throw e;
    console.error(`error: ${e.message}`);
    Deno.exit(1);
  }
}
