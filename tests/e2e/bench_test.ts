/**
 * `seguro bench` as a user runs it, on a real one-node cluster: by default a
 * scratch ship that is gone afterwards (also after Ctrl-C), a real ship only
 * with --yes, a fake one as asked.
 */

import assert from "node:assert/strict";
import { selfCommand } from "../../server/self_command.ts";
import { clusterTest, NodeProcess, type TestCluster } from "./harness.ts";

interface Run {
  code: number;
  stdout: string;
  stderr: string;
}

/** `ARGS --data-dir <node 1>`: bench needs the node's runtime socket. */
function onNode1(c: TestCluster, args: string[]): string[] {
  return [...args, "--data-dir", c.members.get(1)!.dir];
}

/** Runs `seguro ARGS` on node 1 to the end. */
async function seguro(c: TestCluster, args: string[]): Promise<Run> {
  const self = selfCommand(onNode1(c, args));
  const { code, stdout, stderr } = await new Deno.Command(self.cmd, {
    args: self.args,
    env: { NO_COLOR: "1" },
    stdin: "null",
    stdout: "piped",
    stderr: "piped",
  }).output();
  const text = new TextDecoder();
  return { code, stdout: text.decode(stdout), stderr: text.decode(stderr) };
}

async function shipList(c: TestCluster): Promise<{ name: string; lastEve: number }[]> {
  const run = await seguro(c, ["ship", "list", "--json"]);
  assert.equal(run.code, 0, run.stderr);
  return JSON.parse(run.stdout);
}

clusterTest("bench: a scratch ship by default, a real ship only with --yes", 1, async (c) => {
  // No --ship: a scratch fake ship is benched, then removed with its events.
  const before = await shipList(c);
  const scratch = await seguro(c, ["bench", "--events", "200", "--json"]);
  assert.equal(scratch.code, 0, scratch.stderr);
  const result = JSON.parse(scratch.stdout);
  assert.equal(result.events, 200);
  assert.equal(result.scratch, true);
  // CPU per event: the load's own, and the node's (it runs here: its pid is in the data dir).
  assert.ok(result.loadCpuMicrosPerEvent > 0, scratch.stdout);
  // The node's is in 10 ms steps: 200 events may take less than one.
  if (Deno.build.os === "linux") {
    assert.equal(typeof result.nodeCpuMicrosPerEvent, "number", scratch.stdout);
    assert.ok(result.nodeCpuMicrosPerEvent >= 0, scratch.stdout);
  }
  assert.match(scratch.stderr, new RegExp(`benching the scratch ship ${result.ship} \\(fake\\)`));
  assert.match(
    scratch.stderr,
    new RegExp(`removed the scratch ship ${result.ship} and its events`),
  );
  assert.deepEqual(await shipList(c), before, "no ship is left behind");

  // A real ship without --yes: refused in one line, nothing written.
  const add = await seguro(c, ["ship", "add", "~nec"]);
  assert.equal(add.code, 0, add.stderr);
  const real = await shipList(c);
  const refused = await seguro(c, ["bench", "--ship", "~nec", "--events", "50"]);
  assert.equal(refused.code, 2, refused.stderr);
  assert.equal(refused.stdout, "");
  assert.equal(refused.stderr.trimEnd().split("\n").length, 1, refused.stderr);
  assert.match(
    refused.stderr,
    /^error: ~nec is a real ship and the 50 \/bench events would stay in its log for good; leave out --ship .*, or pass --yes/,
  );
  assert.deepEqual(await shipList(c), real, "the refused bench wrote nothing");

  // With --yes the real ship is benched, and keeps the events.
  const yes = await seguro(c, ["bench", "--ship", "~nec", "--yes", "--events", "30", "--json"]);
  assert.equal(yes.code, 0, yes.stderr);
  assert.equal(JSON.parse(yes.stdout).scratch, false);
  assert.equal((await shipList(c)).find((s) => s.name === "~nec")?.lastEve, 30);

  // A fake ship is benched as asked, and keeps the events.
  assert.equal((await seguro(c, ["ship", "add", "~zod", "--fake"])).code, 0);
  const fake = await seguro(c, ["bench", "--ship", "~zod", "--events", "40"]);
  assert.equal(fake.code, 0, fake.stderr);
  assert.match(fake.stdout, /^~zod: 40 events of ~1024 B, 64 in flight: \d+ released\/s/m);
  assert.match(fake.stdout, /; CPU per event: (node \d+ us, )?this load \d+ us$/m);
  assert.equal((await shipList(c)).find((s) => s.name === "~zod")?.lastEve, 40);

  // Ctrl-C in the middle of the load: the scratch ship is removed all the same.
  const ships = await shipList(c);
  const long = new NodeProcess(onNode1(c, ["bench", "--events", "1000000", "--size", "100"]));
  await long.waitFor(/^released [\d,]+ of 1,000,000/);
  long.child.kill("SIGINT");
  const { code } = await long.exited;
  const log = long.lines.join("\n");
  assert.equal(code, 130, log);
  assert.match(
    log,
    /^error: the bench was interrupted; the scratch ship ~[a-z-]+ and its events were removed$/m,
  );
  assert.deepEqual(await shipList(c), ships, "no ship is left behind after Ctrl-C");
});
