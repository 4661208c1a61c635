/**
 * `deno task deps`: checks the layering (docs/architecture.md section 2),
 * `main.ts -> cmd -> server -> {cluster, vere} -> core`, and that no module
 * of ours imports itself through a cycle. Prints one line per violation and a
 * summary; exits 0 when clean, 1 on any violation, 2 when the graph could not
 * be read. `--json` prints the same as one JSON object; `--root DIR` checks
 * another checkout.
 *
 * The graph is Deno's own (`deno info --json`, one run for every source file,
 * rooted at a generated `data:` module that imports them all), so type-only
 * imports, re-exports and dynamic imports all count. npm: and node: imports
 * are not ours and are skipped; jsr:, http: and https: imports are reported,
 * as JSR and deno.land are unreachable here.
 *
 * Product code is main.ts and the folders core/, cluster/, vere/, server/,
 * cmd/, except test files (`*_test.ts`). A test file beside its module
 * follows its folder's rule and may also import tests/. tests/, bench/ and
 * dist/ (and any other folder, such as tools/) may import anything.
 * @module
 */

import { join, relative, resolve, sep } from "node:path";
import { fileURLToPath, pathToFileURL } from "node:url";

/** The folder of shared cmd/ helpers: every command may import them; they import no command. */
export const CMD_SHARED_DIR = "cmd/lib/";

/** The one cmd/ module that may import every command: it builds the CLI. */
export const CMD_MOD = "cmd/mod.ts";

/** All main.ts may import. */
export const MAIN_IMPORTS: readonly string[] = [CMD_MOD];

/** The pure noun codec, the one vere/ module cluster/ may use. */
export const NOUN_CODEC = "vere/noun.ts";

/** Modules any file may import (the JSON import of deno.json). */
export const IMPORTABLE_ANYWHERE: readonly string[] = ["deno.json"];

/** The product folders, from the bottom of the layering up. */
const PRODUCT_FOLDERS = ["core", "cluster", "vere", "server", "cmd"] as const;

/** Folders of code that ships nowhere: they may import anything. */
const SUPPORT_FOLDERS = ["tests", "bench", "dist"];

/** Folders not searched for source files (build output, caches). */
const SKIPPED_DIRS = ["dist/out", "node_modules"];

/** Extensions of the source files handed to `deno info`. */
const SOURCE_FILE = /\.(ts|tsx|mts|js|jsx|mjs)$/;

/** A test file beside its module. */
const TEST_FILE = /_test\.(ts|tsx|mts|js|jsx|mjs)$/;

/** A specifier Deno would have to fetch from the network. */
const REMOTE_SPECIFIER = /^(jsr|https?):/;

/** Any URL specifier; a repository path (e.g. `core/log.ts`) has no scheme. */
const URL_SPECIFIER = /^[a-zA-Z][a-zA-Z0-9+.-]*:/;

/** Files given per `deno info` run, keeping its one argument well under Linux's 128 KiB. */
const FILES_PER_RUN_MAX = 500;

/** One import: `from` imports `to`. */
export interface Edge {
  /** The importing file, relative to the repository root with `/` (e.g. `cluster/node.ts`). */
  from: string;
  /** The imported file, relative like `from`, or a URL specifier (`jsr:@std/assert@1`, `npm:...`). */
  to: string;
  /** `import type` / `export type` only: nothing is loaded at run time. */
  typeOnly?: boolean;
  /** `import()`: loaded when called, not when the importer is. */
  dynamic?: boolean;
}

/** What a violation breaks. */
export type ViolationKind = "LAYER" | "REMOTE" | "CYCLE" | "ERROR";

/** One broken rule, printed as one line. */
export interface Violation {
  /** Which rule: the first word of the printed line. */
  kind: ViolationKind;
  /**
   * LAYER and REMOTE: the importer and the imported. CYCLE: the cycle's files
   * in import order, starting and ending with its first file (by name).
   * ERROR: the file that could not be read.
   */
  files: string[];
  /** The rule broken, or the error, in words. */
  reason: string;
  /** LAYER and REMOTE: every import of the pair is type-only. */
  typeOnly?: boolean;
}

