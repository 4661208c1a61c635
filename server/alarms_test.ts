import assert from "node:assert/strict";
import { Alarms } from "./alarms.ts";

Deno.test("Alarms: logs once per raise or change and once per clear; lists the active ones", () => {
  const lines: string[] = [];
  const alarms = new Alarms((l) => lines.push(l));
  alarms.raise("standby ~zod", "disk full");
  alarms.raise("standby ~zod", "disk full");
  alarms.raise("standby ~nec", "no such dir");
  assert.deepEqual(alarms.list(), ["standby ~zod: disk full", "standby ~nec: no such dir"]);
  alarms.raise("standby ~zod", "permission denied");
  alarms.clear("standby ~zod");
  alarms.clear("standby ~zod");
  assert.deepEqual(alarms.list(), ["standby ~nec: no such dir"]);
  assert.deepEqual(lines, [
    "ALARM standby ~zod: disk full",
    "ALARM standby ~nec: no such dir",
    "ALARM standby ~zod: permission denied",
    "alarm cleared: standby ~zod",
  ]);
});
