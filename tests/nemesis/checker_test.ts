/**
 * The nemesis checker proven by mutation: a clean fabricated history passes,
 * and each mutation of it (a released event lost or changed, a `%done`
 * going back, a `%done` while fenced, diverging logs, overlapping runtimes)
 * is caught by exactly the check meant for it.
 */

import assert from "node:assert/strict";
import { type LoggedEvent, ShipLog } from "./event_columns.ts";
import {
  checkDoneMonotonic,
  checkDoneOnlyWhileLeading,
  checkFencing,
  checkLogsIdentical,
  checkReleasedKept,
  checkRun,
  clean,
  type RunRecord,
} from "./checker.ts";
import {
  type ConnectionHistory,
  type FinalLog,
  parseJournal,
  type ReleasedEvent,
} from "./history.ts";

function event(eve: number, salt = 0): LoggedEvent {
  return { eve, mug: (eve * 7919 + salt) >>> 0, job: new Uint8Array([eve & 0xff, 1 + salt, 0x42]) };
}

const EVENTS = Array.from({ length: 10 }, (_, i) => event(i + 1));

function finals(logs: LoggedEvent[][] = [EVENTS, EVENTS, EVENTS]): FinalLog[] {
  return logs.map((events, i) => ({ node: i + 1, log: ShipLog.of(events) }));
}

function released(upTo = 8): ReleasedEvent[] {
  return EVENTS.slice(0, upTo).map((e) => ({ ...e, conn: 1 }));
}

function connections(): ConnectionHistory[] {
  return [
    {
      conn: 1,
      node: 1,
      notices: [
        { kind: "lead", atMs: 1 },
        { kind: "done", eve: 4, atMs: 2 },
        { kind: "done", eve: 8, atMs: 3 },
        { kind: "fence", atMs: 4 },
        { kind: "closed", why: "client left", atMs: 5 },
      ],
    },
    {
      conn: 2,
      node: 2,
      notices: [
        { kind: "fence", atMs: 6 },
        { kind: "lead", atMs: 7 },
        { kind: "done", eve: 8, atMs: 8 },
      ],
    },
  ];
}

function run(change: Partial<RunRecord> = {}): RunRecord {
  return { released: released(), connections: connections(), finals: finals(), ...change };
}

const JOURNAL = [
  "1000 start 11 /s1/~nec 0",
  "2000 stop 11 /s1/~nec 200",
  "4300 start 12 /s2/~nec 200",
  "5000 stop 12 /s2/~nec 340",
  "7400 start 13 /s3/~nec 340",
].join("\n");

Deno.test("a clean history passes every check", () => {
  const report = checkRun({ ...run(), journal: parseJournal(JOURNAL) });
  assert.deepEqual(report.violations, []);
  assert.ok(clean(report));
  assert.equal(report.releasedEvents, 8);
});

Deno.test("(a) a released event missing from one node's final log is caught", () => {
  const short = EVENTS.slice(0, 6);
  const v = checkReleasedKept(released(), finals([EVENTS, short, EVENTS]));
  assert.equal(v.length, 2, "events 7 and 8");
  assert.match(v[0].text, /released event 7 .* missing from node 2 \(its log ends at 6\)/);
  const report = checkRun(run({ finals: finals([EVENTS, short, EVENTS]) }));
  assert.equal(report.releasedLost, 2);
  assert.equal(report.divergentLogs, 1);
  assert.ok(!clean(report));
});

Deno.test("(a) a released event replaced by another at its eve is caught (the stale-head bug)", () => {
  // The new master logged the old term's event 5 and refused the runtime's event 5,
  // whose %done had already been sent.
  const other = EVENTS.map((e) => e.eve === 5 ? event(5, 9) : e);
  const v = checkReleasedKept(released(), finals([other, other, other]));
  assert.equal(v.length, 1);
  assert.match(v[0].text, /released event 5 .* different on node 1 .*different on node 2/);
  assert.equal(checkRun(run({ finals: finals([other, other, other]) })).releasedLost, 1);
  // Same eve and mug, other job bytes: still caught.
  const jobOnly = EVENTS.map((e) => e.eve === 3 ? { ...e, job: new Uint8Array([3, 1, 0x43]) } : e);
  assert.equal(checkReleasedKept(released(), finals([jobOnly, EVENTS, EVENTS])).length, 1);
});

