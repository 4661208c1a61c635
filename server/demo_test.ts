import assert from "node:assert/strict";
import { type DemoReporter, EventLog, runDemo } from "./demo.ts";
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

Deno.test({
  name: "runDemo: a failed 'ship add' is a NodeError that says why, in the add's own words",
  sanitizeResources: false,
  sanitizeOps: false,
  async fn() {
    const notAPill = await Deno.makeTempFile({ suffix: ".pill" });
    try {
      await Deno.writeTextFile(notAPill, "not a jammed noun at all");
      const reporter = new Proxy({} as DemoReporter, { get: () => () => {} });
      await assert.rejects(
        runDemo({ pill: notAPill, seconds: 0, rate: 1 }, reporter),
        (e) =>
          e instanceof NodeError &&
          /^seguro ship add failed in the demo: .*is not a jammed noun/.test(e.message),
      );
    } finally {
      await Deno.remove(notAPill);
    }
  },
});

Deno.test("EventLog: a wait after a mark skips the events seen before it", async () => {
  const log = new EventLog();
  const line = (event: string, ship: string) => JSON.stringify({ event, ship, msg: event });
  log.push(line("runtime_started", "~zod"), "not json", line("runtime_stopped", "~zod"));
  const old = await log.waitForEvent("runtime_started", { ship: "~zod" }, 1000);
  assert.equal(old.event, "runtime_started");
  const mark = log.eventMark();
  assert.equal(mark, 2);
  const next = log.waitForEvent("runtime_started", { ship: "~zod" }, 5000, mark);
  let settled = false;
  next.then(() => settled = true, () => settled = true);
  await Promise.resolve();
  assert.equal(settled, false, "the event before the mark does not count");
  log.push(
    line("runtime_started", "~nec"),
    JSON.stringify({ event: "runtime_started", ship: "~zod", eve: 9 }),
  );
  assert.equal((await next).eve, 9);
});
