/**
 * A small binding to the system's stock `liblmdb` (LMDB 0.9.x) through Deno
 * FFI, for reading and writing vere's event log in its own format. The npm
 * `lmdb` package is no substitute: it writes LMDB 1.0's data format, which
 * vere's LMDB 0.9 cannot read (and vice versa).
 *
 * Needs `--allow-ffi` (and `--allow-env` for `SEGURO_LIBLMDB`). The library
 * is found at `options.libraryPath`, else `$SEGURO_LIBLMDB`, else Debian's
 * `liblmdb.so.0` (package `liblmdb0`).
 *
 * Layout assumption: an LP64 platform (64-bit Linux or macOS), where
 * `size_t` and pointers are 8 bytes and `unsigned int` / `mode_t` are 4, so
 * `MDB_val` is `{ size_t mv_size; void *mv_data }` = 16 bytes and `MDB_stat`
 * is 2 x u32 + 4 x size_t = 40 bytes. Windows is refused.
 *
 * Transactions are scoped: {@linkcode Env.readTxn} and
 * {@linkcode Env.writeTxn} run a callback and always commit (on return) or
 * abort (on throw). Read transactions are committed too, because LMDB closes
 * a database handle opened in a read-only transaction when it aborts. Every
 * value handed out is a copy made while the transaction is live.
 *
 * @example
 * ```ts
 *
 * const env = Env.open("/tmp/pier/.urb/log/0i0", { readOnly: true });
 * try {
 *   env.readTxn((txn) => {
 *     const events = txn.openDb("EVENTS", { integerKey: true });
 *     txn.get(events, eventKey(1)); // Uint8Array: 4-byte mug, then the jam
 *   });
 * } finally {
 *   env.close();
 * }
 * ```
 * @module
 */

/** An error from liblmdb (with the failing call and `mdb_strerror` text) or its loading. */
export class LmdbError extends Error {
  /** The mdb return code, when the error came from an mdb call. */
  readonly code: number | undefined;
  /** Creates an error; `code` is the mdb return code when there is one. */
  constructor(message: string, code?: number) {
    super(message);
    this.name = "LmdbError";
    this.code = code;
  }
}

/** `MDB_KEYEXIST`: `put` with `noOverwrite` found the key already present. */
export const MDB_KEYEXIST = -30799;
/** `MDB_NOTFOUND`: no such key, or the end of a cursor walk. */
export const MDB_NOTFOUND = -30798;

const MDB_RDONLY = 0x20000;
const MDB_NOTLS = 0x200000;
const MDB_INTEGERKEY = 0x08;
const MDB_CREATE = 0x40000;
const MDB_NOOVERWRITE = 0x10;
const MDB_FIRST = 0;
const MDB_NEXT = 8;
const MDB_SET_RANGE = 17;

/** Bytes of `MDB_val` on LP64: `size_t mv_size` at 0, `void *mv_data` at 8. */
const MDB_VAL_BYTES = 16;
/** Bytes of `MDB_stat` on LP64: u32 psize, u32 depth, then 4 x size_t (entries at 32). */
const MDB_STAT_BYTES = 40;
/** vere's map size (`u3_Host.ops_u.siz_i` default): 1 TiB of address space, not of disk. */
const MAP_SIZE_BYTES_DEFAULT = 2 ** 40;

