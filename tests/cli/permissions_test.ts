/**
 * One permission set, defined once (deno.json `permissions.seguro`), used by
 * every way Seguro runs: the tasks, the install, the compiled binary (checked
 * in dist/build_test.ts), the children Seguro starts itself (the demo's nodes,
 * the exec guard), and every test that runs the CLI.
 */

import assert from "node:assert/strict";
import denoJson from "../../deno.json" with { type: "json" };
import { MAIN_PATH, permissionFlags, selfCommand, V8_FLAGS } from "../../server/self_command.ts";
import { join } from "node:path";
import { jam, tuple } from "../../vere/noun.ts";
import { fileURLToPath } from "node:url";

const CONFIG = fileURLToPath(new URL("../../deno.json", import.meta.url));

Deno.test("the release permission set and V8 flags are what a node needs, and the tasks use exactly them", () => {
  assert.deepEqual(permissionFlags().sort(), [
    "--allow-env",
    "--allow-ffi",
    "--allow-net",
    "--allow-read",
    "--allow-run",
    "--allow-write",
  ]);
  const tasks: Record<string, string> = denoJson.tasks;
  for (const [name, command] of Object.entries(tasks)) {
    if (!/main\.ts\b/.test(command) || /tests\/|bench\//.test(command)) continue;
    const v8 = `--v8-flags=${V8_FLAGS.join(",")}`;
    assert.ok(
      command.includes(`deno run -q -P=seguro ${v8} `),
      `task ${name} runs with the permission set and ${v8}: ${command}`,
    );
    assert.match(
      command,
      /deno run -q -P=seguro \S+ (--config \S+ )?\S*main\.ts\b/,
      `task ${name}`,
    );
  }
  assert.ok(tasks.seguro && tasks.demo, "the seguro and demo tasks exist");
});

Deno.test("Seguro starts itself (demo nodes, exec guard) with exactly the release set and V8 flags", () => {
  const { cmd, args } = selfCommand(["exec-guard", "--", "urbit"]);
  assert.equal(cmd, Deno.execPath());
  assert.deepEqual(args, [
    "run",
    "-q",
    ...permissionFlags(),
    "--v8-flags=--initial-old-space-size=64",
    MAIN_PATH,
    "exec-guard",
    "--",
    "urbit",
  ]);
});

Deno.test("a CLI child without a permission of the set fails with a one-line error naming it", async () => {
  const { args } = selfCommand(["status", "--data-dir", "/nonexistent-seguro-dir"]);
  const out = await new Deno.Command(Deno.execPath(), {
    args: args.filter((a) => a !== "--allow-read"),
    env: { NO_COLOR: "1" },
    stdout: "piped",
    stderr: "piped",
  }).output();
  const stderr = new TextDecoder().decode(out.stderr).trim();
  assert.notEqual(out.code, 0);
  assert.equal(stderr.split("\n").length, 1, stderr);
  assert.match(stderr, /read/);
  assert.doesNotMatch(stderr, /please report/);
});

Deno.test("deno task seguro takes relative paths from where it is run, not the repository", async () => {
  const dir = await Deno.makeTempDir({ prefix: "seguro-task-" });
  try {
    await Deno.writeFile(join(dir, "one.noun"), jam(tuple(1n, 2n)));
    const out = await new Deno.Command(Deno.execPath(), {
      args: ["task", "-q", "--config", CONFIG, "seguro", "noun", "mug", "one.noun"],
      cwd: dir,
      // As from a shell: no INIT_CWD inherited from an outer `deno task` (deno task keeps one).
      clearEnv: true,
      env: {
        NO_COLOR: "1",
        PATH: Deno.env.get("PATH") ?? "",
        HOME: Deno.env.get("HOME") ?? dir,
        ...(Deno.env.get("DENO_DIR") === undefined ? {} : { DENO_DIR: Deno.env.get("DENO_DIR")! }),
      },
      stdout: "piped",
      stderr: "piped",
    }).output();
    const text = new TextDecoder();
    assert.equal(out.code, 0, text.decode(out.stderr));
    assert.match(text.decode(out.stdout), /^0x[0-9a-f]{8}\n$/);
  } finally {
    await Deno.remove(dir, { recursive: true });
  }
});
