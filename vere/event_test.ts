import assert from "node:assert/strict";
import { cell, cord, cue, isCell, jam, list, type Noun, NounError, tuple } from "./noun.ts";
import {
  BOOT_EVENT_STEP,
  bootSequence,
  daFromMillis,
  daFromUnix,
  decodeJob,
  parsePill,
  parseShip,
  renderDa,
  summarizeEvent,
} from "./event.ts";
import { BRASS_PILL_PATH, havePill } from "../tests/fixtures.ts";

const BOOT_TIME = daFromUnix(1_700_000_000n, 0);
const ENTROPY = new Uint8Array(64).fill(7);

Deno.test("@da of a Unix time follows vere's formula", () => {
  assert.equal(daFromUnix(0n, 0), 0x8000000cce9e0d80n << 64n);
  assert.equal(daFromUnix(1n, 500_000), ((0x8000000cce9e0d80n + 1n) << 64n) | (0x8000n << 48n));
  assert.equal(renderDa(daFromUnix(0n, 0)), "~1970.1.1");
  assert.equal(renderDa(daFromMillis(Date.UTC(2026, 10, 26, 7, 28, 21))), "~2026.11.26..07.28.21");
});

Deno.test("ship names parse as @p, and non-ships are refused", () => {
  assert.equal(parseShip("~zod"), 0n);
  assert.equal(parseShip("nec"), 1n);
  assert.equal(parseShip("~marzod"), 256n);
  assert.ok((parseShip("~sampel-palnet") ?? 0n) > 0xffffn);
  assert.equal(parseShip("~zzz"), undefined);
  assert.equal(parseShip("zod zod"), undefined);
});

Deno.test("decodeJob reads [now [wire [tag data]]] and refuses other shapes", () => {
  const job = tuple(BOOT_TIME, list([cord("d"), cord("term"), cord("1")]), cord("belt"), 42n);
  const record = decodeJob(job);
  assert.equal(record.wire, "/d/term/1");
  assert.equal(record.tag, "belt");
  assert.equal(record.data, 42n);
  assert.equal(record.time, renderDa(BOOT_TIME));
  for (const bad of [5n, cell(cell(1n, 2n), 3n), cell(1n, 2n), tuple(1n, 0n, cell(1n, 2n), 3n)]) {
    assert.throws(() => decodeJob(bad), NounError);
  }
});

/** A pill the test builds itself: two formulas, one module ovum, two userspace ova. */
function testPill(): Noun {
  const ovum = (wire: string, tag: string) => tuple(list([cord(wire)]), cord(tag), 0n);
  return tuple(
    cord("pill"),
    cord("test"),
    list([tuple(2n, 0n, 3n), tuple(1n, 0n)]),
    list([ovum("c", "what")]),
    list([ovum("c", "park"), ovum("g", "rein")]),
  );
}

Deno.test("boot sequence: bot raw, 4 arvo cards before mod, the boot card before use", () => {
  const pill = parsePill(testPill());
  const ship = parseShip("~nec")!;
  const seq = bootSequence(pill, { ship, bootTime: BOOT_TIME, entropy: ENTROPY });
  assert.equal(seq.life, 2);
  assert.equal(seq.events.length, 2 + 4 + 1 + 1 + 2);
  assert.equal(seq.events[0], pill.bot[0]); // bot events are logged as they are
  assert.equal(seq.events[1], pill.bot[1]);
  const decoded = seq.events.slice(2).map(decodeJob);
  assert.deepEqual(
    decoded.map((r) => `${r.wire} %${r.tag}`),
    [
      "//arvo %wyrd",
      "//arvo %verb",
      "//arvo %whom",
      "//arvo %wack",
      "/c %what",
      "/d/term/1 %boot",
      "/c %park",
      "/g %rein",
    ],
  );
  decoded.forEach((r, i) => assert.equal(r.now, BOOT_TIME + BigInt(i + 1) * BOOT_EVENT_STEP));
  // [%whom ship], [%wack entropy], [%boot %.n [%fake ship]]
  assert.equal(decoded[2].data, ship);
  assert.equal(decoded[3].data, 0x07n * ((1n << 512n) - 1n) / 0xffn);
  const boot = decoded[5].data;
  assert.ok(isCell(boot) && boot.head === 1n && isCell(boot.tail));
  assert.deepEqual(boot.tail.head, cord("fake"));
  assert.equal(boot.tail.tail, ship);
  // [%verb ~ flag]: vere sends !veb_o, 0 when not verbose.
  assert.ok(isCell(decoded[1].data) && decoded[1].data.head === 0n && decoded[1].data.tail === 0n);
});

Deno.test("parsePill refuses nouns that are not pills", () => {
  assert.throws(() => parsePill(cell(cord("ivory"), 0n)), /ivory pill/);
  assert.throws(() => parsePill(cell(cord("nope"), 0n)), /its tag is %nope/);
  assert.throws(() => parsePill(tuple(cord("pill"), 1n, 2n)), /shape/);
  assert.throws(() => parsePill(tuple(cord("pill"), 1n, 2n, 3n, 4n)), /does not end in ~/);
});

Deno.test({
  name: "brass.pill boots ~zod: 5 formulas, then the arvo cards, mod, the boot card, use",
  ignore: !havePill(),
  fn() {
    const pill = parsePill(cue(Deno.readFileSync(BRASS_PILL_PATH)));
    assert.equal(pill.type, "brass");
    const seq = bootSequence(pill, { ship: 0n, bootTime: BOOT_TIME, entropy: ENTROPY });
    assert.equal(seq.life, 5);
    const lines = seq.events.map((job, i) => summarizeEvent(i + 1, job, seq.life));
    assert.deepEqual(lines.slice(0, 5).map((l) => l.kind), Array(5).fill("formula"));
    const cards = lines.slice(5).map((l) => `${l.wire} %${l.card}`);
    assert.deepEqual(cards.slice(0, 4), [
      "//arvo %wyrd",
      "//arvo %verb",
      "//arvo %whom",
      "//arvo %wack",
    ]);
    const bootAt = cards.indexOf("/d/term/1 %boot");
    assert.equal(bootAt, 4 + pill.mod.length, "the boot card comes right after mod");
    assert.equal(cards.length, 4 + pill.mod.length + 1 + pill.use.length);
    assert.equal(lines[0].bytes, jam(pill.bot[0]).length);
  },
});
