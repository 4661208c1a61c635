/**
 * The CLI as a user runs it: a child process per command, real files.
 */

import assert from "node:assert/strict";
import { cell, cord, jam, tuple } from "../../vere/noun.ts";
import { BRASS_PILL_PATH, havePill } from "../fixtures.ts";
import denoJson from "../../deno.json" with { type: "json" };
import { MAIN_PATH } from "../../server/self_command.ts";
import { assertOneLineError, type Run, seguro } from "./run_cli.ts";

/** Runs `fn` on a temp file holding `bytes`; the file is removed even when `fn` fails. */
async function withTempFile(bytes: Uint8Array, fn: (path: string) => Promise<void>): Promise<void> {
  const path = await Deno.makeTempFile({ prefix: "seguro-cli-" });
  try {
    await Deno.writeFile(path, bytes);
    await fn(path);
  } finally {
    await Deno.remove(path).catch(() => {});
  }
}

Deno.test("seguro --help lists the commands; --version prints deno.json's version", async () => {
  const help = await seguro(["--help"]);
  assert.equal(help.code, 0);
  assert.match(help.stdout, /noun\s+look inside jammed nouns/);
  assert.match(help.stdout, /pill\s+read Urbit boot pills/);
  const version = await seguro(["--version"]);
  assert.equal(version.stdout.trim(), denoJson.version);
});

Deno.test("usage errors: one line naming the problem and the help to read, exit 2", async () => {
  assertOneLineError(await seguro(["nope"]), 2, /unknown command 'nope'.*seguro --help/);
  assertOneLineError(
    await seguro(["noun", "cue"]),
    2,
    /missing required argument 'file'.*'seguro noun cue --help'/,
  );
  assertOneLineError(await seguro(["noun", "mug", "a", "b"]), 2, /too many arguments/);
  assertOneLineError(
    await seguro(["pill", "events", "x", "--ship", "~zzz"]),
    2,
    /'~zzz' is not a ship name/,
  );
  assertOneLineError(
    await seguro(["pill", "events", "x", "--time", "soon"]),
    2,
    /'soon' is not a time/,
  );
});

Deno.test("failures: a missing file, a corrupt file, a noun that is not a pill, exit 1", async () => {
  assertOneLineError(
    await seguro(["noun", "cue", "/no/such.pill"]),
    1,
    /no such file; check the path/,
  );
  await withTempFile(jam(tuple(1n, 2n, 3n)).slice(0, 2), async (corrupt) => {
    assertOneLineError(
      await seguro(["noun", "mug", corrupt]),
      1,
      /is not a jammed noun: .*truncated/,
    );
  });
  await withTempFile(jam(cell(cord("hello"), 0n)), async (notPill) => {
    assertOneLineError(await seguro(["pill", "events", notPill]), 1, /not a usable pill: .*%hello/);
    assertOneLineError(
      await seguro(["noun", "cue", notPill, "--path", "/3/2"]),
      1,
      /no axis 2 under \/3/,
    );
    assertOneLineError(
      await seguro(["noun", "cue", notPill, "--path", "2"]),
      2,
      /not a list of axes/,
    );
  });
});

Deno.test("noun cue summarizes and --path prints a sub-noun, on a noun the test builds", async () => {
  await withTempFile(jam(tuple(cord("pill"), cord("test"), cell(1n, 2n), 0n)), async (path) => {
    const summary = await seguro(["noun", "cue", path, "--json"]);
    assert.equal(summary.code, 0, summary.stderr);
    const json = JSON.parse(summary.stdout);
    assert.equal(json.cells, 4);
    assert.equal(json.depth, 4);
    assert.match(json.mug, /^0x[0-9a-f]{8}$/);
    const sub = await seguro(["noun", "cue", path, "--path", "/7"]);
    assert.equal(sub.stdout.trim(), "[[1 2] ~]");
    const whole = await seguro(["noun", "cue", path, "--path", "/1"]);
    assert.equal(whole.stdout.trim(), "[%pill %test [1 2] ~]");
  });
});

