/**
 * A side job's failure never kills the Raft node: a standby pier that cannot
 * be written (here: the node runs without the FFI permission liblmdb needs,
 * as `deno task seguro` did before P8) raises an alarm in the log and in
 * `seguro status`, and the node keeps committing.
 */

import assert from "node:assert/strict";
import { join } from "node:path";
import { lmdbMissing } from "../fixtures.ts";
import { clusterTest, NodeProcess, type TestCluster } from "./harness.ts";

function seguro(c: TestCluster, args: string[]): NodeProcess {
  return new NodeProcess([...args, "--cluster", c.anyAddress()], { SEGURO_TOKEN: c.token });
}

async function ok(p: NodeProcess): Promise<string> {
  const status = await p.exited;
  assert.equal(status.code, 0, p.lines.join("\n"));
  return p.lines.join("\n");
}

/** Why these tests cannot run here, if they cannot. */
const LMDB = lmdbMissing();

clusterTest(
  "side jobs: a failing standby pier is an alarm, not a fatal error",
  1,
  async (c) => {
    const n1 = c.members.get(1)!;
    await n1.proc!.kill();
    const standby = join(c.root, "standby");
    const node = c.restart(1, ["--standby-dir", standby], ["--allow-ffi"]);
    await node.waitForEvent("leader");

    await ok(seguro(c, ["ship", "add", "~zod", "--fake"]));
    const alarm = await node.waitForEvent("alarm", { key: "standby ~zod" });
    assert.match(String(alarm.message), /^cannot write its standby pier .*ffi/);
    // Still the leader, still committing: more ships and events go through.
    await ok(seguro(c, ["ship", "add", "~nec", "--fake"]));
    const status = JSON.parse(await ok(seguro(c, ["status", "--json"])));
    assert.equal(status.leaderId, 1);
    assert.deepEqual(status.alarms.map((a: { node: number }) => a.node), [1, 1]);
    assert.match(status.alarms[0].alarm, /^standby ~zod: .*seguro binary/);
    const text = await ok(seguro(c, ["status"]));
    assert.match(text, /node 1 ALARM standby ~zod: cannot write its standby pier/);
    assert.ok(!node.lines.some((l) => /FATAL/.test(l)), node.lines.join("\n"));
    assert.deepEqual(node.events().filter((e) => e.event === "stopped"), [], "still running");

    // With the release permission set the same node writes both piers: no alarm.
    await node.kill("SIGTERM");
    const fixed = c.restart(1, ["--standby-dir", standby]);
    await fixed.waitForEvent("leader");
    await ok(seguro(c, ["ship", "add", "~bus", "--fake"]));
    const after = JSON.parse(await ok(seguro(c, ["status", "--json"])));
    assert.deepEqual(after.alarms, []);
    assert.ok(!fixed.lines.some((l) => /ALARM/.test(l)), fixed.lines.join("\n"));
  },
  { ignore: LMDB },
);

clusterTest(
  "side jobs: a runtime that cannot be started is an alarm; the node keeps leading",
  1,
  async (c) => {
    const n1 = c.members.get(1)!;
    await n1.proc!.kill();
    // `--exec` starts the exec guard as a child: without --allow-run that fails.
    const node = c.restart(1, [
      "--standby-dir",
      join(c.root, "standby"),
      "--exec",
      "true {pier}",
      "--election-timeout-ms",
      "200",
    ], ["--allow-run"]);
    await node.waitForEvent("leader");
    await ok(seguro(c, ["ship", "add", "~zod", "--fake"]));
    await ok(seguro(c, ["ship", "run", "~zod"]));
    const alarm = await node.waitForEvent("runtime_alarm", { ship: "~zod" });
    assert.match(String(alarm.message), /^cannot start the runtime .*run/);
    const list = JSON.parse(await ok(seguro(c, ["ship", "list", "--json"])));
    assert.match(list[0].runtime.alarm, /^cannot start the runtime \(retrying in/);
    await ok(seguro(c, ["ship", "add", "~nec", "--fake"]));
    assert.ok(
      !node.lines.some((l) => /FATAL|supervisor: .*Error/.test(l)),
      node.lines.join("\n"),
    );
  },
  { ignore: LMDB },
);
