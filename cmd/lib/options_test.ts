import assert from "node:assert/strict";
import { UsageError } from "./errors.ts";
import { metricsOption } from "./options.ts";

Deno.test("--metrics takes HOST:PORT with a port from 1 to 65535", () => {
  assert.equal(metricsOption("127.0.0.1:9770"), "127.0.0.1:9770");
  assert.equal(metricsOption("[::1]:9770"), "[::1]:9770");
  for (const bad of ["9770", "127.0.0.1", "127.0.0.1:0", "127.0.0.1:70000", "a b:1", ""]) {
    assert.throws(() => metricsOption(bad), UsageError, bad);
  }
});