const SYMBOLS = {
  mdb_version: { parameters: ["buffer", "buffer", "buffer"], result: "pointer" },
  mdb_strerror: { parameters: ["i32"], result: "pointer" },
  mdb_env_create: { parameters: ["buffer"], result: "i32" },
  mdb_env_set_maxdbs: { parameters: ["pointer", "u32"], result: "i32" },
  mdb_env_set_mapsize: { parameters: ["pointer", "usize"], result: "i32" },
  mdb_env_open: { parameters: ["pointer", "buffer", "u32", "u32"], result: "i32" },
  mdb_env_close: { parameters: ["pointer"], result: "void" },
  mdb_txn_begin: { parameters: ["pointer", "pointer", "u32", "buffer"], result: "i32" },
  mdb_txn_commit: { parameters: ["pointer"], result: "i32" },
  mdb_txn_abort: { parameters: ["pointer"], result: "void" },
  mdb_dbi_open: { parameters: ["pointer", "buffer", "u32", "buffer"], result: "i32" },
  mdb_dbi_flags: { parameters: ["pointer", "u32", "buffer"], result: "i32" },
  mdb_get: { parameters: ["pointer", "u32", "buffer", "buffer"], result: "i32" },
  mdb_put: { parameters: ["pointer", "u32", "buffer", "buffer", "u32"], result: "i32" },
  mdb_del: { parameters: ["pointer", "u32", "buffer", "pointer"], result: "i32" },
  mdb_stat: { parameters: ["pointer", "u32", "buffer"], result: "i32" },
  mdb_cursor_open: { parameters: ["pointer", "u32", "buffer"], result: "i32" },
  mdb_cursor_get: { parameters: ["pointer", "buffer", "buffer", "u32"], result: "i32" },
  mdb_cursor_close: { parameters: ["pointer"], result: "void" },
} as const satisfies Deno.ForeignLibraryInterface;

type Symbols = Deno.DynamicLibrary<typeof SYMBOLS>["symbols"];

/** A loaded liblmdb. */
export interface Lmdb {
  /** The path or name the library was loaded from. */
  readonly path: string;
  /** The library's version, e.g. `"0.9.24"`. */
  readonly version: string;
  /** The raw FFI symbols; use {@linkcode Env} instead. */
  readonly symbols: Symbols;
}

const loaded = new Map<string, Lmdb>();

/** The default library name: Debian's `liblmdb0` package installs `liblmdb.so.0`. */
export const DEFAULT_LIBLMDB = Deno.build.os === "darwin" ? "liblmdb.dylib" : "liblmdb.so.0";

/**
 * Loads liblmdb (once per path) and checks it is LMDB 0.9.x, the data format
 * vere uses. The path is `options.libraryPath`, else `$SEGURO_LIBLMDB`, else
 * {@linkcode DEFAULT_LIBLMDB}.
 */
export function openLmdb(options: { libraryPath?: string } = {}): Lmdb {
  if (Deno.build.os === "windows") {
    throw new LmdbError("Seguro's liblmdb binding supports only 64-bit Linux and macOS");
  }
  const path = options.libraryPath ?? Deno.env.get("SEGURO_LIBLMDB") ?? DEFAULT_LIBLMDB;
  const cached = loaded.get(path);
  if (cached) return cached;
  let library: Deno.DynamicLibrary<typeof SYMBOLS>;
  try {
    library = Deno.dlopen(path, SYMBOLS);
  } catch (error) {
    if (error instanceof Deno.errors.NotCapable) throw error;
    const detail = path === DEFAULT_LIBLMDB ? "" : ` (could not load ${path}: ${error})`;
    throw new LmdbError(
      "liblmdb is not installed; install Debian's liblmdb0 (apt-get install liblmdb0) " +
        `or set SEGURO_LIBLMDB${detail}`,
    );
  }
  const parts = [new Int32Array(1), new Int32Array(1), new Int32Array(1)];
  library.symbols.mdb_version(parts[0], parts[1], parts[2]);
  const version = parts.map((p) => p[0]).join(".");
  if (parts[0][0] !== 0 || parts[1][0] !== 9) {
    library.close();
    throw new LmdbError(
      `${path} is LMDB ${version}, whose data format vere cannot read; ` +
        "install Debian's liblmdb0 (LMDB 0.9.x) or point SEGURO_LIBLMDB at an LMDB 0.9 library",
    );
  }
  const lmdb: Lmdb = { path, version, symbols: library.symbols };
  loaded.set(path, lmdb);
  return lmdb;
}

function strerror(symbols: Symbols, rc: number): string {
  const text = symbols.mdb_strerror(rc);
  return text === null ? `error ${rc}` : Deno.UnsafePointerView.getCString(text);
}

