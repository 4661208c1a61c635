import assert from "node:assert/strict";
import { nodeLog } from "./node.ts";

Deno.test("node log: text lines for people; JSON lines carry the event and its fields", () => {
  const out: string[] = [];
  const text = nodeLog(3, "text", (t) => out.push(t));
  text("became leader at term 4", { event: "leader", term: 4 });
  assert.match(out[0], /^\d{4}-\d\d-\d\dT[\d:.]+Z seguro\[node 3\] became leader at term 4$/);

  const json = nodeLog(3, "json", (t) => out.push(t));
  json("became leader at term 4", { event: "leader", term: 4 });
  json("a line with no event");
  const [withEvent, plain] = out.slice(1).map((l) => JSON.parse(l));
  assert.deepEqual({ ...withEvent, ts: "T" }, {
    ts: "T",
    node: 3,
    msg: "became leader at term 4",
    event: "leader",
    term: 4,
  });
  assert.equal(plain.event, undefined);
  assert.equal(plain.msg, "a line with no event");
});