/** What `deno info` gave: our modules and their imports. */
export interface Graph {
  /** Our modules reached, relative to the root, sorted. */
  modules: string[];
  /** Every import of one of our modules, one per (from, to) pair. */
  edges: Edge[];
  /** Modules Deno could not read or imports it could not resolve. */
  errors: Violation[];
}

type Layer = typeof PRODUCT_FOLDERS[number] | "main" | "support" | "other";

/** The layer a repository path belongs to. */
function layerOf(path: string): Layer {
  if (path === "main.ts") return "main";
  const slash = path.indexOf("/");
  if (slash < 0) return "other";
  const top = path.slice(0, slash);
  for (const folder of PRODUCT_FOLDERS) if (folder === top) return folder;
  return SUPPORT_FOLDERS.includes(top) ? "support" : "other";
}

/** The module a test file tests: `cmd/alarms_test.ts` -> `cmd/alarms.ts`. */
function subjectOf(testPath: string): string {
  return testPath.replace(/_test(\.[a-z]+)$/, "$1");
}

/** May `layer` import `to` by its folder rule? `to` is one of ours. */
function folderAllows(layer: Layer, from: string, to: string): boolean {
  const target = layerOf(to);
  switch (layer) {
    case "core":
      return target === "core";
    case "cluster":
      return target === "core" || target === "cluster" || to === NOUN_CODEC;
    case "vere":
      return target === "vere";
    case "server":
      return target === "server" || target === "cluster" || target === "vere" ||
        target === "core";
    case "cmd":
      if (target === "cmd") {
        // A command imports the shared helpers (cmd/lib/), never another command; the
        // helpers import one another but never a command; cmd/mod.ts builds the CLI.
        return to.startsWith(CMD_SHARED_DIR) || from === CMD_MOD ||
          (TEST_FILE.test(from) && to === subjectOf(from));
      }
      return target === "server" || target === "cluster" || target === "vere" ||
        target === "core";
    case "main":
      return MAIN_IMPORTS.includes(to);
    case "support":
    case "other":
      return true;
  }
}

/** The rule of `layer`, in words, for the printed line. */
function folderRule(layer: Layer, to: string): string {
  switch (layer) {
    case "core":
      return "core/ imports nothing of ours outside core/";
    case "cluster":
      return `cluster/ may import only core/ and ${NOUN_CODEC}`;
    case "vere":
      return "vere/ imports nothing of ours outside vere/";
    case "server":
      return "server/ may import only cluster/, vere/ and core/";
    case "cmd":
      return layerOf(to) === "cmd"
        ? `a command never imports a command; shared helpers live in ${CMD_SHARED_DIR}`
        : "cmd/ may import only server/, cluster/, vere/, core/ and the shared cmd/ helpers";
    case "main":
      return `main.ts may import only ${MAIN_IMPORTS.join(", ")}`;
    case "support":
    case "other":
      return "no rule";
  }
}

/** The layering rule `from -> to` breaks, or null. `to` is one of ours. */
function layerViolation(from: string, to: string): string | null {
  const layer = layerOf(from);
  if (layer === "support" || layer === "other") return null;
  if (IMPORTABLE_ANYWHERE.includes(to)) return null;
  const isTest = TEST_FILE.test(from);
  if (layerOf(to) === "support") {
    if (isTest && to.startsWith("tests/")) return null;
    return isTest
      ? "a test beside its module may add only tests/ helpers to its folder's rule"
      : "product code never imports tests/, bench/ or dist/";
  }
  if (!isTest && TEST_FILE.test(to)) return "product code never imports a test file";
  return folderAllows(layer, from, to) ? null : folderRule(layer, to);
}

