import assert from "node:assert/strict";
import { join } from "node:path";
import {
  listEpochs,
  LOG_VERSION,
  logDir,
  PierError,
  type PierMeta,
  readEvents,
  readMeta,
  writePier,
} from "./pier.ts";
import { Env } from "./lmdb.ts";
import {
  decodeSnapshotHeader,
  detectLayout,
  encodeSnapshotHeader,
  type PierLayout,
  pierSnapshots,
  SNAPSHOT_HEADER_BYTES,
  snapshotEvent,
  snapshotLayout,
  SnapshotReader,
  splitSnapshot,
} from "./pier_layout.ts";
import { haveLiblmdb } from "../tests/pier/oracle.ts";
import { beltEvents } from "../tests/e2e/belt_events.ts";

const ZOD: PierMeta = { version: LOG_VERSION, who: 0n, fake: true, life: 1 };
const noLmdb = !haveLiblmdb();
const PAGE = 16 * 1024;

/** A south.bin whose top page says the loom holds the state after `eve` (loom version `loom`). */
function southBin(eve: number, loom = 3, pages = 2): Uint8Array {
  const bytes = new Uint8Array(PAGE * pages);
  const view = new DataView(bytes.buffer);
  view.setBigUint64(PAGE - 24, BigInt(eve), true);
  view.setUint32(PAGE - 4, loom, true);
  for (let i = PAGE; i < bytes.length; i++) bytes[i] = i & 0xff;
  return bytes;
}

function withDir(f: (dir: string) => void): void {
  const dir = Deno.makeTempDirSync({ prefix: "seguro-layout-" });
  try {
    f(dir);
  } finally {
    Deno.removeSync(dir, { recursive: true });
  }
}

/** Writes north.bin and south.bin into `dir`, returning their paths. */
function northSouth(dir: string, eve: number, loom = 3): { north: string; south: string } {
  Deno.mkdirSync(dir, { recursive: true });
  const north = join(dir, "north.bin");
  const south = join(dir, "south.bin");
  Deno.writeFileSync(north, new Uint8Array(3 * PAGE).map((_, i) => (i * 7) & 0xff));
  Deno.writeFileSync(south, southBin(eve, loom));
  return { north, south };
}

function readAll(reader: SnapshotReader, step: number): Uint8Array {
  const out = new Uint8Array(reader.size);
  let got = 0;
  for (;;) {
    const n = reader.readSync(out.subarray(got, Math.min(got + step, out.length)));
    if (n === 0) break;
    got += n;
  }
  reader.close();
  assert.equal(got, out.length);
  return out;
}

Deno.test("a snapshot container's header round-trips, and an image.bin is not one", () => {
  const header = encodeSnapshotHeader({ layout: "epochs1", northBytes: 5, southBytes: 7 });
  assert.equal(header.length, SNAPSHOT_HEADER_BYTES);
  assert.deepEqual(decodeSnapshotHeader(header, 24 + 12), {
    layout: "epochs1",
    northBytes: 5,
    southBytes: 7,
  });
  assert.equal(snapshotLayout(header, 36), "epochs1");
  assert.throws(() => decodeSnapshotHeader(header, 37), /does not match its 37 bytes/);
  const image = new Uint8Array(64);
  image[0] = 5; // an image.bin starts with its loom version
  assert.equal(decodeSnapshotHeader(image, 64), undefined);
  assert.equal(snapshotLayout(image, 64), "epochs2");
});

Deno.test("the event of a north/south snapshot is read from the top page of south.bin", () => {
  withDir((dir) => {
    const { south } = northSouth(dir, 64);
    assert.equal(snapshotEvent(south), 64);
    Deno.writeFileSync(south, southBin(64, 9));
    assert.throws(() => snapshotEvent(south), /loom version 9/);
  });
});

Deno.test("a container reads as header, north, south in any read size, and splits back into the files", () => {
  withDir((dir) => {
    const files = northSouth(join(dir, "epoch"), 25);
    const north = Deno.readFileSync(files.north);
    const south = Deno.readFileSync(files.south);
    const header = encodeSnapshotHeader({
      layout: "epochs1",
      northBytes: north.length,
      southBytes: south.length,
    });
    const source = { epoch: 25, parts: [header, files.north, files.south], where: dir };
    const whole = readAll(new SnapshotReader(source), PAGE * 8);
    for (const step of [1, 7, 23, 4096, PAGE + 3]) {
      assert.deepEqual(readAll(new SnapshotReader(source), step), whole, `reads of ${step}`);
    }
    assert.deepEqual(whole.subarray(0, 24), header);
    assert.deepEqual(whole.subarray(24, 24 + north.length), north);
    const path = join(dir, "image");
    Deno.writeFileSync(path, whole);
    const out = join(dir, "out");
    Deno.mkdirSync(out);
    const split = splitSnapshot(path, out);
    assert.deepEqual(Deno.readFileSync(split.north), north);
    assert.deepEqual(Deno.readFileSync(split.south), south);
    assert.throws(() => Deno.statSync(path), Deno.errors.NotFound, "the container is removed");
  });
});

