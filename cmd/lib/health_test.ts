import assert from "node:assert/strict";
import { type HealthFacts, LAG_ENTRIES_MAX, memberHealth } from "./health.ts";

const follower: HealthFacts = {
  reachable: true,
  leaderKnown: true,
  isLeader: false,
  contactMs: 40,
  lag: 0,
  electionTimeoutMs: 500,
};

Deno.test("health: a follower heard from within the election timeout and close behind is ok", () => {
  assert.equal(memberHealth(follower), "ok");
  assert.equal(memberHealth({ ...follower, contactMs: 499, lag: LAG_ENTRIES_MAX }), "ok");
});

Deno.test("health: last contact 4.8 s ago is stale, whatever the lag (the reported case)", () => {
  assert.equal(memberHealth({ ...follower, contactMs: 4800, lag: 46 }), "stale");
  assert.equal(memberHealth({ ...follower, contactMs: 500 }), "stale");
  assert.equal(memberHealth({ ...follower, contactMs: null }), "stale");
  // Relative to the election timeout: 4.8 s is fine for a node run with 10 s.
  assert.equal(memberHealth({ ...follower, contactMs: 4800, electionTimeoutMs: 10_000 }), "ok");
});

Deno.test("health: in contact but far behind is lagging", () => {
  assert.equal(memberHealth({ ...follower, lag: LAG_ENTRIES_MAX + 1 }), "lagging");
  assert.equal(memberHealth({ ...follower, lag: null }), "ok");
});

Deno.test("health: unreachable and no leader come first; the leader itself is ok", () => {
  assert.equal(memberHealth({ ...follower, reachable: false }), "unreachable");
  assert.equal(memberHealth({ ...follower, leaderKnown: false, contactMs: null }), "no leader");
  assert.equal(memberHealth({ ...follower, isLeader: true, contactMs: 0 }), "ok");
});