/**
 * The elementary cycles among our modules, at most one per file: for each
 * file, by name, the shortest cycle through it whose other files all sort
 * after it. Every module on a cycle is thus on a reported one, no cycle is
 * reported twice, and each starts at its first file by name.
 */
function findCycles(edges: readonly Edge[]): string[][] {
  const next = new Map<string, Set<string>>();
  for (const { from, to } of edges) {
    if (URL_SPECIFIER.test(to)) continue;
    const targets = next.get(from) ?? new Set<string>();
    targets.add(to);
    next.set(from, targets);
  }
  const sorted = new Map<string, string[]>();
  for (const [from, targets] of next) sorted.set(from, [...targets].sort());

  const cycles: string[][] = [];
  for (const start of [...sorted.keys()].sort()) {
    // Breadth first over files after `start`, until an import leads back to it.
    const parent = new Map<string, string>();
    const queue = [start];
    let last: string | null = null;
    for (let i = 0; i < queue.length && last === null; i++) {
      for (const to of sorted.get(queue[i]) ?? []) {
        if (to === start) {
          last = queue[i];
          break;
        }
        if (to > start && !parent.has(to)) {
          parent.set(to, queue[i]);
          queue.push(to);
        }
      }
    }
    if (last === null) continue;
    const path: string[] = [];
    for (let file = last; file !== start; file = parent.get(file)!) path.push(file);
    cycles.push([start, ...path.reverse(), start]);
  }
  return cycles;
}

/** Orders violations: by kind (LAYER, REMOTE, CYCLE, ERROR), then by files. */
function compareViolations(a: Violation, b: Violation): number {
  const order: ViolationKind[] = ["LAYER", "REMOTE", "CYCLE", "ERROR"];
  const byKind = order.indexOf(a.kind) - order.indexOf(b.kind);
  if (byKind !== 0) return byKind;
  const x = a.files.join("\n");
  const y = b.files.join("\n");
  return x < y ? -1 : x > y ? 1 : 0;
}

/**
 * The layering violations, remote imports and import cycles in a graph.
 * Pure: the edges are all it reads. Paths are relative to the repository
 * root; npm: and node: imports are skipped. Sorted by kind, then by files.
 *
 * @example
 * ```ts
 * checkGraph([{ from: "core/raft.ts", to: "cluster/node.ts" }]);
 * // [{ kind: "LAYER", files: ["core/raft.ts", "cluster/node.ts"],
 * //    reason: "core/ imports nothing of ours outside core/", typeOnly: false }]
 * ```
 */
export function checkGraph(edges: readonly Edge[]): Violation[] {
  // One entry per pair: type-only only if every import of the pair is.
  const pairs = new Map<string, Edge>();
  for (const edge of edges) {
    const key = `${edge.from}\n${edge.to}`;
    const seen = pairs.get(key);
    const typeOnly = (edge.typeOnly ?? false) && (seen?.typeOnly ?? true);
    pairs.set(key, { from: edge.from, to: edge.to, typeOnly });
  }

  const violations: Violation[] = [];
  for (const { from, to, typeOnly } of pairs.values()) {
    if (REMOTE_SPECIFIER.test(to)) {
      violations.push({
        kind: "REMOTE",
        files: [from, to],
        reason: "JSR and remote URLs are unreachable here; use an npm: or node: import",
        typeOnly,
      });
      continue;
    }
    if (URL_SPECIFIER.test(to)) continue;
    const reason = layerViolation(from, to);
    if (reason !== null) violations.push({ kind: "LAYER", files: [from, to], reason, typeOnly });
  }
  for (const cycle of findCycles([...pairs.values()])) {
    violations.push({ kind: "CYCLE", files: cycle, reason: "an import cycle" });
  }
  return violations.sort(compareViolations);
}

