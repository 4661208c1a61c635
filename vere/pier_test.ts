import assert from "node:assert/strict";
import { join } from "node:path";
import { Env, eventKey } from "./lmdb.ts";
import {
  decodeEventValue,
  encodeEventValue,
  isPierLocked,
  listEpochs,
  LOG_VERSION,
  logDir,
  PierError,
  type PierEvent,
  type PierMeta,
  readEpochText,
  readEvents,
  readMeta,
  readPierMeta,
  writeEpoch,
  writeMeta,
  writePier,
} from "./pier.ts";
import {
  fileSha256,
  haveLiblmdb,
  haveTool,
  oraclePath,
  oracleValue,
  runOracle,
} from "../tests/pier/oracle.ts";

const ZOD: PierMeta = { version: LOG_VERSION, who: 0n, fake: true, life: 1 };
const noLmdb = !haveLiblmdb();
const noOracle = oraclePath() === undefined;

function tempPier(): string {
  return Deno.makeTempDirSync({ prefix: "seguro-pier-" });
}

// The oracle's values as events: the first 4 bytes are the mug.
function* oracleEvents(first: number, last: number): Generator<PierEvent> {
  for (let eve = first; eve <= last; eve++) {
    const value = oracleValue(eve, false);
    const mug = new DataView(value.buffer).getUint32(0, true);
    yield { eve, mug, job: value.subarray(4) };
  }
}

function storedValue(event: PierEvent): Uint8Array {
  const value = new Uint8Array(4 + event.job.length);
  new DataView(value.buffer).setUint32(0, event.mug, true);
  value.set(event.job, 4);
  return value;
}

Deno.test({
  name: "a pier whose epoch the C oracle wrote reads with the bytes oracle verify checks",
  ignore: noOracle,
  fn() {
    const pier = tempPier();
    try {
      const epoch = join(logDir(pier), "0i0");
      Deno.mkdirSync(epoch, { recursive: true });
      assert.equal(runOracle(["create", logDir(pier), "0", "64", "0"]).code, 0);
      assert.equal(runOracle(["create", epoch, "1000", "64", "0"]).code, 0);
      Deno.writeTextFileSync(join(epoch, "epoc.txt"), "2");
      const verified = runOracle(["verify", epoch, "1000", "0"]);
      assert.equal(verified.code, 0, verified.stdout);
      const walked = /walked (\d+) events, (\d+) value bytes/.exec(verified.stdout);
      assert.ok(walked, verified.stdout);

      let eve = 0;
      let valueBytes = 0;
      for (const event of readEvents(pier, { batchEvents: 64 })) {
        eve++;
        assert.equal(event.eve, eve);
        assert.deepEqual(storedValue(event), oracleValue(eve, false), `event ${eve}`);
        valueBytes += 4 + event.job.length;
      }
      assert.equal(eve, Number(walked[1]));
      assert.equal(valueBytes, Number(walked[2]));
      assert.deepEqual([...readEvents(pier, { from: 998 })].map((e) => e.eve), [998, 999, 1000]);
      // the oracle stores version 1 (a pre-epoch log); who ~zod, fake, life 1
      assert.deepEqual(readPierMeta(pier), { version: 1, who: 0n, fake: true, life: 1 });
    } finally {
      Deno.removeSync(pier, { recursive: true });
    }
  },
});

