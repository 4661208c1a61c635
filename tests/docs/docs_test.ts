/**
 * The docs test: the walkthroughs in docs/ run, and the links between the
 * documents resolve.
 *
 * Convention for every `docs/*.md`: a fenced block whose info string is
 * exactly `sh` is RUN; blocks tagged `text`, `console`, `mermaid`, `ts`, ...
 * are illustrative and are not. For each file that has `sh` blocks, the
 * blocks are joined in order into one bash script (`set -euo pipefail` first)
 * and run with bash in a fresh temporary directory, with:
 *
 * - `seguro` on PATH, installed by `deno task install` (the release permission
 *   set, exactly as a user gets it);
 * - `HOME` set to that directory (so `~/.seguro` is private), `NO_COLOR=1`,
 *   `SEGURO_REPO` naming this checkout (for walkthroughs that use its test
 *   tools, such as the fake urbit), no `SEGURO_TOKEN` or `SEGURO_DATA_DIR`
 *   from the caller, and Deno's cache (`DENO_DIR`) kept, so nothing is
 *   downloaded again;
 * - every background job (`cmd &`) killed when the script ends, and the
 *   whole process group killed after {@linkcode SCRIPT_TIMEOUT_MS}.
 *
 * A script passes when it exits 0; on failure its output (with bash's
 * command trace) is printed, and with `SEGURO_DOCS_SHOW=1` always (to write
 * a document's example output from a real run). A failure also prints the
 * tail of every `*.log` file the script left in its directory (the nodes it
 * runs in the background log there), and a timeout the processes it left
 * running, before the directory is removed. Scripts must not sleep blindly:
 * they wait for a condition in a bounded loop. Where bash is absent the
 * scripts are skipped with a note. The link check needs nothing: every
 * relative Markdown link in `docs/*.md` and `README.md` must name a file or
 * directory that exists.
 */

import assert from "node:assert/strict";
import { fileURLToPath } from "node:url";
import { dirname, join, relative } from "node:path";

const REPO = fileURLToPath(new URL("../../", import.meta.url));
const DOCS = join(REPO, "docs");

/** Longest a file's script may run before its process group is killed. */
const SCRIPT_TIMEOUT_MS = 300_000;

/** Lines shown of each log file a failed script left behind. */
const LOG_TAIL_LINES = 40;

/** How deep below its directory a failed script's log files are looked for. */
const LOG_DEPTH_MAX = 2;

/** What bash runs before a file's blocks. */
const PRELUDE = `set -euo pipefail
exec 2>&1
trap 'kill $(jobs -p) 2>/dev/null || true; wait' EXIT
PS4='+ '
set -x
`;

/** One fenced code block of a Markdown file. */
interface FencedBlock {
  /** The info string after the opening fence, trimmed (`sh`, `text`, ...). */
  info: string;
  /** The lines between the fences. */
  body: string;
  /** 1-based line number of the opening fence. */
  line: number;
}

/** The fenced code blocks of `markdown`, in order (backtick and tilde fences). */
function fencedBlocks(markdown: string): FencedBlock[] {
  const lines = markdown.split("\n");
  const blocks: FencedBlock[] = [];
  for (let i = 0; i < lines.length; i++) {
    const open = /^( {0,3})(`{3,}|~{3,})(.*)$/.exec(lines[i]);
    if (open === null) continue;
    const [, indent, fence, info] = open;
    if (fence[0] === "`" && info.includes("`")) continue; // an inline code span, not a fence
    const body: string[] = [];
    let j = i + 1;
    for (; j < lines.length; j++) {
      const close = /^ {0,3}(`{3,}|~{3,})\s*$/.exec(lines[j]);
      if (close !== null && close[1][0] === fence[0] && close[1].length >= fence.length) break;
      body.push(lines[j].startsWith(indent) ? lines[j].slice(indent.length) : lines[j]);
    }
    blocks.push({ info: info.trim(), body: body.join("\n"), line: i + 1 });
    i = j;
  }
  return blocks;
}

