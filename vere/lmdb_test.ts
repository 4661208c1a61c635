import assert from "node:assert/strict";
import { Env, eventKey, eventOfKey, LmdbError, MDB_KEYEXIST, openLmdb } from "./lmdb.ts";
import { haveLiblmdb, oraclePath, oracleValue, runOracle } from "../tests/pier/oracle.ts";

const bytes = (text: string) => new TextEncoder().encode(text);

function withEnv(fn: (env: Env, dir: string) => void): void {
  const dir = Deno.makeTempDirSync({ prefix: "seguro-lmdb-" });
  const env = Env.open(dir);
  try {
    fn(env, dir);
  } finally {
    env.close();
    Deno.removeSync(dir, { recursive: true });
  }
}

Deno.test("eventKey is the u64 little-endian key vere's EVENTS uses", () => {
  assert.deepEqual(eventKey(1), Uint8Array.of(1, 0, 0, 0, 0, 0, 0, 0));
  assert.deepEqual(eventKey(0x1_0203_0405), Uint8Array.of(5, 4, 3, 2, 1, 0, 0, 0));
  assert.equal(eventOfKey(eventKey(2 ** 53 - 1)), 2 ** 53 - 1);
  assert.throws(() => eventKey(-1), LmdbError);
  assert.throws(() => eventKey(1.5), LmdbError);
  assert.throws(() => eventOfKey(new Uint8Array(7)), /has 7 bytes, not 8/);
  assert.throws(() => eventOfKey(Uint8Array.of(0, 0, 0, 0, 0, 0, 0, 1)), /beyond 2\^53/);
});

Deno.test("a missing library is an LmdbError naming Debian's package and SEGURO_LIBLMDB", () => {
  assert.throws(
    () => openLmdb({ libraryPath: "/nonexistent/liblmdb.so.0" }),
    (error: unknown) => {
      assert.ok(error instanceof LmdbError);
      assert.match(error.message, /^liblmdb is not installed; install Debian's liblmdb0/);
      assert.match(error.message, /apt-get install liblmdb0\) or set SEGURO_LIBLMDB/);
      assert.match(error.message, /nonexistent/);
      return true;
    },
  );
});

Deno.test({
  name: "liblmdb is LMDB 0.9.x, vere's data format",
  ignore: !haveLiblmdb(),
  fn() {
    assert.match(openLmdb().version, /^0\.9\.\d+$/);
    assert.equal(openLmdb(), openLmdb(), "the library is loaded once");
  },
});

Deno.test({
  name: "put, get, stat and entries round-trip; entries are copies from a key on",
  ignore: !haveLiblmdb(),
  fn() {
    withEnv((env) => {
      const padded = Uint8Array.of(9, 9, 1, 2, 3, 9);
      env.writeTxn((txn) => {
        const db = txn.openDb("EVENTS", { create: true, integerKey: true });
        for (let eve = 1; eve <= 300; eve++) {
          // a subarray: the binding must honour byteOffset
          txn.put(db, eventKey(eve), eve === 7 ? padded.subarray(2, 5) : eventKey(eve * 3));
        }
        txn.put(db, eventKey(301), new Uint8Array(0));
      });
      const seen = env.readTxn((txn) => {
        const db = txn.openDb("EVENTS", { integerKey: true });
        assert.deepEqual(txn.get(db, eventKey(7)), Uint8Array.of(1, 2, 3));
        assert.deepEqual(txn.get(db, eventKey(256)), eventKey(768));
        assert.deepEqual(txn.get(db, eventKey(301)), new Uint8Array(0));
        assert.equal(txn.get(db, eventKey(302)), undefined);
        assert.equal(txn.stat(db).entries, 301);
        assert.equal(txn.stat(db).pageSizeBytes, 4096);
        return [...txn.entries(db, { from: eventKey(255) })];
      });
      // integer keys walk in numeric order, not byte order: 255, 256, 257, ...
      assert.deepEqual(seen.map(([key]) => eventOfKey(key)), range(255, 301));
      assert.deepEqual(seen[1][1], eventKey(768), "values stay readable after the txn");
      env.writeTxn((txn) => {
        const db = txn.openDb("EVENTS", { integerKey: true });
        assert.equal(txn.del(db, eventKey(301)), true);
        assert.equal(txn.del(db, eventKey(301)), false, "deleting an absent key says so");
      });
      env.readTxn((txn) => {
        const db = txn.openDb("EVENTS", { integerKey: true });
        assert.equal(txn.get(db, eventKey(301)), undefined);
        assert.equal(txn.stat(db).entries, 300);
      });
    });
  },
});