Deno.test({
  name: "writePier's log passes oracle verify, mdb_stat -a and mdb_dump -a",
  ignore: noOracle || !haveTool("mdb_stat", ["-V"]) || !haveTool("mdb_dump", ["-V"]),
  fn() {
    const pier = tempPier();
    try {
      writePier(pier, {
        meta: ZOD,
        events: oracleEvents(1, 500),
        vereVersion: "4.0-seguro",
        batchEvents: 100,
      });
      const [epoch] = listEpochs(pier);
      assert.deepEqual(epoch, { dir: join(logDir(pier), "0i0"), base: 0, hasImage: false });
      assert.equal(readEpochText(epoch, "epoc"), "2");
      assert.equal(readEpochText(epoch, "vere"), "4.0-seguro");
      assert.ok(Deno.statSync(join(pier, ".urb", "chk")).isDirectory);
      assert.deepEqual(
        [...Deno.readDirSync(logDir(pier))].map((e) => e.name).sort(),
        ["0i0", "data.mdb", "lock.mdb"],
        "no temporary directory is left",
      );

      const verified = runOracle(["verify", epoch.dir, "500", "0"]);
      assert.equal(verified.code, 0, verified.stdout);
      assert.match(verified.stdout, /META version: len=1 hex=03\n/);
      assert.match(verified.stdout, /META who +: len=0 hex=\n/);
      assert.match(verified.stdout, /META fake +: len=0 hex=\n/);
      assert.match(verified.stdout, /META life +: len=1 hex=01\n/);
      assert.match(verified.stdout, /INTEGERKEY=yes/);
      assert.match(verified.stdout, /VERIFY OK/);

      for (const dir of [logDir(pier), epoch.dir]) {
        const stat = new Deno.Command("mdb_stat", { args: ["-a", dir] }).outputSync();
        assert.ok(stat.success, new TextDecoder().decode(stat.stderr));
      }
      const dump = new Deno.Command("mdb_dump", { args: ["-a", logDir(pier)] }).outputSync();
      assert.ok(dump.success);
      assert.deepEqual(parseDump(new TextDecoder().decode(dump.stdout)), {
        META: [["66616b65", ""], ["6c696665", "01"], ["76657273696f6e", "03"], ["77686f", ""]],
      });
    } finally {
      Deno.removeSync(pier, { recursive: true });
    }
  },
});

// mdb_dump's bytevalue format: per database a header, then " key\n value\n" pairs.
function parseDump(text: string): Record<string, string[][]> {
  const out: Record<string, string[][]> = {};
  let name = "";
  let data: string[] = [];
  for (const line of text.split("\n")) {
    if (line.startsWith("database=")) name = line.slice("database=".length);
    else if (line === "HEADER=END") data = [];
    else if (line === "DATA=END") {
      const pairs: string[][] = [];
      for (let i = 0; i < data.length; i += 2) pairs.push([data[i], data[i + 1]]);
      out[name] = pairs;
    } else if (line.startsWith(" ")) data.push(line.slice(1));
  }
  return out;
}

Deno.test({
  name: "two epochs read as one contiguous log; a gap between them is refused",
  ignore: noLmdb,
  fn() {
    const pier = tempPier();
    try {
      writePier(pier, { meta: ZOD, events: oracleEvents(1, 50), vereVersion: "4.0" });
      writeEpoch(pier, {
        meta: ZOD,
        base: 50,
        events: oracleEvents(51, 80),
        vereVersion: "4.0",
        image: Uint8Array.of(1, 2, 3),
      });
      assert.deepEqual(
        listEpochs(pier).map(({ base, hasImage }) => ({ base, hasImage })),
        [{ base: 0, hasImage: false }, { base: 50, hasImage: true }],
      );
      const all = [...readEvents(pier, { batchEvents: 7 })];
      assert.deepEqual(all.map((e) => e.eve), range(1, 80));
      assert.deepEqual(all[63].job, oracleValue(64, false).subarray(4));
      assert.deepEqual([...readEvents(pier, { from: 49 })].map((e) => e.eve), range(49, 80));
      assert.deepEqual([...readEvents(pier, { from: 60 })].map((e) => e.eve), range(60, 80));
      assert.deepEqual([...readEvents(pier, { from: 81 })], []);

      writeEpoch(pier, { meta: ZOD, base: 90, events: oracleEvents(91, 95), vereVersion: "4.0" });
      assert.throws(
        () => [...readEvents(pier)],
        (error: unknown) => {
          assert.ok(error instanceof PierError);
          assert.match(
            error.message,
            /^Event 81 is missing from .*0i50 does not hold it and the next epoch is 0i90/,
          );
          return true;
        },
      );
      assert.throws(
        () => [...readEvents(pier, { from: 85 })],
        /^PierError: Event 85 is missing from .*0i50 does not hold it/,
      );
      assert.throws(
        () => writeEpoch(pier, { meta: ZOD, base: 90, events: [], vereVersion: "4.0" }),
        /exists already/,
      );
    } finally {
      Deno.removeSync(pier, { recursive: true });
    }
  },
});