function check(symbols: Symbols, call: string, rc: number): void {
  if (rc !== 0) throw new LmdbError(`${call} failed: ${strerror(symbols, rc)}`, rc);
}

function readPointer(out: BigUint64Array): Deno.PointerValue {
  return Deno.UnsafePointer.create(out[0]);
}

const encoder = new TextEncoder();

function cString(text: string): Uint8Array<ArrayBuffer> {
  if (text.includes("\0")) throw new LmdbError(`The name ${JSON.stringify(text)} contains NUL`);
  return encoder.encode(text + "\0");
}

/** Options of {@linkcode Env.open}. */
export interface EnvOpenOptions {
  /** Open with `MDB_RDONLY`: no write transactions; data.mdb is never written. */
  readOnly?: boolean;
  /** `mdb_env_set_mapsize`; vere uses 1 TiB (address space only). Default 2^40. */
  mapSizeBytes?: number;
  /** `mdb_env_set_maxdbs`; vere uses 2 (`META`, `EVENTS`). Default 2. */
  maxDbs?: number;
  /** Which liblmdb to use; see {@linkcode openLmdb}. */
  libraryPath?: string;
}

/** Options of {@linkcode Txn.openDb}. */
export interface OpenDbOptions {
  /** `MDB_CREATE`: create the database if absent (write transactions only). */
  create?: boolean;
  /** `MDB_INTEGERKEY`: keys are native-endian unsigned integers (vere's `EVENTS`). */
  integerKey?: boolean;
}

/** Statistics of one database (`MDB_stat`). */
export interface DbStat {
  /** Number of key/value pairs. */
  entries: number;
  /** Height of the B-tree. */
  depth: number;
  /** Page size in bytes. */
  pageSizeBytes: number;
  /** Pages: branch, leaf and overflow. */
  branchPages: number;
  /** Leaf pages. */
  leafPages: number;
  /** Overflow pages (values too large for a leaf). */
  overflowPages: number;
}

/**
 * An open LMDB environment (a directory holding data.mdb and lock.mdb). Open
 * each environment at most once per process: LMDB's locks are per process.
 */
export class Env {
  readonly #symbols: Symbols;
  #handle: Deno.PointerValue;
  #inTxn = false;
  /** The environment's directory. */
  readonly dir: string;
  /** Whether the environment was opened `MDB_RDONLY`. */
  readonly readOnly: boolean;

  private constructor(symbols: Symbols, handle: Deno.PointerValue, dir: string, readOnly: boolean) {
    this.#symbols = symbols;
    this.#handle = handle;
    this.dir = dir;
    this.readOnly = readOnly;
  }

  /**
   * Opens the environment in directory `dir`, which must exist. The defaults
   * are vere's: map size 1 TiB, two named databases.
   */
  static open(dir: string, options: EnvOpenOptions = {}): Env {
    const { readOnly = false, mapSizeBytes = MAP_SIZE_BYTES_DEFAULT, maxDbs = 2 } = options;
    if (!Number.isSafeInteger(mapSizeBytes) || mapSizeBytes <= 0) {
      throw new LmdbError(`The map size ${mapSizeBytes} is not a positive integer of bytes`);
    }
    const symbols = openLmdb({ libraryPath: options.libraryPath }).symbols;
    const out = new BigUint64Array(1);
    check(symbols, "mdb_env_create", symbols.mdb_env_create(out));
    const handle = readPointer(out);
    try {
      check(symbols, "mdb_env_set_maxdbs", symbols.mdb_env_set_maxdbs(handle, maxDbs));
      check(
        symbols,
        "mdb_env_set_mapsize",
        symbols.mdb_env_set_mapsize(handle, BigInt(mapSizeBytes)),
      );
      // MDB_NOTLS ties a reader slot to its transaction rather than to the
      // thread, so nested read transactions work; it does not change the files.
      const flags = (readOnly ? MDB_RDONLY : 0) | MDB_NOTLS;
      const rc = symbols.mdb_env_open(handle, cString(dir), flags, 0o600); // an event log holds keys
      if (rc !== 0) {
        throw new LmdbError(`mdb_env_open of ${dir} failed: ${strerror(symbols, rc)}`, rc);
      }
    } catch (error) {
      // LMDB requires mdb_env_close even after a failed mdb_env_open.
      symbols.mdb_env_close(handle);
      throw error;
    }
    return new Env(symbols, handle, dir, readOnly);
  }

