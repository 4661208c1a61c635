import assert from "node:assert/strict";
import { type DemoReporter, runDemo } from "./demo.ts";
import { NodeError } from "./errors.ts";

Deno.test({
  name: "runDemo: a named pill that is not there is a NodeError, after the cluster is up and gone",
  sanitizeResources: false,
  sanitizeOps: false,
  async fn() {
    const seen: string[] = [];
    let root = "";
    const reporter = new Proxy({} as DemoReporter, {
      get: (_, name: string) => (arg: unknown) => {
        seen.push(name);
        if (name === "starting") root = arg as string;
      },
    });
    await assert.rejects(
      runDemo({ pill: "/nonexistent/demo.pill", seconds: 0, rate: 1 }, reporter),
      (e) =>
        e instanceof NodeError && /cannot read the pill \/nonexistent\/demo\.pill/.test(e.message),
    );
    assert.deepEqual(seen, ["starting", "nodeStarted", "nodeStarted", "nodeStarted", "booting"]);
    await assert.rejects(Deno.stat(root), Deno.errors.NotFound);
  },
});