/**
 * A violation as one line, e.g. `LAYER cluster/node.ts imports vere/event.ts
 * (cluster/ may import only core/ and vere/noun.ts)` or
 * `CYCLE cmd/ship.ts -> cmd/ship_pier.ts -> cmd/ship.ts`.
 */
export function formatViolation(violation: Violation): string {
  const { kind, files, reason } = violation;
  switch (kind) {
    case "LAYER":
    case "REMOTE":
      return `${kind} ${files[0]} imports ${files[1]} (${reason})`;
    case "CYCLE":
      return `${kind} ${files.join(" -> ")}`;
    case "ERROR":
      return `${kind} ${files[0]}: ${reason}`;
  }
}

/** The last line: counts, and what was found. */
export function formatSummary(graph: Graph, violations: readonly Violation[]): string {
  const imports = graph.edges.filter((e) => !URL_SPECIFIER.test(e.to)).length;
  const head = `deps: ${graph.modules.length} modules, ${imports} imports`;
  if (violations.length === 0) return `${head}, layering and cycles clean`;
  const words: [ViolationKind, string, string][] = [
    ["LAYER", "layering", "layering"],
    ["REMOTE", "remote import", "remote imports"],
    ["CYCLE", "cycle", "cycles"],
    ["ERROR", "unreadable", "unreadable"],
  ];
  const counts: string[] = [];
  for (const [kind, one, many] of words) {
    const count = violations.filter((v) => v.kind === kind).length;
    if (count > 0) counts.push(`${count} ${count === 1 ? one : many}`);
  }
  const total = `${violations.length} violation${violations.length === 1 ? "" : "s"}`;
  return `${head}, ${total} (${counts.join(", ")})`;
}

/** The source files under `root`, relative with `/`, sorted. */
async function listSources(root: string): Promise<string[]> {
  const files: string[] = [];
  const dirs = [""];
  while (dirs.length > 0) {
    const dir = dirs.pop()!;
    for await (const entry of Deno.readDir(join(root, dir))) {
      const path = dir === "" ? entry.name : `${dir}/${entry.name}`;
      if (entry.name.startsWith(".")) continue;
      if (entry.isDirectory && !SKIPPED_DIRS.includes(path)) dirs.push(path);
      if (entry.isFile && SOURCE_FILE.test(entry.name)) files.push(path);
    }
  }
  return files.sort();
}

/** The parts of `deno info --json` read here. */
interface DenoInfo {
  modules: {
    specifier: string;
    error?: string;
    dependencies?: {
      specifier: string;
      code?: { specifier?: string; error?: string };
      type?: { specifier?: string; error?: string };
      isDynamic?: boolean;
    }[];
  }[];
}

/** Runs `deno info --json` on a module importing every one of `files`. */
async function denoInfo(root: string, files: readonly string[]): Promise<DenoInfo> {
  const source = files
    .map((f) => `import ${JSON.stringify(pathToFileURL(join(root, f)).href)};\n`)
    .join("");
  const config = join(root, "deno.json");
  let hasConfig = false;
  try {
    hasConfig = (await Deno.stat(config)).isFile;
  } catch (e) {
    if (!(e instanceof Deno.errors.NotFound)) throw e;
  }
  const args = [
    "info",
    "--json",
    "--no-lock",
    "--no-remote",
    "--no-npm",
    ...(hasConfig ? ["--config", config] : ["--no-config"]),
    `data:application/typescript,${encodeURIComponent(source)}`,
  ];
  const out = await new Deno.Command(Deno.execPath(), {
    args,
    cwd: root,
    stdin: "null",
    stdout: "piped",
    stderr: "piped",
  }).output();
  if (!out.success) {
    const stderr = new TextDecoder().decode(out.stderr).trim();
    throw new Error(`deno info failed (exit ${out.code}): ${stderr}`);
  }
  return JSON.parse(new TextDecoder().decode(out.stdout)) as DenoInfo;
}

