/**
 * One `seguro` process of the nemesis, started inside its node's network
 * namespace (`ip netns exec NS deno run ... main.ts ...`, which execs, so the
 * child's pid is the node's). Its output goes to a log file; the last lines
 * stay in memory for reports and for waiting on a line (never on a sleep).
 * @module
 */

import { NODE_LINES_KEPT } from "./limits.ts";

/** A line of the node's output, numbered from 0 over the process's life. */
interface Waiter {
  re: RegExp;
  from: number;
  resolve: (line: string) => void;
}

/** A running (or ended) node process. */
export class NodeProcess {
  /** The child (its pid is the node's). */
  readonly child: Deno.ChildProcess;
  /** Resolves when the process has ended and all its output is read. */
  readonly exited: Promise<Deno.CommandStatus>;
  readonly #lines: string[] = [];
  #seq = 0;
  #waiters: Waiter[] = [];
  readonly #log: Deno.FsFile;
  readonly #onLine: (line: string) => void;
  #ended = false;

  /**
   * Starts `ip netns exec ns cmd args` with `env`, appending its output to
   * `logPath`; `onLine` sees every line as it arrives.
   */
  constructor(o: {
    ns: string;
    cmd: string;
    args: readonly string[];
    env: Record<string, string>;
    logPath: string;
    onLine: (line: string) => void;
  }) {
    this.#log = Deno.openSync(o.logPath, { create: true, append: true });
    this.#onLine = o.onLine;
    this.child = new Deno.Command("ip", {
      args: ["netns", "exec", o.ns, o.cmd, ...o.args],
      env: o.env,
      stdin: "null",
      stdout: "piped",
      stderr: "piped",
    }).spawn();
    this.#write(`--- nemesis: started pid ${this.child.pid}: ${o.cmd} ${o.args.join(" ")}\n`);
    const pumps = [this.#pump(this.child.stdout), this.#pump(this.child.stderr)];
    this.exited = Promise.all(pumps).then(async () => {
      const status = await this.child.status;
      this.#ended = true;
      this.#write(
        `--- nemesis: pid ${this.child.pid} ended (code ${status.code}, signal ${status.signal})\n`,
      );
      this.#log.close();
      return status;
    });
  }

  /** The node's pid. */
  get pid(): number {
    return this.child.pid;
  }

  /** True once the process has ended. */
  get ended(): boolean {
    return this.#ended;
  }

  #write(text: string): void {
    const bytes = new TextEncoder().encode(text);
    let at = 0;
    while (at < bytes.length) at += this.#log.writeSync(bytes.subarray(at));
  }

  async #pump(stream: ReadableStream<Uint8Array>): Promise<void> {
    let rest = "";
    for await (const chunk of stream.pipeThrough(new TextDecoderStream())) {
      this.#write(chunk);
      rest += chunk;
      const parts = rest.split("\n");
      rest = parts.pop()!;
      for (const line of parts) this.#add(line);
    }
    if (rest !== "") this.#add(rest);
  }

  #add(line: string): void {
    const n = this.#seq++;
    this.#lines.push(line);
    if (this.#lines.length > NODE_LINES_KEPT) this.#lines.shift();
    this.#onLine(line);
    this.#waiters = this.#waiters.filter((w) => {
      if (n >= w.from && w.re.test(line)) {
        w.resolve(line);
        return false;
      }
      return true;
    });
  }

  /** Number of lines so far: wait only for lines after it. */
  mark(): number {
    return this.#seq;
  }

  /** The last `n` lines. */
  tail(n: number): string[] {
    return this.#lines.slice(-n);
  }

  /** The first line matching `re` numbered `from` or later; rejects after `timeoutMs`. */
  waitFor(re: RegExp, from: number, timeoutMs: number): Promise<string> {
    const kept = this.#seq - this.#lines.length;
    for (let i = Math.max(from, kept); i < this.#seq; i++) {
      const line = this.#lines[i - kept];
      if (re.test(line)) return Promise.resolve(line);
    }
    return new Promise((resolve, reject) => {
      const waiter: Waiter = {
        re,
        from,
        resolve: (line) => {
          clearTimeout(timer);
          resolve(line);
        },
      };
      const timer = setTimeout(() => {
        this.#waiters = this.#waiters.filter((w) => w !== waiter);
        reject(new Error(`no line matching ${re} from pid ${this.pid} within ${timeoutMs} ms`));
      }, timeoutMs);
      this.#waiters.push(waiter);
    });
  }

  /** Sends a signal; false when the process has already ended. */
  signal(signal: Deno.Signal): boolean {
    if (this.#ended) return false;
    try {
      this.child.kill(signal);
      return true;
    } catch {
      return false;
    }
  }
}
