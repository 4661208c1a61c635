/**
 * `seguro demo`: a 3-node cluster on this machine, ~zod booted from a pill,
 * a runtime streaming events through the runtime socket, the master killed
 * with SIGKILL, the runtime following the new master, and a check that
 * every released event survived.
 * @module
 */

import { Command, type CommandUnknownOpts } from "@commander-js/extra-typings";
import { fileURLToPath } from "node:url";
import { join } from "node:path";
import { ClusterClient } from "../cluster/api.ts";
import type { NodeStatus } from "../cluster/admin_protocol.ts";
import { decodeToken } from "../cluster/token.ts";
import type { ClusterCredentials } from "../cluster/token.ts";
import { daFromMillis } from "../vere/event.ts";
import { cell, cord, jam, list, tuple } from "../vere/noun.ts";
import { RuntimeClient } from "../vere/runtime_client.ts";
import { CliError } from "./lib/errors.ts";
import { colors, count, print } from "./lib/output.ts";
import { selfCommand } from "../server/self_command.ts";

interface DemoNode {
  id: number;
  dir: string;
  address: string;
  child: Deno.ChildProcess;
  log: LineLog;
}

function freePort(): number {
  const l = Deno.listen({ hostname: "127.0.0.1", port: 0 });
  const port = l.addr.port;
  l.close();
  return port;
}

function startNode(args: string[], env: Record<string, string>, log: LineLog): Deno.ChildProcess {
  const { cmd, args: full } = selfCommand(args);
  const child = new Deno.Command(cmd, {
    args: full,
    env: { NO_COLOR: "1", ...env },
    stdin: "null",
    stdout: "piped",
    stderr: "piped",
  }).spawn();
  for (const stream of [child.stdout, child.stderr]) {
    (async () => {
      let rest = "";
      for await (const chunk of stream.pipeThrough(new TextDecoderStream())) {
        rest += chunk;
        const lines = rest.split("\n");
        rest = lines.pop()!;
        log.push(...lines);
      }
    })();
  }
  return child;
}

/** A child's output lines, with waiters woken as lines arrive (no polling). */
class LineLog {
  readonly lines: string[] = [];
  #waiters: { re: RegExp; resolve: (line: string) => void }[] = [];

  push(...lines: string[]): void {
    for (const line of lines) {
      this.lines.push(line);
      const matched = this.#waiters.filter((w) => w.re.test(line));
      this.#waiters = this.#waiters.filter((w) => !matched.includes(w));
      for (const w of matched) w.resolve(line);
    }
  }

  /** The first line matching `re`, already seen or yet to come; a CliError after `timeoutMs`. */
  waitFor(re: RegExp, timeoutMs = 30_000): Promise<string> {
    const seen = this.lines.find((l) => re.test(l));
    if (seen !== undefined) return Promise.resolve(seen);
    return new Promise((resolve, reject) => {
      const timer = setTimeout(() => {
        reject(
          new CliError(
            `the demo cluster did not get ready (waiting for ${re}); last lines:\n${
              this.lines.slice(-10).join("\n")
            }`,
          ),
        );
      }, timeoutMs);
      this.#waiters.push({
        re,
        resolve: (line) => {
          clearTimeout(timer);
          resolve(line);
        },
      });
    });
  }
}

async function status(
  address: string,
  credentials: ClusterCredentials,
): Promise<NodeStatus | undefined> {
  try {
    const c = await ClusterClient.connect(address, credentials);
    try {
      return await c.status();
    } finally {
      c.close();
    }
  } catch {
    return undefined;
  }
}

/** A small, clearly labelled boot sequence when no pill is at hand. */
function generatedBootJob(i: number): Uint8Array {
  return jam(
    tuple(
      daFromMillis(Date.now()) + BigInt(i),
      list([cord("demo")]),
      cord("note"),
      cell(BigInt(i), 0n),
    ),
  );
}

/** A made-up keystroke-like event: `[now /d/term/1 %belt [n n<<64]]`. */
function eventJob(n: number): Uint8Array {
  return jam(
    tuple(
      daFromMillis(Date.now()),
      list([cord("d"), cord("term"), cord("1")]),
      cord("belt"),
      cell(BigInt(n), BigInt(n) << 64n),
    ),
  );
}

