/**
 * The real Urbit runtime for tests: the vere binaries in
 * `../shared/tools/vere/` (third-party, built from urbit/vere's sources; never
 * copied into the repo), a fake ~zod booted once per machine and cached
 * outside the repo, and a way to make a running ship produce events.
 *
 * Booting a fake ~zod from brass.pill compiles the whole kernel (~150 s on 2
 * cores), so {@linkcode bootedPier} does it once per (binary, pill) pair and
 * keeps the pier under `$XDG_CACHE_HOME/seguro-tests` (or `~/.cache/...`),
 * keyed by both files' SHA-256. Tests copy it ({@linkcode copyPier}) and never
 * touch the cached one. Where the binary, its Debian libraries or the pill
 * are absent, {@linkcode vereMissing} says why in one line and the test is
 * registered as ignored with that reason.
 * @module
 */

import { fileURLToPath } from "node:url";
import { join } from "node:path";
import { createHash } from "node:crypto";
import dgram from "node:dgram";
import { BRASS_PILL_PATH } from "./fixtures.ts";
import { VereConn } from "./vere_conn.ts";

/** The vere versions in `../shared/tools/vere/`. */
export type VereVersion = "1.16" | "3.0";

/** Where the real binaries live, relative to this repo. */
export const VERE_TOOLS_DIR = fileURLToPath(new URL("../../shared/tools/vere/", import.meta.url));

/** The path of the real `urbit` binary of a version. */
export function vereBinary(version: VereVersion): string {
  return join(VERE_TOOLS_DIR, `urbit-${version}`);
}

const missingMemo = new Map<VereVersion, string | undefined>();

/**
 * Why the real vere of a version cannot run here (binary, Debian runtime
 * libraries or brass.pill absent), or undefined when it can. The answer is
 * one line naming the fix; it is worked out once per process.
 */
export function vereMissing(version: VereVersion): string | undefined {
  if (missingMemo.has(version)) return missingMemo.get(version);
  const why = findMissing(version);
  missingMemo.set(version, why);
  return why;
}

function findMissing(version: VereVersion): string | undefined {
  const bin = vereBinary(version);
  try {
    Deno.statSync(bin);
  } catch {
    return `the real vere ${version} (${bin}) is absent`;
  }
  try {
    Deno.statSync(BRASS_PILL_PATH);
  } catch {
    return `${BRASS_PILL_PATH} is absent`;
  }
  const out = new Deno.Command(bin, { args: ["-R"], stdout: "piped", stderr: "piped" })
    .outputSync();
  if (!out.success) {
    const err = new TextDecoder().decode(out.stderr).split("\n")[0];
    return `vere ${version} does not start here (${err}); install its libraries: ` +
      "apt-get install -y libgmp10 libuv1 libssl3 libcurl4 liblmdb0 libh2o0.13 libsigsegv2 " +
      "zlib1g libavahi-compat-libdnssd1";
  }
  return undefined;
}

function sha256File(path: string): string {
  return createHash("sha256").update(Deno.readFileSync(path)).digest("hex");
}

/** The directory that holds cached piers, outside the repo. */
export function pierCacheDir(): string {
  const base = Deno.env.get("XDG_CACHE_HOME") ?? join(Deno.env.get("HOME") ?? "/tmp", ".cache");
  return join(base, "seguro-tests", "vere-piers");
}

/** The logged lines of the last boot, for a failure message. */
function tail(text: string, lines = 20): string {
  return text.split("\n").slice(-lines).join("\n");
}

/**
 * The path of a fake ~zod booted by the real vere `version` from
 * brass.pill, live and stopped. Boots it the first time (about 150 s, under
 * a lock so that concurrent test processes boot it once) and afterwards
 * returns the cached one. Never write into it: {@linkcode copyPier} first.
 */
