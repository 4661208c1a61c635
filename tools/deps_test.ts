/**
 * The dependency checker: each layering rule on small synthetic graphs (what
 * it must catch and what it must let through), cycles, and two runs of the
 * real tool, on a made-up checkout and on this repository.
 */

import assert from "node:assert/strict";
import { join } from "node:path";
import { fileURLToPath } from "node:url";
import { checkGraph, type Edge, formatViolation } from "./deps.ts";

const DEPS = fileURLToPath(new URL("./deps.ts", import.meta.url));
const REPO = fileURLToPath(new URL("..", import.meta.url));

/** The printed lines for a graph given as `from -> to` pairs. */
function lines(...pairs: [string, string][]): string[] {
  return checkGraph(pairs.map(([from, to]) => ({ from, to }))).map(formatViolation);
}

/** Asserts none of the imports is reported. */
function allowed(...pairs: [string, string][]): void {
  assert.deepEqual(lines(...pairs), []);
}

/** Asserts each import alone is reported as LAYER. */
function refused(...pairs: [string, string][]): void {
  for (const pair of pairs) {
    const found = lines(pair);
    assert.equal(found.length, 1, `${pair.join(" -> ")} should be one violation`);
    assert.match(found[0], new RegExp(`^LAYER ${pair[0]} imports ${pair[1]} \\(`));
  }
}

Deno.test("deps: core/ imports only core/", () => {
  allowed(["core/raft.ts", "core/log.ts"], ["core/raft.ts", "deno.json"]);
  refused(
    ["core/raft.ts", "cluster/node.ts"],
    ["core/raft.ts", "vere/noun.ts"],
    ["core/raft.ts", "server/node.ts"],
    ["core/raft.ts", "cmd/run.ts"],
    ["core/raft.ts", "main.ts"],
    ["core/raft.ts", "tools/deps.ts"],
  );
  assert.deepEqual(lines(["core/raft.ts", "cluster/node.ts"]), [
    "LAYER core/raft.ts imports cluster/node.ts (core/ imports nothing of ours outside core/)",
  ]);
});

Deno.test("deps: cluster/ imports core/ and vere/noun.ts only", () => {
  allowed(
    ["cluster/node.ts", "core/mod.ts"],
    ["cluster/node.ts", "cluster/store.ts"],
    ["cluster/node.ts", "vere/noun.ts"],
  );
  refused(
    ["cluster/node.ts", "vere/event.ts"],
    ["cluster/node.ts", "server/run.ts"],
    ["cluster/node.ts", "cmd/lib/errors.ts"],
  );
  assert.deepEqual(lines(["cluster/node.ts", "vere/event.ts"]), [
    "LAYER cluster/node.ts imports vere/event.ts (cluster/ may import only core/ and vere/noun.ts)",
  ]);
});

Deno.test("deps: vere/ imports only vere/", () => {
  allowed(["vere/pier.ts", "vere/noun.ts"], ["vere/pier.ts", "deno.json"]);
  refused(
    ["vere/pier.ts", "core/log.ts"],
    ["vere/pier.ts", "cluster/store.ts"],
    ["vere/pier.ts", "server/run.ts"],
    ["vere/pier.ts", "cmd/ship.ts"],
  );
});

Deno.test("deps: server/ imports cluster/, vere/ and core/, never cmd/", () => {
  allowed(
    ["server/run.ts", "server/metrics.ts"],
    ["server/run.ts", "cluster/node.ts"],
    ["server/run.ts", "vere/runtime_server.ts"],
    ["server/run.ts", "core/mod.ts"],
  );
  refused(["server/run.ts", "cmd/lib/errors.ts"], ["server/run.ts", "main.ts"]);
});

Deno.test("deps: a command imports the layers below and the shared helpers, never a command", () => {
  allowed(
    ["cmd/run.ts", "server/run.ts"],
    ["cmd/run.ts", "cluster/api.ts"],
    ["cmd/run.ts", "vere/noun.ts"],
    ["cmd/run.ts", "core/mod.ts"],
    ["cmd/run.ts", "cmd/lib/errors.ts"],
    ["cmd/run.ts", "cmd/lib/output.ts"],
    ["cmd/run.ts", "cmd/lib/options.ts"],
    ["cmd/lib/output.ts", "cmd/lib/errors.ts"],
    ["cmd/mod.ts", "cmd/run.ts"],
    ["cmd/mod.ts", "cmd/ship.ts"],
    ["main.ts", "cmd/mod.ts"],
  );
  refused(
    ["cmd/ship.ts", "cmd/status.ts"],
    ["cmd/lib/errors.ts", "cmd/run.ts"],
    ["cmd/run.ts", "cmd/mod.ts"],
    ["main.ts", "cmd/run.ts"],
    ["main.ts", "server/run.ts"],
    ["main.ts", "core/mod.ts"],
  );
  assert.match(lines(["cmd/ship.ts", "cmd/status.ts"])[0], /a command never imports a command/);
});