/** Builds the `demo` command. */
export function demoCommand(): CommandUnknownOpts {
  return new Command("demo")
    .description(
      "run a 3-node cluster here, boot ~zod, stream events, kill the master, check nothing released was lost",
    )
    .option(
      "--pill <file>",
      "boot ~zod from this pill (default ../shared/fixtures/brass.pill when present)",
    )
    .option("--no-pill", "plan a small generated boot sequence instead of a real pill")
    .option("--seconds <n>", "seconds of load before and after the kill", (v) => Number(v), 4)
    .option("--rate <n>", "events per second the runtime plans", (v) => Number(v), 2000)
    .option("--keep", "leave the cluster running at the end")
    .action(async (options) => {
      const root = await Deno.makeTempDir({ prefix: "seguro-demo-" });
      const nodes: DemoNode[] = [];
      const kill = () => {
        for (const n of nodes) {
          try {
            n.child.kill("SIGKILL");
          } catch { /* gone */ }
        }
      };
      const interrupted = () => {
        kill();
        Deno.removeSync(root, { recursive: true });
        Deno.exit(130);
      };
      Deno.addSignalListener("SIGINT", interrupted);
      try {
        print(colors.bold("1. Starting a 3-node cluster on 127.0.0.1 (data in " + root + ")"));
        for (let i = 1; i <= 3; i++) {
          const address = `127.0.0.1:${freePort()}`;
          const dir = join(root, `node${i}`);
          const log = new LineLog();
          const env: Record<string, string> = {};
          if (i > 1) {
            env.SEGURO_TOKEN = (await Deno.readTextFile(join(nodes[0].dir, "token"))).trim();
          }
          const args = i === 1
            ? ["init", "--data-dir", dir, "--listen", address]
            : ["join", nodes[0].address, "--data-dir", dir, "--listen", address];
          const child = startNode(args, env, log);
          nodes.push({ id: i, dir, address, child, log });
          await log.waitFor(i === 1 ? /became leader/ : /now follower/);
          if (i > 1) await nodes[0].log.waitFor(new RegExp(`promoted node ${i} to voter`));
          print(`   node ${i} at ${address}${i === 1 ? " (master)" : ", joined and promoted"}`);
        }
        const credentials = decodeToken(await Deno.readTextFile(join(nodes[0].dir, "token")));

        print(colors.bold("2. Booting ~zod"));
        const pill = options.pill === undefined
          ? fileURLToPath(new URL("../../shared/fixtures/brass.pill", import.meta.url))
          : options.pill === false
          ? ""
          : options.pill;
        let havePill = options.pill !== false;
        try {
          if (havePill) Deno.statSync(pill);
        } catch {
          if (typeof options.pill === "string") {
            throw new CliError(`cannot read the pill ${pill}; check the path, or pass --no-pill`);
          }
          havePill = false;
        }
        const addArgs = [
          "ship",
          "add",
          "~zod",
          "--fake",
          "--cluster",
          nodes[0].address,
          ...(havePill ? ["--pill", pill] : []),
        ];
        const add = startNode(addArgs, {
          SEGURO_TOKEN: (await Deno.readTextFile(join(nodes[0].dir, "token"))).trim(),
        }, new LineLog());
        if (!(await add.status).success) throw new CliError("seguro ship add failed in the demo");
        const rt0 = await RuntimeClient.connect({ path: join(nodes[0].dir, "runtime.sock") });
        await rt0.lead(0n);
        const head = rt0.next((m) => m.type === "head");
        rt0.send({ type: "head", ship: 0n });
        const h = await head;
        let eve = h.type === "head" ? h.eve : 0;
        if (havePill) {
          print(`   ~zod booted from ${pill}: ${eve} boot events planned and committed`);
        } else {
          print(
            `   ${
              colors.yellow("no pill found")
            }: planning a small GENERATED boot sequence (not a real ship)`,
          );
          for (let i = 1; i <= 5; i++) rt0.plan(0n, ++eve, 0, generatedBootJob(i));
          await rt0.next((m) => m.type === "done" && m.eve >= eve);
        }
        rt0.close();

        print(
          colors.bold(
            `3. A runtime plans ~${options.rate} events/s through node 1's runtime socket`,
          ),
        );
        const jobs = new Map<number, Uint8Array>();
        let released = eve;
        let planned = eve;
        let master = nodes[0];
        let rt = await RuntimeClient.connect({ path: join(master.dir, "runtime.sock") });
        const onDone = (m: { type: string; eve?: number }) => {
          if (m.type === "done" && rt.isLead(0n) && m.eve! > released) released = m.eve!;
        };
        let off = rt.on(onDone);
        const t0 = Date.now();
        let lastShown = 0;
        const plan = () => {
          const target = eve + Math.floor(((Date.now() - t0) / 1000) * options.rate);
          while (planned < target && planned - released < 4096) {
            planned++;
            const job = eventJob(planned);
            jobs.set(planned, job);
            rt.plan(0n, planned, planned & 0xffff, job);
          }
        };
        const progress = async (label: string) => {
          if (Date.now() - lastShown < 500) return;
          lastShown = Date.now();
          const s = await status(master.address, credentials);
          const lag = s
            ? s.members.filter((m) => m.id !== s.nodeId).map((m) =>
              `n${m.id} ${s.lastIndex - (m.match ?? 0)}`
            ).join(", ")
            : "?";
          const rate = ((released - eve) / ((Date.now() - t0) / 1000)).toFixed(0);
          print(
            `   ${label} planned ${count(planned)}  released ${count(released)}  committed idx ${
              count(s?.commitIndex ?? 0)
            }  ${rate} ev/s  lag: ${lag}`,
          );
        };
        while (Date.now() - t0 < options.seconds * 1000) {
          plan();
          await progress("");
          await new Promise((r) => setTimeout(r, 10));
        }

        print(colors.bold(`4. kill -9 the master (node ${master.id})`));
        const releasedAtKill = released;
        const killedAt = Date.now();
        off();
        master.child.kill("SIGKILL");
        rt.close();
        const survivors = nodes.filter((n) => n !== master);
        let newMaster: DemoNode | undefined;
        while (newMaster === undefined) {
          for (const n of survivors) {
            const s = await status(n.address, credentials);
            if (s?.role === "leader") newMaster = n;
          }
          if (newMaster === undefined) await new Promise((r) => setTimeout(r, 20));
        }
        master = newMaster;
        rt = await RuntimeClient.connect({ path: join(master.dir, "runtime.sock") });
        off = rt.on(onDone);
        // A new leader is master once its applied state is the log's tail: it says %lead.
        await rt.lead(0n);
        const head2 = rt.next((m) => m.type === "head");
        rt.send({ type: "head", ship: 0n });
        const h2 = await head2;
        const resumeFrom = (h2.type === "head" ? h2.eve : released) + 1;
        // Re-plan what the new master does not have (planned but never released).
        planned = resumeFrom - 1;
        const firstDone = rt.next((m) => m.type === "done");
        planned++;
        rt.plan(0n, planned, planned & 0xffff, jobs.get(planned) ?? eventJob(planned));
        await firstDone;
        const failoverMs = Date.now() - killedAt;
        print(
          `   node ${master.id} is master; the runtime reconnected and was released again after ${failoverMs} ms`,
        );
        const t1 = Date.now();
        while (Date.now() - t1 < options.seconds * 1000) {
          plan();
          await progress("");
          await new Promise((r) => setTimeout(r, 10));
        }
        if (released < planned) await rt.next((m) => m.type === "done" && m.eve >= planned);

        print(colors.bold("5. Checking every released event on the new master"));
        const client = await ClusterClient.connect(master.address, credentials);
        let checked = 0;
        let lost = 0;
        try {
          for (let from = eve + 1; from <= released;) {
            const batch = await client.ships.events(0n, from, 5000);
            if (batch.length === 0) break;
            for (const e of batch) {
              const want = jobs.get(e.eve);
              if (
                want !== undefined &&
                (want.length !== e.job.length || want.some((b, i) => b !== e.job[i]))
              ) lost++;
              checked++;
            }
            from = batch[batch.length - 1].eve + 1;
          }
        } finally {
          client.close();
        }
        const missing = Math.max(0, released - eve - checked);
        lost += missing;
        rt.close();
        print(colors.bold("Report"));
        print(
          `   events released before the kill: ${count(releasedAtKill - eve)}, after: ${
            count(released - releasedAtKill)
          }`,
        );
        print(
          `   failover (kill -9 of the master to the first release by the new one): ${failoverMs} ms`,
        );
        print(`   released events checked on the new master: ${count(checked)}; lost: ${lost}`);
        if (lost > 0) throw new CliError(`${lost} released events are missing on the new master`);
        print(colors.green("   no released event was lost"));
        if (options.keep) {
          print(
            `Cluster left running (data in ${root}); stop it with: kill ${
              nodes.map((n) => n.child.pid).join(" ")
            }`,
          );
          return;
        }
      } finally {
        Deno.removeSignalListener("SIGINT", interrupted);
        if (!options.keep) {
          kill();
          await Deno.remove(root, { recursive: true }).catch(() => {});
        }
      }
    });
}
