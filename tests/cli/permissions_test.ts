/**
 * One permission set, defined once (deno.json `permissions.seguro`), used by
 * every way Seguro runs: the tasks, the install, the compiled binary (checked
 * in dist/build_test.ts), the children Seguro starts itself (the demo's nodes,
 * the exec guard), and every test that runs the CLI.
 */

import assert from "node:assert/strict";
import denoJson from "../../deno.json" with { type: "json" };
import { MAIN_PATH, permissionFlags, selfCommand } from "../../cmd/self_command.ts";

Deno.test("the release permission set grants what a node needs, and nothing is added elsewhere", () => {
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
    if (!/(^| )main\.ts\b/.test(command)) continue;
    assert.match(command, /^deno run -q -P=seguro main\.ts\b/, `task ${name}: ${command}`);
  }
  assert.ok(tasks.seguro && tasks.demo, "the seguro and demo tasks exist");
});

Deno.test("Seguro starts itself (demo nodes, exec guard) with exactly the release set", () => {
  const { cmd, args } = selfCommand(["exec-guard", "--", "urbit"]);
  assert.equal(cmd, Deno.execPath());
  assert.deepEqual(args, [
    "run",
    "-q",
    ...permissionFlags(),
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
