import assert from "node:assert/strict";
import fc from "fast-check";
import { applyConfChange, decodeConfChangeRecord, encodeConfChangeRecord } from "./confchange.ts";
import type { ConfChangeRecord } from "./messages.ts";

const ids = fc.uniqueArray(fc.integer({ min: 1, max: 0xffff_ffff }), { maxLength: 9 });

Deno.test("conf change records round-trip through their binary form", () => {
  fc.assert(
    fc.property(
      fc.constantFrom("addLearner", "promoteLearner", "addVoter", "removeNode" as const),
      fc.integer({ min: 1, max: 0xffff_ffff }),
      ids,
      ids,
      (type, nodeId, voters, learners) => {
        const record: ConfChangeRecord = { change: { type, nodeId }, conf: { voters, learners } };
        assert.deepEqual(decodeConfChangeRecord(encodeConfChangeRecord(record)), record);
      },
    ),
  );
});

Deno.test("decoding rejects truncated and padded records", () => {
  const bytes = encodeConfChangeRecord({
    change: { type: "addVoter", nodeId: 4 },
    conf: { voters: [1, 2, 3, 4], learners: [] },
  });
  assert.throws(() => decodeConfChangeRecord(bytes.subarray(0, bytes.length - 1)), RangeError);
  const padded = new Uint8Array(bytes.length + 1);
  padded.set(bytes);
  assert.throws(() => decodeConfChangeRecord(padded), /1 trailing bytes/);
  assert.throws(() => decodeConfChangeRecord(new Uint8Array(3)), RangeError);
});

Deno.test("applyConfChange moves one server at a time and refuses nonsense", () => {
  const conf = { voters: [1, 2, 3], learners: [4] };
  assert.deepEqual(applyConfChange(conf, { type: "promoteLearner", nodeId: 4 }), {
    voters: [1, 2, 3, 4],
    learners: [],
  });
  assert.deepEqual(applyConfChange(conf, { type: "addLearner", nodeId: 5 }), {
    voters: [1, 2, 3],
    learners: [4, 5],
  });
  assert.deepEqual(applyConfChange(conf, { type: "removeNode", nodeId: 2 }), {
    voters: [1, 3],
    learners: [4],
  });
  assert.equal(typeof applyConfChange(conf, { type: "addVoter", nodeId: 4 }), "string");
  assert.equal(typeof applyConfChange(conf, { type: "promoteLearner", nodeId: 1 }), "string");
  assert.equal(typeof applyConfChange(conf, { type: "removeNode", nodeId: 9 }), "string");
  assert.equal(
    applyConfChange({ voters: [1], learners: [] }, { type: "removeNode", nodeId: 1 }),
    "Node 1 is the last voter",
  );
  assert.equal(typeof applyConfChange(conf, { type: "addLearner", nodeId: 0 }), "string");
});