Deno.test("deps: product code never imports tests/, bench/, dist/ or a test file", () => {
  refused(
    ["core/raft.ts", "tests/sim/cluster.ts"],
    ["cluster/node.ts", "bench/anchors.ts"],
    ["cmd/run.ts", "dist/build.ts"],
    ["server/run.ts", "tests/fixtures.ts"],
    ["main.ts", "tests/fixtures.ts"],
    ["core/raft.ts", "core/log_test.ts"],
  );
  assert.deepEqual(lines(["cluster/node.ts", "tests/fixtures.ts"]), [
    "LAYER cluster/node.ts imports tests/fixtures.ts " +
    "(product code never imports tests/, bench/ or dist/)",
  ]);
});

Deno.test("deps: a test file follows its folder's rule, plus tests/ helpers", () => {
  allowed(
    ["core/raft_test.ts", "core/raft.ts"],
    ["core/raft_test.ts", "tests/fixtures.ts"],
    ["cluster/store_test.ts", "vere/noun.ts"],
    ["cmd/health_test.ts", "cmd/health.ts"],
    ["cmd/metrics_test.ts", "cmd/lib/errors.ts"],
    ["cmd/metrics_test.ts", "cluster/node.ts"],
  );
  refused(
    ["core/raft_test.ts", "cluster/node.ts"],
    ["cluster/store_test.ts", "vere/lmdb.ts"],
    ["vere/pier_test.ts", "cluster/store.ts"],
    ["core/raft_test.ts", "bench/raft_bench.ts"],
    ["cmd/standby_test.ts", "cmd/alarms.ts"],
  );
});

Deno.test("deps: tests/, bench/, dist/ and other folders may import anything of ours", () => {
  allowed(
    ["tests/sim/node.ts", "cmd/run.ts"],
    ["tests/sim/node.ts", "cluster/node.ts"],
    ["tests/sim/node.ts", "bench/anchors.ts"],
    ["bench/raft_bench.ts", "core/mod.ts"],
    ["bench/cluster_bench.ts", "tests/fixtures.ts"],
    ["dist/build.ts", "cmd/self_command.ts"],
    ["dist/build.ts", "deno.json"],
    ["tools/deps_test.ts", "tools/deps.ts"],
  );
});

Deno.test("deps: type-only imports are layering too; npm: and node: are skipped", () => {
  const edges: Edge[] = [
    { from: "core/raft.ts", to: "cluster/wire.ts", typeOnly: true },
    { from: "core/raft.ts", to: "npm:/picocolors@1.1.1" },
    { from: "core/raft.ts", to: "node:crypto" },
  ];
  assert.deepEqual(checkGraph(edges), [{
    kind: "LAYER",
    files: ["core/raft.ts", "cluster/wire.ts"],
    reason: "core/ imports nothing of ours outside core/",
    typeOnly: true,
  }]);
  // A pair imported both ways is a run-time import.
  const both = checkGraph([...edges, { from: "core/raft.ts", to: "cluster/wire.ts" }]);
  assert.equal(both.length, 1);
  assert.equal(both[0].typeOnly, false);
});

Deno.test("deps: jsr:, https: and http: imports are reported from any file", () => {
  assert.deepEqual(
    lines(
      ["tests/sim/node.ts", "jsr:@std/assert@1"],
      ["core/log.ts", "https://deno.land/std@0.224.0/path/mod.ts"],
      ["bench/anchors.ts", "http://example.com/x.ts"],
    ).map((line) => line.replace(/ \(.*\)$/, "")),
    [
      "REMOTE bench/anchors.ts imports http://example.com/x.ts",
      "REMOTE core/log.ts imports https://deno.land/std@0.224.0/path/mod.ts",
      "REMOTE tests/sim/node.ts imports jsr:@std/assert@1",
    ],
  );
});

Deno.test("deps: a 3-file cycle is one line, in import order, from its first file", () => {
  assert.deepEqual(
    lines(
      ["vere/pier.ts", "vere/event.ts"],
      ["vere/lmdb.ts", "vere/pier.ts"],
      ["vere/event.ts", "vere/lmdb.ts"],
      ["vere/event.ts", "vere/noun.ts"],
    ),
    ["CYCLE vere/event.ts -> vere/lmdb.ts -> vere/pier.ts -> vere/event.ts"],
  );
  assert.deepEqual(
    lines(["cmd/ship.ts", "cmd/ship_pier.ts"], ["cmd/ship_pier.ts", "cmd/ship.ts"]),
    [
      "LAYER cmd/ship.ts imports cmd/ship_pier.ts " +
      "(a command never imports a command; shared helpers live in cmd/lib/)",
      "LAYER cmd/ship_pier.ts imports cmd/ship.ts " +
      "(a command never imports a command; shared helpers live in cmd/lib/)",
      "CYCLE cmd/ship.ts -> cmd/ship_pier.ts -> cmd/ship.ts",
    ],
  );
});