Deno.test("colour only when asked: NO_COLOR wins over FORCE_COLOR, piped output is plain", async () => {
  await withTempFile(jam(1n), async (path) => {
    assert.ok(!(await seguro(["noun", "cue", path])).stdout.includes("\x1b["));
    assert.ok(
      (await seguro(["noun", "cue", path], { FORCE_COLOR: "1" })).stdout.includes("\x1b["),
    );
    const both = await seguro(["noun", "cue", path], { FORCE_COLOR: "1", NO_COLOR: "1" });
    assert.ok(!both.stdout.includes("\x1b["));
  });
});

Deno.test({
  name: "on brass.pill: noun cue, noun mug and pill events",
  ignore: !havePill(),
  async fn() {
    const mug = await seguro(["noun", "mug", BRASS_PILL_PATH]);
    assert.equal(mug.stdout, "0x31f52f8a\n");
    const cue = JSON.parse((await seguro(["noun", "cue", BRASS_PILL_PATH, "--json"])).stdout);
    assert.equal(cue.bytes, 3_889_185);
    assert.equal(cue.mug, "0x31f52f8a");
    const run = await seguro(["pill", "events", BRASS_PILL_PATH, "--ship", "~zod", "--json"]);
    assert.equal(run.code, 0, run.stderr);
    const events = JSON.parse(run.stdout);
    assert.equal(events.ship, "~zod");
    assert.equal(events.life, 5);
    assert.deepEqual(
      events.events.map((e: { card: string | null }) => e.card),
      [
        null,
        null,
        null,
        null,
        null,
        "wyrd",
        "verb",
        "whom",
        "wack",
        "what",
        "what",
        "boot",
        "park",
      ],
    );
    const table = await seguro(["pill", "events", BRASS_PILL_PATH, "--time", "~2026.11.26"]);
    const lines = table.stdout.trimEnd().split("\n");
    assert.match(lines[0], /^EVE\s+TIME\s+WIRE\s+CARD\s+SIZE$/);
    assert.equal(lines.length, 1 + 13);
    assert.match(
      lines[12],
      /^\s*12\s+~2026\.11\.26\.\.00\.00\.00\.\.0007\s+\/d\/term\/1\s+%boot\s+41$/,
    );
    assert.match(table.stderr, /~zod: 13 boot events \(life 5\)/);
  },
});

/** An address on loopback that nothing listens on right now. */
function freeAddress(): string {
  const l = Deno.listen({ hostname: "127.0.0.1", port: 0 });
  l.close();
  return `127.0.0.1:${l.addr.port}`;
}

/** `seguro(args)` that is killed after `ms` (a command that should fail at once but might run). */
function seguroWithin(ms: number, args: string[]): Promise<Run> {
  return seguro(args, {}, ms);
}

Deno.test("init on a busy port creates nothing and prints no token; init then works there", async () => {
  const root = await Deno.makeTempDir({ prefix: "seguro-cli-init-" });
  const busy = Deno.listen({ hostname: "127.0.0.1", port: 0 });
  const address = `127.0.0.1:${busy.addr.port}`;
  const dir = `${root}/n1`;
  try {
    const failed = await seguroWithin(30_000, ["init", "--data-dir", dir, "--listen", address]);
    assertOneLineError(failed, 1, new RegExp(`${address} is already in use; .*--listen`));
    assert.equal(failed.stdout, "", "no token, no join command");
    assert.equal(await Deno.stat(dir).then(() => true, () => false), false, "no data dir");
    // An empty data dir made beforehand is left as it was.
    await Deno.mkdir(dir);
    assertOneLineError(
      await seguroWithin(30_000, ["init", "--data-dir", dir, "--listen", address]),
      1,
      /already in use/,
    );
    assert.deepEqual([...Deno.readDirSync(dir)], []);
    busy.close();
    const ok = await seguro(["init", "--data-dir", dir, "--listen", address, "--no-start"]);
    assert.equal(ok.code, 0, ok.stderr);
    assert.match(ok.stdout, /SEGURO_TOKEN=sgt2\./);
  } finally {
    try {
      busy.close();
    } catch {
      // closed above
    }
    await Deno.remove(root, { recursive: true });
  }
});

