/**
 * Running the real vere from Seguro's own tools (`seguro demo --runtime
 * vere`, benchmarks, tests): whether a binary runs here, a fake ~zod booted
 * once and cached by the binary's and the pill's SHA-256, a vere started on
 * a pier and stopped, and free ports so that several veres never collide.
 * @module
 */

import { exists } from "../vere/pier.ts";
import { createHash } from "node:crypto";
import dgram from "node:dgram";
import { join } from "node:path";
import { VereConn } from "../vere/vere_conn.ts";

/**
 * Where booted piers are cached: `$XDG_CACHE_HOME/seguro/vere-piers` (or
 * `~/.cache/...`), shared by the demo and the tests, outside any repo.
 */
export function vereCacheDir(): string {
  const base = Deno.env.get("XDG_CACHE_HOME") ?? join(Deno.env.get("HOME") ?? "/tmp", ".cache");
  return join(base, "seguro", "vere-piers");
}

/** The end of a process's output, for a failure message. */
export function outputTail(text: string, lines = 20): string {
  return text.split("\n").slice(-lines).join("\n");
}

/**
 * Why the vere at `binary` cannot run here (absent, or its Debian libraries
 * missing: `urbit -R` fails), or undefined when it can. One line, naming the fix.
 */
export function vereProblem(binary: string): string | undefined {
  try {
    Deno.statSync(binary);
  } catch {
    return `no vere at ${binary}`;
  }
  let out: Deno.CommandOutput;
  try {
    out = new Deno.Command(binary, { args: ["-R"], stdout: "piped", stderr: "piped" }).outputSync();
  } catch (e) {
    return `${binary} does not run: ${(e as Error).message}`;
  }
  if (!out.success) {
    const err = new TextDecoder().decode(out.stderr).split("\n")[0];
    return `${binary} does not start here (${err}); install its libraries: ` +
      "apt-get install -y libgmp10 libuv1 libssl3 libcurl4 liblmdb0 libh2o0.13 libsigsegv2 " +
      "zlib1g libavahi-compat-libdnssd1";
  }
  return undefined;
}

/**
 * Flags that keep a vere off fixed ports (a fake ship binds ames to 31337 and
 * HTTP to 80 unless told): ports the kernel has just handed out and taken back.
 */
export async function freeVerePorts(): Promise<string[]> {
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

function sha256File(path: string): string {
  return createHash("sha256").update(Deno.readFileSync(path)).digest("hex");
}

/**
 * The path of a fake ~zod booted by the vere `binary` from `pill`, stopped
 * once live, cached under `cacheDir` by both files' SHA-256. Boots it the
 * first time (minutes: the kernel is compiled), under a lock so that
 * concurrent callers boot it once; later calls return the cached one. Never
 * write into it: copy it first ({@linkcode copyPier}).
 */
export async function bootedZod(binary: string, pill: string, cacheDir: string): Promise<string> {
  const key = `zod-${sha256File(binary).slice(0, 12)}-${sha256File(pill).slice(0, 12)}`;
  Deno.mkdirSync(cacheDir, { recursive: true, mode: 0o700 });
  const pier = join(cacheDir, key);
  const lock = await Deno.open(join(cacheDir, `${key}.lock`), { create: true, write: true });
  try {
    await lock.lock(true);
    if (exists(join(pier, ".urb", "log"))) return pier;
    const tmp = `${pier}.booting`;
    await Deno.remove(tmp, { recursive: true }).catch(() => {});
    const ports = await freeVerePorts();
    const out = await new Deno.Command(binary, {
      args: ["-F", "zod", "-B", pill, "-c", tmp, "-t", "-x", "--no-dock", ...ports],
      stdin: "null",
      stdout: "piped",
      stderr: "piped",
    }).output();
    const log = new TextDecoder().decode(out.stdout) + new TextDecoder().decode(out.stderr);
    if (!out.success || !exists(join(tmp, ".urb", "log"))) {
      throw new Error(`booting a fake ~zod with ${binary} failed:\n${outputTail(log)}`);
    }
    await Deno.rename(tmp, pier);
    return pier;
  } finally {
    lock.close();
  }
}

/** Copies a pier to `to`, which must not exist, keeping modes. */
export async function copyPier(from: string, to: string): Promise<void> {
  const out = await new Deno.Command("cp", { args: ["-a", from, to], stderr: "piped" }).output();
  if (!out.success) {
    throw new Error(`cp -a ${from} ${to} failed: ${new TextDecoder().decode(out.stderr)}`);
  }
}

/** A vere running on a pier until {@linkcode RunningVere.stop}. */
export class RunningVere {
  readonly #child: Deno.ChildProcess;
  readonly #output: Promise<string>;
  /** Its process id. */
  readonly pid: number;

  /** Starts `binary` on `pier`: no terminal, no dock, free ports, then `args`. */
  static async start(binary: string, pier: string, args: string[] = []): Promise<RunningVere> {
    return new RunningVere(binary, [
      "-t",
      "--no-dock",
      ...(await freeVerePorts()),
      ...args,
      pier,
    ]);
  }

  /** Starts `binary` with exactly `args` (a real vere, or a patched one). */
  constructor(binary: string, args: string[]) {
    this.#child = new Deno.Command(binary, {
      args,
      stdin: "null",
      stdout: "piped",
      stderr: "piped",
    }).spawn();
    this.pid = this.#child.pid;
    const text = (s: ReadableStream<Uint8Array>) => new Response(s).text();
    this.#output = Promise.all([text(this.#child.stdout), text(this.#child.stderr)])
      .then(([o, e]) => o + e);
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
}

/**
 * Starts `binary` once on `pier` (vere 3.x rolls the pier's first epoch,
 * with a snapshot, on its first start), has it compute `wakes` behn %wakes
 * through conn.sock, and stops it.
 */
export async function growPier(binary: string, pier: string, wakes: number): Promise<void> {
  const vere = await RunningVere.start(binary, pier);
  let fed: unknown;
  try {
    const conn = await VereConn.open(pier);
    for (let i = 0; i < wakes; i++) await conn.wake();
    await conn.close();
  } catch (e) {
    fed = e;
  }
  const stopped = await vere.stop();
  if (fed !== undefined) throw fed;
  if (stopped.code !== 0) {
    throw new Error(`${binary} exited ${stopped.code} on ${pier}:\n${outputTail(stopped.output)}`);
  }
}
