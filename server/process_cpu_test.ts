import assert from "node:assert/strict";
import { join } from "node:path";
import { PID_FILE } from "../cluster/store.ts";
import {
  cpuMicrosOfStat,
  cpuMicrosPerEvent,
  nodePidOf,
  PROC_TICKS_PER_SECOND,
  processCpuMicros,
} from "./process_cpu.ts";

Deno.test("utime and stime are fields 14 and 15, after a command name with spaces and parentheses", () => {
  // A real line of a deno process, its name changed to "a) b (c": utime 15, stime 7.
  const stat =
    "4410 (a) b (c) R 4407 4407 3765 0 -1 4194304 4063 0 6 0 15 7 0 0 20 0 6 0 6253037 18603016192 11381";
  assert.equal(PROC_TICKS_PER_SECOND, 100);
  assert.equal(cpuMicrosOfStat(stat), (15 + 7) * 10_000);
  assert.throws(() => cpuMicrosOfStat("4410 (deno) R 1 2"), /Not a \/proc\/PID\/stat line/);
});

Deno.test({
  name: "this process's CPU time grows while it computes; a missing process has none",
  ignore: Deno.build.os !== "linux",
  fn() {
    const before = processCpuMicros(Deno.pid)!;
    let x = 0;
    const t = performance.now();
    while (performance.now() - t < 200) x++;
    const after = processCpuMicros(Deno.pid)!;
    assert.ok(x > 0);
    // 200 ms of wall time busy is about 200 ms of CPU; ticks are 10 ms.
    assert.ok(after - before >= 100_000, `${before} -> ${after}`);
    assert.equal(cpuMicrosPerEvent(before, after, 4), (after - before) / 4);
    assert.equal(cpuMicrosPerEvent(undefined, after, 4), undefined);
    assert.equal(processCpuMicros(2 ** 31), undefined);
  },
});

Deno.test({
  name: "a node's pid is read from seguro.pid only while that process runs",
  ignore: Deno.build.os !== "linux",
  async fn() {
    const dir = await Deno.makeTempDir({ prefix: "seguro-cpu-" });
    try {
      assert.equal(nodePidOf(dir), undefined);
      await Deno.writeTextFile(join(dir, PID_FILE), `${Deno.pid}\n`);
      assert.equal(nodePidOf(dir), Deno.pid);
      await Deno.writeTextFile(join(dir, PID_FILE), `${2 ** 31}\n`);
      assert.equal(nodePidOf(dir), undefined);
      await Deno.writeTextFile(join(dir, PID_FILE), "garbage\n");
      assert.equal(nodePidOf(dir), undefined);
    } finally {
      await Deno.remove(dir, { recursive: true });
    }
  },
});