Deno.test("(b) a %done lower than an earlier one on the same connection is caught", () => {
  const conns = connections();
  conns[1].notices.push({ kind: "done", eve: 6, atMs: 9 });
  const v = checkDoneMonotonic(conns);
  assert.equal(v.length, 1);
  assert.match(v[0].text, /connection 2 to node 2: %done 6 after %done 8/);
  assert.equal(checkRun(run({ connections: conns })).doneRegressions, 1);
  // Across connections a lower %done is no regression.
  assert.deepEqual(checkDoneMonotonic(connections()), []);
});

Deno.test("(c) a %done after %fence, or before any %lead, is caught", () => {
  const afterFence = connections();
  afterFence[0].notices.splice(4, 0, { kind: "done", eve: 9, atMs: 4.5 });
  const v = checkDoneOnlyWhileLeading(afterFence);
  assert.equal(v.length, 1);
  assert.match(v[0].text, /connection 1 to node 1: %done 9 after %fence and before %lead/);
  const beforeLead = connections();
  beforeLead[1].notices.unshift({ kind: "done", eve: 8, atMs: 5.5 });
  assert.match(checkDoneOnlyWhileLeading(beforeLead)[0].text, /before any %lead/);
  assert.equal(checkRun(run({ connections: afterFence })).doneAfterFence, 1);
});

Deno.test("(d) diverging logs are caught, even where nothing was released", () => {
  const other = EVENTS.map((e) => e.eve === 9 ? event(9, 1) : e);
  const v = checkLogsIdentical(finals([EVENTS, EVENTS, other]));
  assert.equal(v.length, 1);
  assert.match(v[0].text, /node 3's log differs from node 1's: first differs at event 9/);
  const report = checkRun(run({ finals: finals([EVENTS, EVENTS, other]) }));
  assert.equal(report.divergentLogs, 1);
  assert.equal(report.releasedLost, 0, "event 9 was never released");
  const longer = [...EVENTS, event(11)];
  assert.match(checkLogsIdentical(finals([EVENTS, longer]))[0].text, /ends at 11/);
});

Deno.test("(e) overlapping runtimes are caught: OVERLAP, a start before a stop, no stop at all", () => {
  const overlap = JOURNAL + "\n7401 OVERLAP 14 /s1/~nec";
  assert.match(checkFencing(parseJournal(overlap))[0].text, /OVERLAP/);
  const early = JOURNAL.replace(
    "2000 stop 11 /s1/~nec 200\n4300 start 12 /s2/~nec 200",
    "1900 start 12 /s2/~nec 200\n2000 stop 11 /s1/~nec 200",
  );
  const v = checkFencing(parseJournal(early));
  assert.ok(v.some((x) => /started at 1900 .* while runtime 11/.test(x.text)), JSON.stringify(v));
  const noStop = JOURNAL.replace("2000 stop 11 /s1/~nec 200\n", "");
  assert.match(checkFencing(parseJournal(noStop))[0].text, /had recorded no stop/);
  const clockBehind = JOURNAL.replace("4300 start 12", "1999 start 12");
  assert.match(checkFencing(parseJournal(clockBehind))[0].text, /before runtime 11 stopped/);
  // Another ship's runtime may run at the same time.
  const twoShips = JOURNAL + "\n7402 start 21 /s1/~zod 0";
  assert.deepEqual(checkFencing(parseJournal(twoShips)), []);
  assert.equal(checkRun({ ...run(), journal: parseJournal(overlap) }).fencingOverlaps, 1);
});
