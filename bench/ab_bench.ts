/**
 * An earlier commit against this checkout, through `bench/runtime_bench.ts`,
 * run after run in turn (interleaved, so a slow minute of the machine hits
 * both), with the median and range of each figure. On a small shared machine
 * one run of a row moves by 15% either way; five interleaved rounds say which side is
 * faster.
 *
 *     deno task bench:ab --before COMMIT [--rounds 5] [--json] -- [runtime_bench options]
 *
 * e.g. `deno task bench:ab --before c327097 -- --k quorum --inflight 64,1024 --no-plaintext`.
 * The earlier commit is checked out into a temporary git worktree and runs
 * this checkout's `bench/runtime_bench.ts` (same measurement on both sides),
 * with this checkout's copy of any module the benchmark imports that the
 * commit does not have (e.g. `server/process_cpu.ts` before P13; each is
 * named as it is copied); the worktree is removed at the end, also after a
 * failure.
 * @module
 */

import { parseArgs } from "node:util";
import { fileURLToPath } from "node:url";
import { join } from "node:path";

const REPO = fileURLToPath(new URL("..", import.meta.url));
const BENCH = fileURLToPath(new URL("./runtime_bench.ts", import.meta.url));

const split = Deno.args.indexOf("--");
const own = split < 0 ? Deno.args : Deno.args.slice(0, split);
const benchArgs = split < 0 ? [] : Deno.args.slice(split + 1);
const { values } = parseArgs({
  args: own,
  options: {
    before: { type: "string" },
    rounds: { type: "string", default: "5" },
    json: { type: "boolean", default: false },
  },
});
if (values.before === undefined) {
  console.error("error: --before COMMIT is required (the commit to compare this checkout with)");
  Deno.exit(2);
}
const ROUNDS = Number(values.rounds);
if (!Number.isSafeInteger(ROUNDS) || ROUNDS < 1) {
  console.error(`error: --rounds takes a positive integer (got ${values.rounds})`);
  Deno.exit(2);
}

/** One row of runtime_bench.ts --json (the fields compared). */
interface BenchRow {
  system: string;
  k: string;
  inflight: number;
  per_s: number;
  p50_ms: number;
  leader_cpu_us: number | null;
  follower_max_cpu_us: number | null;
}

const FIGURES = ["per_s", "p50_ms", "leader_cpu_us", "follower_max_cpu_us"] as const;

async function git(args: string[]): Promise<void> {
  const out = await new Deno.Command("git", { args, cwd: REPO, stderr: "piped" }).output();
  if (!out.success) {
    throw new Error(`git ${args.join(" ")}: ${new TextDecoder().decode(out.stderr).trim()}`);
  }
}

async function runOnce(repo: string): Promise<BenchRow[]> {
  const out = await new Deno.Command(Deno.execPath(), {
    args: ["run", "-A", join(repo, "bench", "runtime_bench.ts"), ...benchArgs, "--json"],
    stdout: "piped",
    stderr: "inherit",
  }).output();
  if (!out.success) throw new Error(`runtime_bench.ts failed in ${repo} (exit ${out.code})`);
  return JSON.parse(new TextDecoder().decode(out.stdout));
}

/** Copies into `worktree` each module the benchmark imports that is not there. */
async function copyMissingImports(worktree: string): Promise<void> {
  const source = await Deno.readTextFile(BENCH);
  for (const [, path] of source.matchAll(/from "\.\.\/([^"]+)"/g)) {
    try {
      await Deno.stat(join(worktree, path));
    } catch {
      console.error(`${path} is not in ${values.before}: this checkout's copy runs there`);
      await Deno.copyFile(join(REPO, path), join(worktree, path));
    }
  }
}

function median(xs: number[]): number {
  const s = [...xs].sort((a, b) => a - b);
  const m = s.length >> 1;
  return s.length % 2 === 1 ? s[m] : (s[m - 1] + s[m]) / 2;
}

const worktree = await Deno.makeTempDir({ prefix: "seguro-ab-" });
const results = new Map<string, Map<string, number[]>>(); // "side row" -> figure -> values
try {
  await git(["worktree", "add", "--detach", "--force", worktree, values.before]);
  await Deno.copyFile(BENCH, join(worktree, "bench", "runtime_bench.ts"));
  await copyMissingImports(worktree);
  for (let round = 1; round <= ROUNDS; round++) {
    for (const [side, repo] of [["before", worktree], ["after", REPO]] as const) {
      console.error(`round ${round}/${ROUNDS}: ${side}`);
      for (const row of await runOnce(repo)) {
        const key = `${row.system} K=${row.k} inflight=${row.inflight} ${side}`;
        const figures = results.get(key) ?? new Map<string, number[]>();
        results.set(key, figures);
        for (const f of FIGURES) {
          const v = row[f];
          if (v !== null) figures.set(f, [...(figures.get(f) ?? []), v]);
        }
      }
    }
  }
} finally {
  await git(["worktree", "remove", "--force", worktree]).catch(() => undefined);
  await Deno.remove(worktree, { recursive: true }).catch(() => undefined);
}

interface Stat {
  median: number;
  min: number;
  max: number;
}

// Rows in order, each row's "after" next to its "before".
const summary = [...results].sort(([a], [b]) => a.localeCompare(b)).map(([row, figures]) => ({
  row,
  figures: Object.fromEntries(
    [...figures].map(([f, xs]): [string, Stat] => [
      f,
      { median: median(xs), min: Math.min(...xs), max: Math.max(...xs) },
    ]),
  ),
}));
if (values.json) {
  console.log(JSON.stringify(summary, null, 2));
} else {
  for (const { row, figures } of summary) {
    const parts = Object.entries(figures).map(([f, v]) => {
      const n = (x: number) => x.toFixed(f === "p50_ms" ? 2 : 0);
      return `${f} ${n(v.median)} (${n(v.min)}-${n(v.max)})`;
    });
    console.log(`${row.padEnd(42)} ${parts.join("  ")}`);
  }
}