export async function bootedPier(version: VereVersion): Promise<string> {
  const why = vereMissing(version);
  if (why !== undefined) throw new Error(`bootedPier: ${why}`);
  const bin = vereBinary(version);
  const key = `zod-${version}-${sha256File(bin).slice(0, 12)}-${
    sha256File(BRASS_PILL_PATH).slice(0, 12)
  }`;
  const root = pierCacheDir();
  Deno.mkdirSync(root, { recursive: true, mode: 0o700 });
  const pier = join(root, key);
  const lock = await Deno.open(join(root, `${key}.lock`), { create: true, write: true });
  try {
    await lock.lock(true);
    if (exists(join(pier, ".urb", "log"))) return pier;
    const tmp = `${pier}.booting`;
    await removeIfThere(tmp);
    const out = await new Deno.Command(bin, {
      args: [
        "-F",
        "zod",
        "-B",
        BRASS_PILL_PATH,
        "-c",
        tmp,
        "-t",
        "-x",
        "--no-dock",
        ...(await quietPorts()),
      ],
      stdin: "null",
      stdout: "piped",
      stderr: "piped",
    }).output();
    const log = new TextDecoder().decode(out.stdout) + new TextDecoder().decode(out.stderr);
    if (!out.success || !exists(join(tmp, ".urb", "log"))) {
      throw new Error(`booting a fake ~zod with vere ${version} failed:\n${tail(log)}`);
    }
    await Deno.rename(tmp, pier);
    return pier;
  } finally {
    lock.close();
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

async function removeIfThere(path: string): Promise<void> {
  try {
    await Deno.remove(path, { recursive: true });
  } catch (e) {
    if (!(e instanceof Deno.errors.NotFound)) throw e;
  }
}

/** Copies a pier (a cached one, say) to `to`, which must not exist, keeping modes. */
export async function copyPier(from: string, to: string): Promise<void> {
  const out = await new Deno.Command("cp", { args: ["-a", from, to], stderr: "piped" }).output();
  if (!out.success) {
    throw new Error(`cp -a ${from} ${to} failed: ${new TextDecoder().decode(out.stderr)}`);
  }
}

/**
 * Flags that keep a test's vere off fixed ports (a fake ship binds ames to
 * 31337 and HTTP to 80 unless told): ports the kernel has just handed out
 * and taken back, so that veres side by side do not collide.
 */
export async function quietPorts(): Promise<string[]> {
  const udp = dgram.createSocket("udp4");
  const ames = await new Promise<number>((resolve, reject) => {
    udp.once("error", reject);
    udp.bind(0, "127.0.0.1", () => resolve(udp.address().port));
  });
  udp.close();
  const tcp = Deno.listen({ hostname: "127.0.0.1", port: 0 });
  const http = tcp.addr.port;
  tcp.close();
  return ["-p", String(ames), "--http-port", String(http)];
}

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
      `vere ${version} did not reach live on ${pier} (exit ${out.code}):\n${tail(output)}`,
    );
  }
  return { output, live };
}

/** A vere running on a pier until {@linkcode RunningVere.stop}. */
export class RunningVere {
  readonly #child: Deno.ChildProcess;
  readonly #output: Promise<string>;
  readonly pid: number;

  /** Starts vere `version` on `pier` (`-t`, no dock, quiet ports, and `args`). */
  static async start(
    version: VereVersion,
    pier: string,
    args: string[] = [],
  ): Promise<RunningVere> {
    return new RunningVere(vereBinary(version), [
      "-t",
      "--no-dock",
      ...(await quietPorts()),
      ...args,
      pier,
    ]);
  }

  /** Starts `binary` with `args` (a real vere, or a patched one). */
  constructor(binary: string, args: string[]) {
    this.#child = new Deno.Command(binary, {
      args,
      stdin: "null",
      stdout: "piped",
      stderr: "piped",
    }).spawn();
    this.pid = this.#child.pid;
    const text = (s: ReadableStream<Uint8Array>) => new Response(s).text();
    this.#output = Promise.all([text(this.#child.stdout), text(this.#child.stderr)]).then((
      [o, e],
    ) => o + e);
  }

  /** SIGTERM (vere saves its snapshot and exits), then its exit code and output. */
  async stop(): Promise<{ code: number; output: string }> {
    try {
      this.#child.kill("SIGTERM");
    } catch {
      // exited already
    }
    const status = await this.#child.status;
    return { code: status.code, output: await this.#output };
  }

  /** SIGKILL, for cleanup after a failure. */
  async kill(): Promise<void> {
    try {
      this.#child.kill("SIGKILL");
    } catch {
      // exited already
    }
    await this.#child.status;
    await this.#output;
  }
}

/**
 * A copy at `dir` of the cached fake ~zod of vere 3.0, grown: started once
 * (which rolls its first epoch, 0i25, with a snapshot) and made to compute
 * `wakes` behn %wakes through conn.sock, then stopped.
 */
export async function grownPier(dir: string, wakes: number): Promise<void> {
  await copyPier(await bootedPier("3.0"), dir);
  const vere = await RunningVere.start("3.0", dir);
  let fed: unknown;
  try {
    const conn = await VereConn.open(dir);
    for (let i = 0; i < wakes; i++) await conn.wake();
    await conn.close();
  } catch (e) {
    fed = e;
  }
  const stopped = await vere.stop();
  if (fed !== undefined) throw fed;
  if (stopped.code !== 0) {
    throw new Error(`vere 3.0 exited ${stopped.code} on ${dir}:\n${tail(stopped.output)}`);
  }
}