Deno.test({
  name: "a gap inside an epoch, and events before the oldest epoch, are refused",
  ignore: noLmdb,
  fn() {
    const pier = tempPier();
    try {
      writePier(pier, { meta: ZOD, events: oracleEvents(11, 20), epochBase: 10, vereVersion: "4" });
      assert.deepEqual([...readEvents(pier)].map((e) => e.eve), range(11, 20));
      assert.throws(() => [...readEvents(pier, { from: 5 })], /oldest epoch starts at 11/);
      const env = Env.open(listEpochs(pier)[0].dir);
      try {
        env.writeTxn((txn) => {
          const db = txn.openDb("EVENTS", { integerKey: true });
          txn.put(db, eventKey(22), Uint8Array.of(0, 0, 0, 0));
        });
      } finally {
        env.close();
      }
      assert.throws(() => [...readEvents(pier)], /^PierError: Event 21 is missing from epoch 0i10/);
    } finally {
      Deno.removeSync(pier, { recursive: true });
    }
  },
});

Deno.test({
  name: "writePier refuses misnumbered events and an existing log, leaving nothing behind",
  ignore: noLmdb,
  fn() {
    const pier = tempPier();
    try {
      const events = [...oracleEvents(1, 3)];
      events[2] = { ...events[2], eve: 4 };
      assert.throws(
        () => writePier(pier, { meta: ZOD, events, vereVersion: "4.0" }),
        /Event 4 was given where 3 belongs/,
      );
      assert.deepEqual([...Deno.readDirSync(join(pier, ".urb"))].map((e) => e.name), ["chk"]);
      writePier(pier, { meta: ZOD, events: [], vereVersion: "4.0" });
      assert.deepEqual([...readEvents(pier)], []);
      assert.throws(
        () => writePier(pier, { meta: ZOD, events: [], vereVersion: "4.0" }),
        /already has a log/,
      );
    } finally {
      Deno.removeSync(pier, { recursive: true });
    }
  },
});

Deno.test({
  name: "META round-trips as vere stores it: ~zod's who and a fake ship's bit are empty",
  ignore: noLmdb,
  fn() {
    const dir = tempPier();
    const env = Env.open(dir);
    try {
      const raw = () =>
        env.readTxn((txn) => {
          const db = txn.openDb("META");
          const out: Record<string, number[]> = {};
          for (const [key, value] of txn.entries(db)) {
            out[new TextDecoder().decode(key)] = [...value];
          }
          return out;
        });
      writeMeta(env, ZOD);
      assert.deepEqual(readMeta(env), ZOD);
      assert.deepEqual(raw(), { fake: [], life: [1], version: [3], who: [] });

      const real = {
        version: 3,
        who: 0x0102_0304_0506_0708_090a_0b0c_0d0e_0f10n,
        fake: false,
        life: 256,
      };
      writeMeta(env, real);
      assert.deepEqual(readMeta(env), real);
      assert.deepEqual(raw(), {
        fake: [1],
        life: [0, 1],
        version: [3],
        who: [16, 15, 14, 13, 12, 11, 10, 9, 8, 7, 6, 5, 4, 3, 2, 1],
      });

      assert.throws(() => writeMeta(env, { ...real, who: 1n << 128n }), /not a 128-bit atom/);
      env.writeTxn((txn) =>
        txn.put(txn.openDb("META"), new TextEncoder().encode("fake"), Uint8Array.of(2, 2))
      );
      assert.throws(() => readMeta(env), /fake bit .* is invalid/);
      env.writeTxn((txn) =>
        txn.put(txn.openDb("META"), new TextEncoder().encode("version"), Uint8Array.of(4))
      );
      assert.throws(() => readMeta(env), /has version 4, newer than 3/);
    } finally {
      env.close();
      Deno.removeSync(dir, { recursive: true });
    }
  },
});

Deno.test("isPierLocked is true for a live PID in .vere.lock and false for a dead one", async () => {
  const pier = tempPier();
  try {
    assert.equal(isPierLocked(pier), false, "no lock file");
    Deno.writeTextFileSync(join(pier, ".vere.lock"), `${Deno.pid}\n`);
    assert.equal(isPierLocked(pier), true);
    const child = new Deno.Command("true", { stdout: "null", stderr: "null" }).spawn();
    await child.status; // reaped: its PID names no process
    Deno.writeTextFileSync(join(pier, ".vere.lock"), `${child.pid}\n`);
    assert.equal(isPierLocked(pier), false);
    Deno.writeTextFileSync(join(pier, ".vere.lock"), "");
    assert.equal(isPierLocked(pier), false, "empty");
    Deno.writeTextFileSync(join(pier, ".vere.lock"), "12x\n");
    assert.equal(isPierLocked(pier), false, "corrupt");
  } finally {
    Deno.removeSync(pier, { recursive: true });
  }
});