  /** Runs `fn` in a read-only transaction, committed on return and aborted on throw. */
  readTxn<T>(fn: (txn: Txn) => T): T {
    return this.#run(true, fn);
  }

  /**
   * Runs `fn` in a write transaction, committed (durably: the env is not
   * `MDB_NOSYNC`) on return and aborted on throw. Never hold one on a live pier.
   */
  writeTxn<T>(fn: (txn: Txn) => T): T {
    if (this.readOnly) {
      throw new LmdbError(`The environment ${this.dir} is read-only; open it writable to write`);
    }
    return this.#run(false, fn);
  }

  #run<T>(readOnly: boolean, fn: (txn: Txn) => T): T {
    const env = this.#live();
    const out = new BigUint64Array(1);
    const rc = this.#symbols.mdb_txn_begin(env, null, readOnly ? MDB_RDONLY : 0, out);
    check(this.#symbols, "mdb_txn_begin", rc);
    const txn = new Txn(this.#symbols, readPointer(out), readOnly);
    this.#inTxn = true;
    let result: T;
    try {
      result = fn(txn);
      if (result instanceof Promise) {
        throw new LmdbError("A transaction callback returned a promise; make it synchronous");
      }
    } catch (error) {
      txn.end(false);
      this.#inTxn = false;
      throw error;
    }
    this.#inTxn = false;
    txn.end(true);
    return result;
  }

  #live(): Deno.PointerValue {
    if (this.#handle === null) {
      throw new LmdbError(`The environment ${this.dir} is closed; open it again`);
    }
    return this.#handle;
  }

  /** Closes the environment; it must have no transaction running. Idempotent. */
  close(): void {
    if (this.#handle === null) return;
    if (this.#inTxn) {
      throw new LmdbError(`The environment ${this.dir} has a transaction running; end it first`);
    }
    this.#symbols.mdb_env_close(this.#handle);
    this.#handle = null;
  }
}

/** A database handle, valid only in the transaction that opened it. */
export class Db {
  /** The database's name (`META`, `EVENTS`). */
  readonly name: string;
  /** The `MDB_dbi` number. */
  readonly dbi: number;
  /** The transaction that opened it. */
  readonly txn: Txn;
  /** Creates a handle; use {@linkcode Txn.openDb}. */
  constructor(name: string, dbi: number, txn: Txn) {
    this.name = name;
    this.dbi = dbi;
    this.txn = txn;
  }
}

/** A running transaction; only valid inside its {@linkcode Env.readTxn} / `writeTxn` callback. */
export class Txn {
  readonly #symbols: Symbols;
  #handle: Deno.PointerValue;
  /** Whether the transaction is read-only. */
  readonly readOnly: boolean;
  // Scratch MDB_val structs, reused by every call (calls are synchronous).
  readonly #key = new Uint8Array(MDB_VAL_BYTES);
  readonly #keyView = new DataView(this.#key.buffer);
  readonly #val = new Uint8Array(MDB_VAL_BYTES);
  readonly #valView = new DataView(this.#val.buffer);
  readonly #cursors = new Set<Deno.PointerValue>();

  /** Wraps an `MDB_txn*`; use {@linkcode Env.readTxn} or `writeTxn`. */
  constructor(symbols: Symbols, handle: Deno.PointerValue, readOnly: boolean) {
    this.#symbols = symbols;
    this.#handle = handle;
    this.readOnly = readOnly;
  }