/** `markdown` without its fenced blocks and inline code spans (where links are not links). */
function proseOf(markdown: string): string {
  const lines = markdown.split("\n");
  const fences = new Set<number>();
  for (const b of fencedBlocks(markdown)) {
    const count = b.body === "" ? 0 : b.body.split("\n").length;
    for (let k = b.line - 1; k <= b.line + count; k++) fences.add(k);
  }
  return lines.filter((_, i) => !fences.has(i)).join("\n").replace(/`+[^`]*`+/g, "");
}

/** The relative link targets of `markdown` (no scheme, no bare `#anchor`), anchors removed. */
function relativeLinks(markdown: string): string[] {
  const prose = proseOf(markdown);
  const targets: string[] = [];
  for (const m of prose.matchAll(/\]\(\s*<?([^)\s>]+)>?(?:\s+"[^"]*")?\s*\)/g)) targets.push(m[1]);
  for (const m of prose.matchAll(/^\s{0,3}\[[^\]]+\]:\s*<?(\S+?)>?(?:\s|$)/gm)) targets.push(m[1]);
  return targets
    .filter((t) => !/^[a-z][a-z0-9+.-]*:/i.test(t) && !t.startsWith("#"))
    .map((t) => decodeURIComponent(t.replace(/[#?].*$/, "")))
    .filter((t) => t !== "");
}

function markdownFiles(): string[] {
  return [...Deno.readDirSync(DOCS)]
    .filter((e) => e.isFile && e.name.endsWith(".md"))
    .map((e) => join(DOCS, e.name))
    .sort();
}

function haveBash(): boolean {
  try {
    return new Deno.Command("bash", { args: ["-c", "true"], stdout: "null", stderr: "null" })
      .outputSync().success;
  } catch {
    return false;
  }
}

/** Deno's cache directory, so the scripts' `seguro` finds its dependencies without downloading. */
function denoDir(): string | undefined {
  const fromEnv = Deno.env.get("DENO_DIR");
  if (fromEnv) return fromEnv;
  const out = new Deno.Command(Deno.execPath(), { args: ["info", "--json"], stderr: "null" })
    .outputSync();
  if (!out.success) return undefined;
  const dir = JSON.parse(new TextDecoder().decode(out.stdout)).denoDir;
  return typeof dir === "string" ? dir : undefined;
}

/**
 * Installs `seguro` into `tmp/bin` exactly as README says (`deno task install`,
 * which grants the release permission set) and returns the script's environment.
 */
function prepareEnv(tmp: string): Record<string, string> {
  const bin = join(tmp, "bin");
  const install = new Deno.Command(Deno.execPath(), {
    args: ["task", "-q", "install", "--root", tmp],
    cwd: REPO,
    stdout: "piped",
    stderr: "piped",
  }).outputSync();
  assert.equal(
    install.code,
    0,
    `deno task install: ${new TextDecoder().decode(install.stderr)}`,
  );
  const env = Deno.env.toObject();
  for (const name of ["SEGURO_TOKEN", "SEGURO_DATA_DIR", "FORCE_COLOR"]) delete env[name];
  const cache = denoDir();
  return {
    ...env,
    ...(cache === undefined ? {} : { DENO_DIR: cache }),
    HOME: tmp,
    NO_COLOR: "1",
    SEGURO_REPO: REPO.replace(/\/$/, ""),
    DENO_NO_UPDATE_CHECK: "1",
    PATH: `${bin}:${env.PATH ?? "/usr/bin:/bin"}`,
  };
}

/** The `*.log` files under `dir`, at most {@linkcode LOG_DEPTH_MAX} levels down, sorted. */
function logFiles(dir: string, depth = 0): string[] {
  const found: string[] = [];
  let entries: Deno.DirEntry[];
  try {
    entries = [...Deno.readDirSync(dir)];
  } catch {
    return found; // unreadable: the report goes on without it
  }
  for (const e of entries) {
    const path = join(dir, e.name);
    if (e.isFile && e.name.endsWith(".log")) found.push(path);
    else if (e.isDirectory && depth + 1 < LOG_DEPTH_MAX) found.push(...logFiles(path, depth + 1));
  }
  return found.sort();
}

/** The last {@linkcode LOG_TAIL_LINES} lines of every log file under `dir`, for a failure report. */
function logTails(dir: string): string {
  return logFiles(dir).map((path) => {
    let lines: string[];
    try {
      lines = Deno.readTextFileSync(path).trimEnd().split("\n");
    } catch (e) {
      lines = [`(cannot read it: ${(e as Error).message})`];
    }
    const shown = lines.slice(-LOG_TAIL_LINES);
    const head = shown.length < lines.length ? `last ${shown.length} of ${lines.length} lines` : "";
    return `--- ${relative(dir, path)}${head === "" ? "" : ` (${head})`} ---\n${
      shown.join("\n")
    }\n`;
  }).join("");
}

/**
 * The processes a timed-out script left running, as `ps` lists them: the
 * descendants of `pid` (its bash) and any process whose command line names
 * `dir` (a node's exec guard and runtime run in their own process group).
 * WCHAN says what a process waits for: `do_epoll_wait` is an idle event loop
 * (an await that never ends), a futex a lock (a call that blocks), `-` none
 * (it runs).
 */
function leftProcesses(pid: number, dir: string): string {
  let text: string;
  try {
    const out = new Deno.Command("ps", {
      args: ["-eo", "pid=,ppid=,stat=,etime=,wchan:32=,args="],
      stdin: "null",
      stdout: "piped",
      stderr: "piped",
    }).outputSync();
    text = new TextDecoder().decode(out.stdout);
  } catch (e) {
    return `(ps failed: ${(e as Error).message})\n`;
  }
  const rows = text.split("\n").map((line) => line.trim().split(/\s+/)).filter((r) =>
    r.length >= 6
  );
  const ours = new Set([pid]);
  let grew = true;
  while (grew) { // rows are not in tree order: repeat until no child is added
    grew = false;
    for (const [p, parent] of rows) {
      if (ours.has(Number(parent)) && !ours.has(Number(p))) {
        ours.add(Number(p));
        grew = true;
      }
    }
  }
  const left = rows.filter((r) => ours.has(Number(r[0])) || r.slice(5).join(" ").includes(dir));
  return ["PID PPID STAT ELAPSED WCHAN COMMAND", ...left.map((r) => r.join(" "))].join("\n") + "\n";
}

/**
 * Runs `script` with bash in `tmp`; resolves with its exit code, its combined
 * output, and when it ran out of time, the processes it then left running.
 */
async function runScript(
  tmp: string,
  script: string,
): Promise<{ code: number; signal: string | null; output: string; leftRunning?: string }> {
  const path = join(tmp, "walkthrough.sh");
  Deno.writeTextFileSync(path, script);
  const child = new Deno.Command("bash", {
    args: [path],
    cwd: tmp,
    env: prepareEnv(tmp),
    clearEnv: true,
    stdin: "null",
    stdout: "piped",
    stderr: "piped",
    // Its own process group: the whole group can be killed at once, background jobs included.
    detached: true,
  }).spawn();
  const killGroup = () => {
    try {
      Deno.kill(-child.pid, "SIGKILL");
    } catch {
      // The group is gone already.
    }
  };
  let leftRunning: string | undefined;
  const timer = setTimeout(() => {
    // Which process did not end says where the script hangs (e.g. a node that ignored SIGTERM).
    leftRunning = leftProcesses(child.pid, tmp);
    killGroup();
  }, SCRIPT_TIMEOUT_MS);
  try {
    const out = await child.output();
    const text = new TextDecoder();
    return {
      code: out.code,
      signal: out.signal,
      output: text.decode(out.stdout) + text.decode(out.stderr),
      leftRunning,
    };
  } finally {
    clearTimeout(timer);
    killGroup(); // anything the script's trap missed
  }
}

const bash = haveBash();
if (!bash) console.warn("note: bash is absent; the sh blocks of docs/*.md are not run");

for (const file of markdownFiles()) {
  const name = relative(REPO, file);
  const blocks = fencedBlocks(Deno.readTextFileSync(file)).filter((b) => b.info === "sh");
  if (blocks.length === 0) continue;
  Deno.test({
    name: `${name}: its sh blocks run in order and exit 0`,
    ignore: !bash,
    async fn() {
      const script = PRELUDE +
        blocks.map((b) => `# ${name}, the block at line ${b.line}\n${b.body}\n`).join("\n");
      const tmp = await Deno.makeTempDir({ prefix: "seguro-docs-" });
      try {
        const run = await runScript(tmp, script);
        if (run.code !== 0 || Deno.env.get("SEGURO_DOCS_SHOW")) {
          console.error(`--- output of the sh blocks of ${name} ---\n${run.output}--- end ---`);
        }
        if (run.code !== 0) {
          if (run.leftRunning !== undefined) {
            console.error(
              `--- still running after ${
                SCRIPT_TIMEOUT_MS / 1000
              } s, then killed ---\n${run.leftRunning}`,
            );
          }
          console.error(
            `--- the logs the sh blocks of ${name} left ---\n${logTails(tmp)}--- end ---`,
          );
        }
        assert.equal(
          run.code,
          0,
          `the sh blocks of ${name} failed (exit ${run.code}${run.signal ? `, ${run.signal}` : ""}${
            run.leftRunning !== undefined ? `, timed out after ${SCRIPT_TIMEOUT_MS / 1000} s` : ""
          }); the output and the logs are printed above`,
        );
      } finally {
        await Deno.remove(tmp, { recursive: true }).catch(() => {});
      }
    },
  });
}

Deno.test("every relative link in docs/*.md and README.md names a file that exists", () => {
  const broken: string[] = [];
  for (const file of [...markdownFiles(), join(REPO, "README.md")]) {
    for (const target of relativeLinks(Deno.readTextFileSync(file))) {
      try {
        Deno.statSync(join(dirname(file), target));
      } catch {
        broken.push(`${relative(REPO, file)}: ${target}`);
      }
    }
  }
  assert.deepEqual(broken, [], `broken links:\n${broken.join("\n")}`);
});

Deno.test("the fence parser finds sh blocks and skips links inside code", () => {
  const md = [
    "Intro [a](a.md) and `[b](b.md)`.",
    "```sh",
    "echo one",
    "```",
    "~~~text",
    "[c](c.md)",
    "~~~",
    "````sh",
    "echo ```",
    "````",
    "[d]: d.md",
  ].join("\n");
  assert.deepEqual(
    fencedBlocks(md).map((b) => [b.info, b.body, b.line]),
    [["sh", "echo one", 2], ["text", "[c](c.md)", 5], ["sh", "echo ```", 8]],
  );
  assert.deepEqual(relativeLinks(md), ["a.md", "d.md"]);
});
