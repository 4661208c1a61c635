import assert from "node:assert/strict";
import fc from "fast-check";
import { committedIndex, majority, voteResult } from "./quorum.ts";

Deno.test("majority is more than half", () => {
  assert.deepEqual([1, 2, 3, 4, 5, 6, 7].map(majority), [1, 2, 2, 3, 3, 4, 4]);
});

Deno.test("voteResult is won, lost or pending by counting only voters", () => {
  const voters = [1, 2, 3];
  assert.equal(voteResult(voters, new Map([[1, true]])), "pending");
  assert.equal(voteResult(voters, new Map([[1, true], [2, true]])), "won");
  assert.equal(voteResult(voters, new Map([[1, true], [2, false], [3, false]])), "lost");
  assert.equal(voteResult(voters, new Map([[1, true], [9, true]])), "pending", "9 is no voter");
});

Deno.test("committedIndex is the highest index a majority has reached", () => {
  fc.assert(
    fc.property(fc.array(fc.nat(1000), { minLength: 1, maxLength: 9 }), (matches) => {
      const voters = matches.map((_, i) => i + 1);
      const c = committedIndex(voters, (id) => matches[id - 1]);
      const atLeast = matches.filter((m) => m >= c).length;
      const above = matches.filter((m) => m > c).length;
      assert.ok(atLeast >= majority(voters.length), "a majority has reached it");
      assert.ok(above < majority(voters.length), "no majority has reached anything higher");
    }),
  );
});