Deno.test({
  name: "writePier and writeEpoch refuse a pier a live process holds",
  ignore: noLmdb,
  fn() {
    const pier = tempPier();
    try {
      Deno.writeTextFileSync(join(pier, ".vere.lock"), `${Deno.pid}\n`);
      assert.throws(
        () => writePier(pier, { meta: ZOD, events: [], vereVersion: "4.0" }),
        /in use by a running vere; stop it/,
      );
    } finally {
      Deno.removeSync(pier, { recursive: true });
    }
  },
});

Deno.test({
  name: "reading a pier read-only never changes data.mdb",
  ignore: noLmdb,
  async fn() {
    const pier = tempPier();
    try {
      writePier(pier, { meta: ZOD, events: oracleEvents(1, 200), vereVersion: "4.0" });
      const files = [join(logDir(pier), "data.mdb"), join(logDir(pier), "0i0", "data.mdb")];
      const before = await Promise.all(files.map(fileSha256));
      assert.equal([...readEvents(pier, { batchEvents: 16 })].length, 200);
      assert.deepEqual(readPierMeta(pier), ZOD);
      for (const event of readEvents(pier)) if (event.eve === 3) break; // abandoned walk
      assert.deepEqual(await Promise.all(files.map(fileSha256)), before);
    } finally {
      Deno.removeSync(pier, { recursive: true });
    }
  },
});

function range(first: number, last: number): number[] {
  return Array.from({ length: last - first + 1 }, (_, i) => first + i);
}

Deno.test("an EVENTS value is the mug (u32 LE) then the job, and decodes back", () => {
  const value = encodeEventValue(0xdeadbeef, Uint8Array.of(1, 2, 3));
  assert.deepEqual(value, Uint8Array.of(0xef, 0xbe, 0xad, 0xde, 1, 2, 3));
  assert.deepEqual(decodeEventValue(value, 9, "here"), {
    mug: 0xdeadbeef,
    job: Uint8Array.of(1, 2, 3),
  });
  // A view into a larger buffer decodes at its own offset.
  const inner = Uint8Array.of(9, 9, ...value).subarray(2);
  assert.equal(decodeEventValue(inner, 9, "here").mug, 0xdeadbeef);
  assert.throws(
    () => decodeEventValue(Uint8Array.of(1, 2, 3), 9, "0i0"),
    /Event 9 in 0i0 is shorter/,
  );
  assert.throws(() => encodeEventValue(2 ** 32, Uint8Array.of(1)), PierError);
});

/** Every path under `dir` whose mode is not 0700 (dirs) or 0600 (files), with its mode. */
function notPrivate(dir: string): string[] {
  const out: string[] = [];
  const walk = (path: string) => {
    const st = Deno.statSync(path);
    const mode = st.mode! & 0o777;
    if (mode !== (st.isDirectory ? 0o700 : 0o600)) out.push(`${path} ${mode.toString(8)}`);
    if (st.isDirectory) { for (const e of Deno.readDirSync(path)) walk(join(path, e.name)); }
  };
  walk(dir);
  return out;
}

Deno.test({
  name:
    "a written pier is its owner's alone: dirs 0700, files 0600 (its log holds the ship's keys)",
  ignore: noLmdb,
  fn() {
    const pier = tempPier();
    try {
      Deno.chmodSync(pier, 0o755);
      writePier(pier, { meta: ZOD, events: oracleEvents(1, 10), vereVersion: "4.0" });
      writeEpoch(pier, {
        meta: ZOD,
        base: 10,
        events: [],
        image: new Uint8Array(8),
        vereVersion: "4.0",
      });
      assert.deepEqual(notPrivate(pier), []);
    } finally {
      Deno.removeSync(pier, { recursive: true });
    }
  },
});