  /** Commits (`commit`) or aborts the transaction; called by {@linkcode Env}. */
  end(commit: boolean): void {
    const handle = this.#live();
    // Cursors of abandoned walks: closing before the txn ends is valid for
    // both kinds (a write txn would free them itself, a read txn would not).
    for (const cursor of this.#cursors) this.#symbols.mdb_cursor_close(cursor);
    this.#cursors.clear();
    this.#handle = null;
    if (commit) check(this.#symbols, "mdb_txn_commit", this.#symbols.mdb_txn_commit(handle));
    else this.#symbols.mdb_txn_abort(handle);
  }

  #live(): Deno.PointerValue {
    if (this.#handle === null) {
      throw new LmdbError("The transaction has ended; use it only inside its callback");
    }
    return this.#handle;
  }

  #check(db: Db): number {
    if (db.txn !== this) {
      throw new LmdbError(`The handle of ${db.name} belongs to another transaction; reopen it`);
    }
    return db.dbi;
  }

  /**
   * Opens the named database. Its handle lives as long as this transaction.
   * Without `create`, a missing database is an error naming it.
   */
  openDb(name: string, options: OpenDbOptions = {}): Db {
    const txn = this.#live();
    const flags = (options.create ? MDB_CREATE : 0) | (options.integerKey ? MDB_INTEGERKEY : 0);
    const out = new Uint32Array(1);
    const rc = this.#symbols.mdb_dbi_open(txn, cString(name), flags, out);
    if (rc !== 0) {
      throw new LmdbError(`mdb_dbi_open of ${name} failed: ${strerror(this.#symbols, rc)}`, rc);
    }
    const db = new Db(name, out[0], this);
    if (options.integerKey) {
      const got = new Uint32Array(1);
      check(this.#symbols, "mdb_dbi_flags", this.#symbols.mdb_dbi_flags(txn, out[0], got));
      if ((got[0] & MDB_INTEGERKEY) === 0) {
        throw new LmdbError(`The database ${name} is not MDB_INTEGERKEY; it is not vere's`);
      }
    }
    return db;
  }

  /** The value at `key` (a copy), or `undefined` when absent. */
  get(db: Db, key: Uint8Array): Uint8Array | undefined {
    const txn = this.#live();
    const dbi = this.#check(db);
    this.#setVal(this.#keyView, key);
    const rc = this.#symbols.mdb_get(txn, dbi, this.#key, this.#val);
    if (rc === MDB_NOTFOUND) return undefined;
    check(this.#symbols, `mdb_get in ${db.name}`, rc);
    return copyVal(this.#valView);
  }

  /**
   * Stores `value` at `key`. With `noOverwrite`, an existing key is an
   * `LmdbError` with code {@linkcode MDB_KEYEXIST}.
   */
  put(db: Db, key: Uint8Array, value: Uint8Array, options: { noOverwrite?: boolean } = {}): void {
    const txn = this.#live();
    const dbi = this.#check(db);
    if (this.readOnly) throw new LmdbError("The transaction is read-only; use writeTxn to put");
    this.#setVal(this.#keyView, key);
    this.#setVal(this.#valView, value);
    const flags = options.noOverwrite ? MDB_NOOVERWRITE : 0;
    check(
      this.#symbols,
      `mdb_put in ${db.name}`,
      this.#symbols.mdb_put(txn, dbi, this.#key, this.#val, flags),
    );
  }

  /** Deletes `key` from `db`; false when it was absent. */
  del(db: Db, key: Uint8Array): boolean {
    const txn = this.#live();
    const dbi = this.#check(db);
    if (this.readOnly) throw new LmdbError("The transaction is read-only; use writeTxn to delete");
    this.#setVal(this.#keyView, key);
    const rc = this.#symbols.mdb_del(txn, dbi, this.#key, null);
    if (rc === MDB_NOTFOUND) return false;
    check(this.#symbols, `mdb_del in ${db.name}`, rc);
    return true;
  }

  /**
   * Walks `db` in key order from the first key `>= from` (or the start),
   * yielding copies `[key, value]`. The cursor is closed when the walk ends
   * or is returned from, else when the transaction ends; use the generator
   * only inside the transaction.
   */
  *entries(db: Db, options: { from?: Uint8Array } = {}): Generator<[Uint8Array, Uint8Array]> {
    const dbi = this.#check(db);
    const out = new BigUint64Array(1);
    check(
      this.#symbols,
      `mdb_cursor_open in ${db.name}`,
      this.#symbols.mdb_cursor_open(this.#live(), dbi, out),
    );
    const cursor = readPointer(out);
    this.#cursors.add(cursor);
    // Own MDB_val structs: get/put may run while this generator is suspended.
    const key = new Uint8Array(MDB_VAL_BYTES);
    const keyView = new DataView(key.buffer);
    const val = new Uint8Array(MDB_VAL_BYTES);
    const valView = new DataView(val.buffer);
    try {
      let op = MDB_FIRST;
      if (options.from !== undefined) {
        this.#setVal(keyView, options.from);
        op = MDB_SET_RANGE;
      }
      for (;;) {
        this.#live();
        const rc = this.#symbols.mdb_cursor_get(cursor, key, val, op);
        if (rc === MDB_NOTFOUND) return;
        check(this.#symbols, `mdb_cursor_get in ${db.name}`, rc);
        yield [copyVal(keyView), copyVal(valView)];
        op = MDB_NEXT;
      }
    } finally {
      // Absent from the set when end() has closed it already.
      if (this.#cursors.delete(cursor)) this.#symbols.mdb_cursor_close(cursor);
    }
  }

  /** Statistics of `db`; `entries` is its number of keys. */
  stat(db: Db): DbStat {
    const txn = this.#live();
    const dbi = this.#check(db);
    const out = new Uint8Array(MDB_STAT_BYTES);
    check(this.#symbols, `mdb_stat of ${db.name}`, this.#symbols.mdb_stat(txn, dbi, out));
    const view = new DataView(out.buffer);
    const size = (offset: number) => Number(view.getBigUint64(offset, true));
    return {
      pageSizeBytes: view.getUint32(0, true),
      depth: view.getUint32(4, true),
      branchPages: size(8),
      leafPages: size(16),
      overflowPages: size(24),
      entries: size(32),
    };
  }

  // Points an MDB_val at `bytes`. Deno passes JS memory to C without copying;
  // `bytes` stays alive (and unmoved) for the synchronous call that uses it.
  #setVal(view: DataView, bytes: Uint8Array): void {
    view.setBigUint64(0, BigInt(bytes.byteLength), true);
    const pointer = bytes.byteLength === 0 ? null : Deno.UnsafePointer.of(bytes);
    view.setBigUint64(8, BigInt(Deno.UnsafePointer.value(pointer)), true);
  }
}

// Copies the bytes an MDB_val points at (in the mmap) into JS memory.
function copyVal(view: DataView): Uint8Array {
  const length = Number(view.getBigUint64(0, true));
  const out = new Uint8Array(length);
  if (length === 0) return out;
  const pointer = Deno.UnsafePointer.create(view.getBigUint64(8, true));
  if (pointer === null) throw new LmdbError("liblmdb returned a null value pointer");
  Deno.UnsafePointerView.copyInto(pointer, out);
  return out;
}

/** The `EVENTS` key of event `eve`: a u64, 8 bytes little-endian (x86-64/arm64 native). */
export function eventKey(eve: number): Uint8Array {
  if (!Number.isSafeInteger(eve) || eve < 0) {
    throw new LmdbError(`The event number ${eve} is not a non-negative safe integer`);
  }
  const key = new Uint8Array(8);
  new DataView(key.buffer).setBigUint64(0, BigInt(eve), true);
  return key;
}

/** The event number of an `EVENTS` key (8 bytes little-endian). */
export function eventOfKey(key: Uint8Array): number {
  if (key.byteLength !== 8) {
    throw new LmdbError(`The EVENTS key has ${key.byteLength} bytes, not 8; it is not vere's`);
  }
  const eve = new DataView(key.buffer, key.byteOffset, 8).getBigUint64(0, true);
  if (eve > BigInt(Number.MAX_SAFE_INTEGER)) {
    throw new LmdbError(`The event number ${eve} is beyond 2^53; Seguro cannot number it`);
  }
  return Number(eve);
}