Deno.test({
  name:
    "each layout is written as its vere writes it, detected, read back, and its snapshots found",
  ignore: noLmdb,
  fn() {
    const events = beltEvents(1, 30);
    const cases: { layout: PierLayout; epochs: { base: number; snap?: number }[] }[] = [
      { layout: "log1", epochs: [{ base: 0, snap: 30 }] },
      { layout: "epochs1", epochs: [{ base: 0 }, { base: 20, snap: 20 }] },
      { layout: "epochs2", epochs: [{ base: 0 }, { base: 20, snap: 20 }] },
    ];
    for (const { layout, epochs } of cases) {
      withDir((dir) => {
        const pier = join(dir, "zod");
        writePier(pier, {
          meta: ZOD,
          layout,
          vereVersion: "3.0",
          epochs: epochs.map(({ base, snap }, i) => ({
            base,
            events: events.slice(base, epochs[i + 1]?.base ?? 30),
            image: snap === undefined
              ? undefined
              : layout === "epochs2"
              ? new Uint8Array([5, 0, 0, 0, 0, 0, 0, 0, 1, 2, 3])
              : northSouth(join(dir, `snap${base}`), snap),
          })),
        });
        assert.equal(detectLayout(pier), layout, layout);
        assert.deepEqual([...readEvents(pier)], events, `${layout}: every event reads back`);
        const snaps = pierSnapshots(pier, layout);
        assert.deepEqual(snaps.map((s) => s.epoch), [layout === "log1" ? 30 : 20], layout);
        if (layout === "log1") {
          assert.deepEqual(listEpochs(pier), [], "no epochs");
          const env = Env.open(logDir(pier), { readOnly: true });
          assert.equal(readMeta(env).version, 1, "META version 1");
          env.close();
          assert.ok(Deno.statSync(join(pier, ".urb/chk/south.bin")).isFile);
        } else {
          const epochText = Deno.readTextFileSync(join(logDir(pier), "0i20", "epoc.txt"));
          assert.equal(epochText, layout === "epochs1" ? "1" : "2");
        }
        if (layout === "epochs1") {
          assert.deepEqual(
            Deno.readFileSync(join(pier, ".urb/chk/south.bin")),
            Deno.readFileSync(join(logDir(pier), "0i20", "south.bin")),
            "vere 3.x loads the newest epoch's snapshot from .urb/chk",
          );
        }
      });
    }
  },
});

Deno.test({
  name: "a snapshot of the wrong kind for the epoch format, or log 1 with epochs, is refused",
  ignore: noLmdb,
  fn() {
    withDir((dir) => {
      assert.throws(
        () =>
          writePier(join(dir, "a"), {
            meta: ZOD,
            layout: "epochs1",
            vereVersion: "3.0",
            epochs: [{ base: 0, events: [] }, {
              base: 5,
              events: [],
              image: new Uint8Array([1]),
            }],
          }),
        (e) =>
          e instanceof PierError && /keeps its snapshot as north.bin and south.bin/.test(e.message),
      );
      assert.throws(
        () =>
          writePier(join(dir, "b"), {
            meta: ZOD,
            layout: "log1",
            vereVersion: "1.16",
            epochs: [{ base: 0, events: [] }, { base: 5, events: [] }],
          }),
        (e) => e instanceof PierError && /one log from event 1/.test(e.message),
      );
    });
  },
});

Deno.test({
  name: "detectLayout refuses an epoch without epoc.txt and a format above 2, naming them",
  ignore: noLmdb,
  fn() {
    withDir((dir) => {
      const pier = join(dir, "zod");
      writePier(pier, { meta: ZOD, vereVersion: "4.0", events: [] });
      Deno.writeTextFileSync(join(logDir(pier), "0i0", "epoc.txt"), "3");
      assert.throws(() => detectLayout(pier), /epoc.txt says '3'.*update Seguro/);
      Deno.removeSync(join(logDir(pier), "0i0", "epoc.txt"));
      assert.throws(() => detectLayout(pier), /has no epoc.txt/);
    });
  },
});