/**
 * Our module graph as Deno resolves it: every source file under `root`
 * (except dot folders, dist/out and node_modules) and what it imports.
 */
export async function loadGraph(root: string): Promise<Graph> {
  const base = resolve(root);
  const files = await listSources(base);

  /** `specifier` relative to the root with `/`, or null if it is not a file of ours. */
  function ours(specifier: string): string | null {
    if (!specifier.startsWith("file:")) return null;
    const path = relative(base, fileURLToPath(specifier));
    if (path === "" || path.startsWith("..") || path.startsWith(sep)) return null;
    return path.split(sep).join("/");
  }

  const modules = new Set<string>();
  const edges = new Map<string, Edge>();
  const errors = new Map<string, Violation>();
  for (let i = 0; i < files.length; i += FILES_PER_RUN_MAX) {
    const info = await denoInfo(base, files.slice(i, i + FILES_PER_RUN_MAX));
    for (const module of info.modules) {
      const from = ours(module.specifier);
      if (from === null) continue;
      modules.add(from);
      if (module.error !== undefined) {
        const reason = module.error.split("\n")[0].replaceAll(pathToFileURL(base).href + "/", "");
        errors.set(from, { kind: "ERROR", files: [from], reason });
      }
      for (const dep of module.dependencies ?? []) {
        for (const [resolved, typeOnly] of [[dep.code, false], [dep.type, true]] as const) {
          if (resolved === undefined) continue;
          if (resolved.error !== undefined) {
            const reason = `cannot resolve ${JSON.stringify(dep.specifier)}: ${resolved.error}`;
            errors.set(`${from}\n${dep.specifier}`, { kind: "ERROR", files: [from], reason });
            continue;
          }
          if (resolved.specifier === undefined) continue;
          const to = ours(resolved.specifier) ??
            (URL_SPECIFIER.test(resolved.specifier) && !resolved.specifier.startsWith("file:")
              ? resolved.specifier
              : null);
          if (to === null) continue;
          const key = `${from}\n${to}`;
          const seen = edges.get(key);
          edges.set(key, {
            from,
            to,
            typeOnly: typeOnly && (seen?.typeOnly ?? true),
            dynamic: (dep.isDynamic ?? false) && (seen?.dynamic ?? true),
          });
        }
      }
    }
  }
  return {
    modules: [...modules].sort(),
    edges: [...edges.values()],
    errors: [...errors.values()],
  };
}

/** Command line: `[--json] [--root DIR]`. */
function parseArgs(args: readonly string[]): { json: boolean; root: string } {
  let json = false;
  let root = fileURLToPath(new URL("..", import.meta.url));
  for (let i = 0; i < args.length; i++) {
    if (args[i] === "--json") json = true;
    else if (args[i] === "--root" && i + 1 < args.length) root = args[++i];
    else throw new Error(`unknown argument ${args[i]}; usage: deps.ts [--json] [--root DIR]`);
  }
  return { json, root };
}

async function main(args: readonly string[]): Promise<number> {
  let options: { json: boolean; root: string };
  let graph: Graph;
  try {
    options = parseArgs(args);
    graph = await loadGraph(options.root);
  } catch (e) {
    console.error(`deps: ${e instanceof Error ? e.message : String(e)}`);
    return 2;
  }
  const violations = [...checkGraph(graph.edges), ...graph.errors].sort(compareViolations);
  const summary = formatSummary(graph, violations);
  if (options.json) {
    const imports = graph.edges.filter((e) => !URL_SPECIFIER.test(e.to)).length;
    console.log(JSON.stringify(
      {
        modules: graph.modules.length,
        imports,
        clean: violations.length === 0,
        violations,
        summary,
      },
      null,
      2,
    ));
  } else {
    for (const violation of violations) console.log(formatViolation(violation));
    console.log(summary);
  }
  return violations.length === 0 ? 0 : 1;
}

if (import.meta.main) Deno.exit(await main(Deno.args));