Deno.test("run refuses a --listen or --advertise other than the node's recorded address", async () => {
  const root = await Deno.makeTempDir({ prefix: "seguro-cli-run-" });
  try {
    const dir = `${root}/n1`;
    const recorded = freeAddress();
    const init = await seguro(["init", "--data-dir", dir, "--listen", recorded, "--no-start"]);
    assert.equal(init.code, 0, init.stderr);
    for (const flag of ["--listen", "--advertise"]) {
      assertOneLineError(
        await seguroWithin(30_000, ["run", "--data-dir", dir, flag, "127.0.0.1:17731"]),
        1,
        new RegExp(
          `^error: ${flag} 127\\.0\\.0\\.1:17731 differs from ${recorded}, node 1's recorded .*cannot change in place; run without ${flag}, or move the node: 'seguro member remove 1', then 'seguro join' from an empty data dir`,
        ),
      );
    }
  } finally {
    await Deno.remove(root, { recursive: true });
  }
});

Deno.test("init makes an existing 0755 data dir private; run refuses one others can read, in one line with the fix", async () => {
  const root = await Deno.makeTempDir({ prefix: "seguro-cli-private-" });
  try {
    const dir = `${root}/n1`;
    Deno.mkdirSync(dir, { mode: 0o755 });
    Deno.chmodSync(dir, 0o755);
    const init = await seguro(["init", "--data-dir", dir, "--listen", freeAddress(), "--no-start"]);
    assert.equal(init.code, 0, init.stderr);
    const mode = (path: string) => (Deno.statSync(path).mode! & 0o777).toString(8);
    assert.equal(mode(dir), "700");
    const names = [...Deno.readDirSync(dir)].map((e) => e.name).sort();
    for (const name of ["node.json", "seguro.db", "token"]) {
      assert.ok(names.includes(name), `${names}`);
    }
    for (const name of names) assert.equal(mode(`${dir}/${name}`), "600", name);
    Deno.chmodSync(dir, 0o755);
    assertOneLineError(
      await seguroWithin(30_000, ["run", "--data-dir", dir]),
      1,
      new RegExp(
        `^error: The data dir ${dir} is open to other users \\(mode 755\\) and holds the cluster secret; run 'chmod -R go-rwx ${dir}' and start again`,
      ),
    );
  } finally {
    await Deno.remove(root, { recursive: true });
  }
});

Deno.test("user mistakes are one-line errors, not internal ones: a file as data dir, a file as pier, a missing permission", async () => {
  const root = await Deno.makeTempDir({ prefix: "seguro-cli-mistakes-" });
  try {
    const file = `${root}/regular`;
    await Deno.writeTextFile(file, "not a data dir\n");
    assertOneLineError(
      await seguro(["status", "--data-dir", file]),
      1,
      /^error: the data dir .*regular is not a directory; pass --data-dir with the directory 'seguro init' or 'seguro join' made$/,
    );
    const dir = `${root}/n1`;
    const init = await seguro(["init", "--data-dir", dir, "--listen", freeAddress(), "--no-start"]);
    assert.equal(init.code, 0, init.stderr);
    const garbage = `${root}/garbage.bin`;
    await Deno.writeFile(garbage, crypto.getRandomValues(new Uint8Array(1000)));
    assertOneLineError(
      await seguro(["ship", "import", "~nec", garbage, "--data-dir", dir]),
      1,
      /^error: .*garbage\.bin: not a directory; a pier is the directory that holds \.urb\/log/,
    );
    assertOneLineError(
      await seguro(["ship", "import", "~nec", root, "--data-dir", dir]),
      1,
      /no \.urb\/log here, so not a vere pier/,
    );
    // Without --allow-net (as from a hand-written 'deno run'): name it and the fix.
    const { code, stdout, stderr } = await new Deno.Command(Deno.execPath(), {
      args: [
        "run",
        "-q",
        "--no-prompt",
        "--allow-read",
        "--allow-write",
        "--allow-env",
        MAIN_PATH,
        "init",
        "--data-dir",
        `${root}/n2`,
        "--no-start",
      ],
      env: { NO_COLOR: "1" },
      stdout: "piped",
      stderr: "piped",
    }).output();
    const text = new TextDecoder();
    assertOneLineError(
      { code, stdout: text.decode(stdout), stderr: text.decode(stderr) },
      1,
      /^error: Seguro lacks a permission \(Requires net access .*--allow-net flag\); the seguro binary and 'deno task seguro' grant every permission it needs/,
    );
  } finally {
    await Deno.remove(root, { recursive: true });
  }
});