Deno.test({
  name: "noOverwrite refuses an existing key with MDB_KEYEXIST, and a throw aborts the txn",
  ignore: !haveLiblmdb(),
  fn() {
    withEnv((env) => {
      env.writeTxn((txn) => {
        txn.put(txn.openDb("META", { create: true }), bytes("who"), Uint8Array.of(1));
      });
      assert.throws(
        () =>
          env.writeTxn((txn) => {
            const db = txn.openDb("META");
            txn.put(db, bytes("life"), Uint8Array.of(1));
            txn.put(db, bytes("who"), Uint8Array.of(2), { noOverwrite: true });
          }),
        (error: unknown) => {
          assert.ok(error instanceof LmdbError);
          assert.equal(error.code, MDB_KEYEXIST);
          assert.match(error.message, /^mdb_put in META failed: MDB_KEYEXIST/);
          return true;
        },
      );
      env.readTxn((txn) => {
        const db = txn.openDb("META");
        assert.equal(txn.get(db, bytes("life")), undefined, "the aborted put is gone");
        assert.deepEqual(txn.get(db, bytes("who")), Uint8Array.of(1));
      });
    });
  },
});

Deno.test({
  name: "handles and transactions are refused outside their scope",
  ignore: !haveLiblmdb(),
  fn() {
    withEnv((env, dir) => {
      env.writeTxn((txn) => txn.openDb("META", { create: true }));
      let escaped: { txn: unknown; db: unknown } | undefined;
      env.readTxn((txn) => {
        const db = txn.openDb("META");
        escaped = { txn, db };
        assert.throws(() => txn.put(db, bytes("k"), bytes("v")), /read-only; use writeTxn/);
        assert.throws(() => txn.openDb("EVENTS"), /mdb_dbi_open of EVENTS failed: MDB_NOTFOUND/);
        assert.throws(() => txn.openDb("META", { integerKey: true }), /not MDB_INTEGERKEY/);
      });
      const { txn, db } = escaped as { txn: import("./lmdb.ts").Txn; db: import("./lmdb.ts").Db };
      assert.throws(() => txn.get(db, bytes("who")), /transaction has ended/);
      env.readTxn((other) => {
        assert.throws(() => other.get(db, bytes("who")), /belongs to another transaction/);
      });
      assert.throws(() => env.readTxn(() => Promise.resolve(1)), /returned a promise/);
      const readOnly = Env.open(dir, { readOnly: true });
      try {
        assert.throws(() => readOnly.writeTxn(() => 0), /is read-only; open it writable/);
      } finally {
        readOnly.close();
      }
    });
    assert.throws(
      () => Env.open("/nonexistent/seguro-env"),
      /^LmdbError: mdb_env_open of \/nonexistent\/seguro-env failed: No such file/,
    );
  },
});

Deno.test({
  name: "an abandoned walk's cursor is closed when its transaction ends",
  ignore: !haveLiblmdb(),
  fn() {
    withEnv((env) => {
      env.writeTxn((txn) => {
        const db = txn.openDb("EVENTS", { create: true, integerKey: true });
        for (let eve = 1; eve <= 3; eve++) txn.put(db, eventKey(eve), eventKey(eve));
        const walk = txn.entries(db);
        assert.deepEqual(walk.next().value?.[1], eventKey(1));
      });
      for (let i = 0; i < 200; i++) {
        const walk = env.readTxn((txn) => {
          const walk = txn.entries(txn.openDb("EVENTS", { integerKey: true }));
          walk.next();
          return walk;
        });
        assert.throws(() => walk.next(), /transaction has ended/);
      }
    });
  },
});

Deno.test({
  name: "an env the C oracle wrote reads back byte for byte (values up to 1 MB)",
  ignore: oraclePath() === undefined,
  fn() {
    const dir = Deno.makeTempDirSync({ prefix: "seguro-lmdb-" });
    try {
      const created = runOracle(["create", dir, "300", "64", "1", "50"]);
      assert.equal(created.code, 0, created.stderr);
      const env = Env.open(dir, { readOnly: true });
      try {
        env.readTxn((txn) => {
          const db = txn.openDb("EVENTS", { integerKey: true });
          assert.equal(txn.stat(db).entries, 300);
          let eve = 0;
          for (const [key, value] of txn.entries(db)) {
            eve++;
            assert.equal(eventOfKey(key), eve);
            assert.deepEqual(value, oracleValue(eve, true), `event ${eve}`);
          }
          assert.equal(eve, 300);
          assert.equal(txn.get(db, eventKey(97))!.length, oracleValue(97, true).length);
          assert.ok(oracleValue(97, true).length >= 100_000);
        });
      } finally {
        env.close();
      }
    } finally {
      Deno.removeSync(dir, { recursive: true });
    }
  },
});

function range(first: number, last: number): number[] {
  return Array.from({ length: last - first + 1 }, (_, i) => first + i);
}
