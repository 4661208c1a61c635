/**
 * The CLI as a user runs it: a child process per command, real files.
 */

import assert from "node:assert/strict";
import { cell, cord, jam, tuple } from "../../vere/noun.ts";
import { BRASS_PILL_PATH, havePill } from "../fixtures.ts";
import denoJson from "../../deno.json" with { type: "json" };
import { selfCommand } from "../../cmd/self_command.ts";

interface Run {
  code: number;
  stdout: string;
  stderr: string;
}

async function seguro(args: string[], env: Record<string, string> = {}): Promise<Run> {
  const self = selfCommand(args);
  const { code, stdout, stderr } = await new Deno.Command(self.cmd, {
    args: self.args,
    env: { NO_COLOR: "", FORCE_COLOR: "", ...env },
    stdout: "piped",
    stderr: "piped",
  }).output();
  const text = new TextDecoder();
  return { code, stdout: text.decode(stdout), stderr: text.decode(stderr) };
}

/** A usage or failure error is exactly one line on stderr, starting `error:`. */
function assertOneLineError(run: Run, code: number, pattern: RegExp): void {
  assert.equal(run.code, code, `exit code; stderr: ${run.stderr}`);
  const lines = run.stderr.trimEnd().split("\n");
  assert.equal(lines.length, 1, `one line, got: ${run.stderr}`);
  assert.match(lines[0], /^error: /);
  assert.match(lines[0], pattern);
}

async function tempFile(bytes: Uint8Array): Promise<string> {
  const path = await Deno.makeTempFile({ prefix: "seguro-cli-" });
  await Deno.writeFile(path, bytes);
  return path;
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
  const corrupt = await tempFile(jam(tuple(1n, 2n, 3n)).slice(0, 2));
  assertOneLineError(
    await seguro(["noun", "mug", corrupt]),
    1,
    /is not a jammed noun: .*truncated/,
  );
  const notPill = await tempFile(jam(cell(cord("hello"), 0n)));
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
  await Deno.remove(corrupt);
  await Deno.remove(notPill);
});

Deno.test("noun cue summarizes and --path prints a sub-noun, on a noun the test builds", async () => {
  const path = await tempFile(jam(tuple(cord("pill"), cord("test"), cell(1n, 2n), 0n)));
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
  await Deno.remove(path);
});

Deno.test("colour only when asked: NO_COLOR wins over FORCE_COLOR, piped output is plain", async () => {
  const path = await tempFile(jam(1n));
  assert.ok(!(await seguro(["noun", "cue", path])).stdout.includes("\x1b["));
  assert.ok((await seguro(["noun", "cue", path], { FORCE_COLOR: "1" })).stdout.includes("\x1b["));
  const both = await seguro(["noun", "cue", path], { FORCE_COLOR: "1", NO_COLOR: "1" });
  assert.ok(!both.stdout.includes("\x1b["));
  await Deno.remove(path);
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