Deno.test("deps: cycles anywhere, a self-import, two cycles through one file; no false ones", () => {
  assert.deepEqual(lines(["tests/a.ts", "tests/a.ts"]), ["CYCLE tests/a.ts -> tests/a.ts"]);
  assert.deepEqual(
    lines(
      ["tests/a.ts", "tests/b.ts"],
      ["tests/b.ts", "tests/a.ts"],
      ["tests/b.ts", "tests/c.ts"],
      ["tests/c.ts", "tests/b.ts"],
    ),
    [
      "CYCLE tests/a.ts -> tests/b.ts -> tests/a.ts",
      "CYCLE tests/b.ts -> tests/c.ts -> tests/b.ts",
    ],
  );
  // A diamond, and a longer path back around a shortcut: only the real cycle.
  allowed(
    ["core/a.ts", "core/b.ts"],
    ["core/a.ts", "core/c.ts"],
    ["core/b.ts", "core/d.ts"],
    ["core/c.ts", "core/d.ts"],
  );
  assert.deepEqual(
    lines(["core/a.ts", "core/b.ts"], ["core/b.ts", "core/c.ts"], ["core/c.ts", "core/a.ts"], [
      "core/a.ts",
      "core/c.ts",
    ]),
    ["CYCLE core/a.ts -> core/c.ts -> core/a.ts"],
  );
});

async function runDeps(args: string[]): Promise<{ code: number; out: string; err: string }> {
  const r = await new Deno.Command(Deno.execPath(), {
    args: ["run", "-q", "--allow-read", "--allow-run", "--allow-env", DEPS, ...args],
    stdout: "piped",
    stderr: "piped",
  }).output();
  const text = new TextDecoder();
  return { code: r.code, out: text.decode(r.stdout), err: text.decode(r.stderr) };
}

Deno.test("deps: the tool on a made-up checkout reads Deno's graph (type-only, jsr:, broken files)", async () => {
  const root = await Deno.makeTempDir({ prefix: "seguro-deps-" });
  try {
    const files: Record<string, string> = {
      "deno.json": JSON.stringify({ imports: { "@std/assert": "jsr:@std/assert@1" } }),
      "core/a.ts": 'import type { B } from "../cluster/b.ts";\nexport type A = B;\n',
      "cluster/b.ts": 'import { c } from "./c.ts";\nexport type B = number;\nexport const b = c;\n',
      "cluster/c.ts":
        'import { b } from "./b.ts";\nexport const c = 1;\nexport const d = () => b;\n',
      "tests/t.ts": 'import "@std/assert";\nimport "npm:picocolors@1.1.1";\n',
      "vere/bad.ts": "export const = ;\n",
    };
    for (const [path, text] of Object.entries(files)) {
      await Deno.mkdir(join(root, path, ".."), { recursive: true });
      await Deno.writeTextFile(join(root, path), text);
    }
    const r = await runDeps(["--root", root]);
    assert.equal(r.code, 1, r.err);
    const out = r.out.trimEnd().split("\n");
    assert.deepEqual(out.slice(0, 3), [
      "LAYER core/a.ts imports cluster/b.ts (core/ imports nothing of ours outside core/)",
      "REMOTE tests/t.ts imports jsr:@std/assert@1 " +
      "(JSR and remote URLs are unreachable here; use an npm: or node: import)",
      "CYCLE cluster/b.ts -> cluster/c.ts -> cluster/b.ts",
    ]);
    assert.match(out[3], /^ERROR vere\/bad\.ts: SyntaxError/);
    assert.equal(
      out[4],
      "deps: 5 modules, 3 imports, 4 violations (1 layering, 1 remote import, 1 cycle, 1 unreadable)",
    );
    assert.equal(out.length, 5);

    const json = JSON.parse((await runDeps(["--json", "--root", root])).out);
    assert.equal(json.clean, false);
    assert.equal(json.violations[0].typeOnly, true);
  } finally {
    await Deno.remove(root, { recursive: true });
  }
});

Deno.test("deps: the tool runs on this repository and prints a summary", async () => {
  const r = await runDeps([]);
  assert.ok(r.code === 0 || r.code === 1, `exit ${r.code}: ${r.err}`);
  const out = r.out.trimEnd().split("\n");
  assert.match(out[out.length - 1], /^deps: \d+ modules, \d+ imports, /);
  for (const line of out.slice(0, -1)) assert.match(line, /^(LAYER|REMOTE|CYCLE|ERROR) /);
  assert.equal(r.code === 0, out.length === 1);

  const json = JSON.parse((await runDeps(["--json", "--root", REPO])).out);
  assert.ok(json.modules > 0);
  assert.equal(json.violations.length, out.length - 1);
});
