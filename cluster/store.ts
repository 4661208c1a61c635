/**
 * The durable store of one Seguro node: the Raft hard state, log, snapshot
 * name and membership, the node's identity and cluster secret, its local
 * settings and the applied state, in one SQLite database (`seguro.db`, WAL)
 * in the node's data dir, locked by `seguro.lock`.
 *
 * The store alone holds the connection. The tables of the applied state and
 * of the settings are read and written through typed modules in
 * cluster/storage/ that it constructs: {@linkcode Store.ships},
 * {@linkcode Store.images}, {@linkcode Store.machineSettings} (replicated)
 * and {@linkcode Store.localSettings} (this node's own). No SQL lives
 * anywhere else.
 *
 * The node driver calls {@linkcode Store.persist} once per Ready: one
 * transaction for the snapshot, the entries and the hard state together.
 * A commit is not yet durable: the connection runs `synchronous=OFF`, and
 * {@linkcode Store.flush} makes every transaction committed so far durable
 * with one fdatasync of the write-ahead log on another thread
 * (cluster/storage/wal_flush.ts), then tells the listener the sequence
 * number of the last durable transaction ({@linkcode Store.written} numbers
 * them). The log is sequential, so a crash loses a suffix of transactions,
 * never a middle. Nothing in a batch may be acknowledged to anyone before
 * its flush has completed (group commit: one flush covers every Ready
 * written while the previous one ran).
 *
 * Every table is keyed by `group_id`, so hosting one Raft group per ship
 * later needs no format change; a `Store` serves the group named in its
 * identity.
 *
 * ```ts ignore
 *
 * const store = Store.open("/var/lib/seguro");
 * const initial = store.loadRaftState(); // feed to new RaftNode(config, initial)
 * store.persist({ hardState: { term: 2, vote: 1, commit: 0 }, entries: [] });
 * store.close();
 * ```
 *
 * @module
 */

import { DatabaseSync, type StatementSync } from "node:sqlite";
import type { ConfState, Entry, HardState, RaftInitialState, SnapshotMeta } from "../core/mod.ts";
import { NO_NODE } from "../core/mod.ts";
import { ENTRY_TYPE_CODE, entryTypeCode, entryTypeOfCode } from "./entry_type.ts";
import { ShipTables } from "./storage/ship_tables.ts";
import { ImageTables } from "./storage/image_tables.ts";
import { MachineSettings } from "./storage/machine_settings.ts";
import { LocalSettings, type LocalSettingsInit } from "./storage/local_settings.ts";
import { SnapshotStage } from "./storage/snapshot_stage.ts";
import { EntryPayloads } from "./storage/entry_payloads.ts";
import { FileSync, type Flusher, WalFlusher } from "./storage/wal_flush.ts";
import {
  makePrivateDir,
  openDirProblem,
  PRIVATE_FILE_MODE,
  privatizeDir,
} from "./private_files.ts";

/** Version of the database schema this Seguro writes; see {@linkcode MIGRATIONS}. */
export const SCHEMA_VERSION = 5;

/** Name of the database file inside a data dir. */
export const DATABASE_FILE = "seguro.db";

/** Name of the file holding the pid of the process that has the data dir open (advisory). */
export const PID_FILE = "seguro.pid";

/** The file whose `flock` says a process has the data dir open. */
export const LOCK_FILE = "seguro.lock";

/**
 * Log bytes (estimated) after which the log is copied into the database (a
 * checkpoint), so that SQLite can start it over. See {@linkcode Store.holding}.
 */
const CHECKPOINT_AFTER_BYTES = 4 * 1024 * 1024;

/** What one transaction adds to the log besides entry bytes (pages it rewrites), roughly. */
const TRANSACTION_BYTES_ESTIMATE = 8 * 1024;

/** The log file is cut back to this size when SQLite starts it over. */
const WAL_SIZE_LIMIT_BYTES = 64 * 1024 * 1024;

/** SQLite `application_id` marking a Seguro database: 'SGUR'. */
export const APPLICATION_ID = 0x53475552;

/** How long a second opener waits for the database lock before giving up. */
const BUSY_TIMEOUT_MS = 50;

/** Smallest accepted cluster secret. */
const SECRET_BYTES_MIN = 16;

/** SQLite's error code for "database is locked". */
const SQLITE_BUSY = 5;

/** The 16 bytes every SQLite 3 database file starts with. */
const SQLITE_HEADER = new TextEncoder().encode("SQLite format 3\0");

/** A problem with a data dir or its use: one line saying what is wrong and what to do. */
export class StoreError extends Error {
  /** Creates the error; `message` is a complete sentence without a trailing period. */
  constructor(message: string, options?: ErrorOptions) {
    super(message, options);
    this.name = "StoreError";
  }
}

/**
 * A caller broke a rule of the store (a bug in the node driver, never a
 * condition to handle): the message names the offending values. Nothing was
 * written.
 */
export class StoreInvariantError extends StoreError {
  /** Creates the error; `message` names the broken rule and the values. */
  constructor(message: string) {
    super(message);
    this.name = "StoreInvariantError";
  }
}

/** Who a data dir belongs to: fixed when the dir is created. */
export interface StoreIdentity {
  /** Cluster id: 32 lowercase hex characters. */
  readonly clusterId: string;
  /** This node's Raft id (>= 1). */
  readonly nodeId: number;
  /** Raft group this store serves (>= 0). */
  readonly groupId: number;
}

/**
 * What one Ready asks to make durable, written in this order in one
 * transaction: `snapshot` (replaces the whole log, as the core's own log does
 * when it installs one), `entries` (an entry at index i replaces every stored
 * entry >= i), `hardState`, then `applied`.
 */
export interface PersistBatch {
  /** New hard state, or undefined when unchanged. */
  readonly hardState?: HardState;
  /** Entries to write, contiguous, possibly overwriting a suffix of the log. */
  readonly entries: readonly Entry[];
  /** Snapshot installed from a leader, or undefined. */
  readonly snapshot?: SnapshotMeta;
  /** Index the application has durably applied (never decreases), or undefined. */
  readonly applied?: number;
  /**
   * Writes to the applied-state tables that bring the state to `applied`
   * (as `applyTransaction`'s body), run in the same transaction after the
   * entries: one commit per Ready instead of two. Requires `applied`.
   */
  readonly apply?: () => void;
}

/** Counters since the store was opened, for benchmarks. */
export interface StoreStats {
  /** Flushes completed (each one fdatasync of the WAL, covering every transaction before it). */
  readonly fsyncs: number;
  /** Checkpoints completed (the log copied into the database, and the database fsynced). */
  readonly checkpoints: number;
  /** Calls of `persist`, `compact`, `applyTransaction` and local setting writes, including those with nothing to write. */
  readonly transactions: number;
  /** Log entries written. */
  readonly entriesWritten: number;
  /** Payload bytes (`Entry.data`) of the entries written. */
  readonly bytesWritten: number;
}

/** One forward migration: the SQL that takes the schema from `version - 1` to `version`. */
export interface Migration {
  /** Schema version after this migration. */
  readonly version: number;
  /** Statements to run, inside the migration's transaction. */
  readonly sql: string;
}

/**
 * Every schema change, in order; index i holds version i + 1. A new version
 * is one more entry here plus `SCHEMA_VERSION` raised to match. Old data dirs
 * run the missing entries, in one transaction, when opened.
 */
export const MIGRATIONS: readonly Migration[] = [
  {
    version: 1,
    sql: `
      CREATE TABLE identity (
        singleton INTEGER PRIMARY KEY CHECK (singleton = 1),
        cluster_id TEXT NOT NULL,
        node_id INTEGER NOT NULL,
        group_id INTEGER NOT NULL,
        secret BLOB NOT NULL,
        created_at_ms INTEGER NOT NULL
      ) STRICT;
      CREATE TABLE hard_state (
        group_id INTEGER PRIMARY KEY,
        term INTEGER NOT NULL,
        vote INTEGER NOT NULL,
        commit_index INTEGER NOT NULL,
        applied_index INTEGER NOT NULL
      ) STRICT;
      CREATE TABLE log_entry (
        group_id INTEGER NOT NULL,
        idx INTEGER NOT NULL,
        term INTEGER NOT NULL,
        type INTEGER NOT NULL,
        data BLOB NOT NULL,
        PRIMARY KEY (group_id, idx)
      ) STRICT;
      CREATE TABLE snapshot_meta (
        group_id INTEGER PRIMARY KEY,
        idx INTEGER NOT NULL,
        term INTEGER NOT NULL
      ) STRICT;
      CREATE TABLE snapshot_member (
        group_id INTEGER NOT NULL,
        node_id INTEGER NOT NULL,
        learner INTEGER NOT NULL CHECK (learner IN (0, 1)),
        PRIMARY KEY (group_id, node_id)
      ) STRICT;
      CREATE TABLE setting (
        key TEXT PRIMARY KEY,
        value TEXT NOT NULL
      ) STRICT;
    `,
  },
  {
    // The applied state of ships (cluster/ships.ts): each ship's event log.
    version: 2,
    sql: `
      CREATE TABLE ship (
        ship BLOB PRIMARY KEY,
        fake INTEGER NOT NULL CHECK (fake IN (0, 1)),
        optimism INTEGER NOT NULL,
        life INTEGER NOT NULL,
        last_eve INTEGER NOT NULL,
        last_mug INTEGER NOT NULL,
        bytes INTEGER NOT NULL,
        added_index INTEGER NOT NULL
      ) STRICT;
      CREATE TABLE event (
        ship BLOB NOT NULL,
        eve INTEGER NOT NULL,
        mug INTEGER NOT NULL,
        job BLOB NOT NULL,
        entry_index INTEGER NOT NULL,
        PRIMARY KEY (ship, eve)
      ) STRICT;
    `,
  },
  {
    // Epoch snapshots (image.bin) of ships (cluster/images.ts), in checksummed chunks.
    version: 3,
    sql: `
      CREATE TABLE image (
        ship BLOB NOT NULL,
        epoch INTEGER NOT NULL,
        size INTEGER NOT NULL,
        sha256 BLOB,
        PRIMARY KEY (ship, epoch)
      ) STRICT;
      CREATE TABLE image_chunk (
        ship BLOB NOT NULL,
        epoch INTEGER NOT NULL,
        offset INTEGER NOT NULL,
        data BLOB NOT NULL,
        PRIMARY KEY (ship, epoch, offset)
      ) STRICT;
    `,
  },
  {
    // The replicated settings move to the state machine's own table (keys
    // 'member.*' and 'ship.*', cluster/storage/machine_settings.ts); what
    // stays is this node's own (cluster/storage/local_settings.ts).
    version: 4,
    sql: `
      CREATE TABLE machine_setting (
        key TEXT PRIMARY KEY,
        value TEXT NOT NULL
      ) STRICT;
      INSERT INTO machine_setting (key, value)
        SELECT key, value FROM setting
        WHERE substr(key, 1, 7) = 'member.' OR substr(key, 1, 5) = 'ship.';
      DELETE FROM setting WHERE substr(key, 1, 7) = 'member.' OR substr(key, 1, 5) = 'ship.';
      ALTER TABLE setting RENAME TO local_setting;
    `,
  },
  {
    // Compaction and snapshots (cluster/driver.ts, cluster/snapshot_stream.ts):
    // - events remember the term of their entry (the index alone is not one entry once
    //   the log is compacted);
    // - events and image chunks are stored once: the row points into the log entry that
    //   carried the bytes (job_at/data_at >= 0, the entry listed in entry_ref, which
    //   compaction keeps), or holds them itself (-1: installed from a snapshot, or older);
    // - a ship's log may start after event 1 (first_eve, 'seguro ship chop');
    // - a snapshot being received is staged until whole (cluster/storage/snapshot_stage.ts).
    version: 5,
    sql: `
      ALTER TABLE event ADD COLUMN entry_term INTEGER NOT NULL DEFAULT 0;
      ALTER TABLE event ADD COLUMN job_at INTEGER NOT NULL DEFAULT -1;
      ALTER TABLE event ADD COLUMN job_len INTEGER NOT NULL DEFAULT 0;
      ALTER TABLE image_chunk ADD COLUMN entry_index INTEGER NOT NULL DEFAULT 0;
      ALTER TABLE image_chunk ADD COLUMN data_at INTEGER NOT NULL DEFAULT -1;
      ALTER TABLE image_chunk ADD COLUMN data_len INTEGER NOT NULL DEFAULT 0;
      ALTER TABLE ship ADD COLUMN first_eve INTEGER NOT NULL DEFAULT 1;
      CREATE TABLE entry_ref (
        group_id INTEGER NOT NULL,
        idx INTEGER NOT NULL,
        PRIMARY KEY (group_id, idx)
      ) STRICT, WITHOUT ROWID;
      CREATE TABLE snap_offer (
        singleton INTEGER PRIMARY KEY CHECK (singleton = 1),
        idx INTEGER NOT NULL,
        term INTEGER NOT NULL,
        conf TEXT NOT NULL,
        manifest BLOB NOT NULL
      ) STRICT;
      CREATE TABLE snap_event (
        ship BLOB NOT NULL,
        eve INTEGER NOT NULL,
        mug INTEGER NOT NULL,
        job BLOB NOT NULL,
        entry_index INTEGER NOT NULL,
        entry_term INTEGER NOT NULL,
        PRIMARY KEY (ship, eve)
      ) STRICT;
      CREATE TABLE snap_image_chunk (
        ship BLOB NOT NULL,
        epoch INTEGER NOT NULL,
        offset INTEGER NOT NULL,
        data BLOB NOT NULL,
        PRIMARY KEY (ship, epoch, offset)
      ) STRICT;
    `,
  },
];

/** Held prepared statements (compiled once per open). */
interface Statements {
  begin: StatementSync;
  commit: StatementSync;
  rollback: StatementSync;
  insertEntry: StatementSync;
  deleteEntriesFrom: StatementSync;
  deleteUnreferencedUpTo: StatementSync;
  deleteUnreferencedFrom: StatementSync;
  termAt: StatementSync;
  lastEntry: StatementSync;
  selectEntries: StatementSync;
  updateHardState: StatementSync;
  selectHardState: StatementSync;
  updateSnapshot: StatementSync;
  selectSnapshot: StatementSync;
  deleteMembers: StatementSync;
  insertMember: StatementSync;
  selectMembers: StatementSync;
}

/** Durable state of the group, cached in memory (the store is the only writer). */
interface GroupState {
  term: number;
  vote: number;
  commit: number;
  applied: number;
  snapshot: SnapshotMeta;
  lastIndex: number;
  lastTerm: number;
}

/**
 * One open data dir. Holds an exclusive SQLite lock for its whole life, so
 * no second process can open the same dir; {@linkcode Store.close} releases it
 * (and so does the OS when the process dies).
 */
export class Store {
  /** The data dir. */
  readonly dir: string;
  /** Who this data dir belongs to. */
  readonly identity: StoreIdentity;

  #db: DatabaseSync | undefined;
  readonly #onDisk: boolean;
  #st: Statements;
  readonly #ships: ShipTables;
  readonly #images: ImageTables;
  readonly #machineSettings: MachineSettings;
  readonly #localSettings: LocalSettings;
  readonly #snapshotStage: SnapshotStage;
  #secret: Uint8Array;
  #state: GroupState;
  #fsyncs = 0;
  /** Transactions committed (their sequence numbers are 1..#written) and how many are durable. */
  #written = 0;
  #durable = 0;
  /** The transaction an in-flight flush makes durable (0: none in flight). */
  #flushTarget = 0;
  #flushAgain = false;
  #onDurable: ((written: number) => void) | undefined;
  #onFlushError: ((e: StoreError) => void) | undefined;
  #onWritable: (() => void) | undefined;
  /**
   * A checkpoint in progress (see {@linkcode holding}): `drain` waits for
   * every write to be flushed, `dbSync` for the database's fsync after the
   * copy. Ready writes wait for both.
   */
  #hold: "none" | "drain" | "dbSync" = "none";
  #checkpoints = 0;
  readonly #dbFile: FileSync | undefined;
  readonly #flusher: Flusher;
  readonly #memory: MemoryFlusher | undefined;
  readonly #lock: Deno.FsFile | undefined;
  #bytesSinceCheckpoint = 0;
  #transactions = 0;
  #entriesWritten = 0;
  #bytesWritten = 0;

  private constructor(
    dir: string,
    db: DatabaseSync,
    lock: Deno.FsFile | undefined,
    manualFlush = false,
  ) {
    this.dir = dir;
    this.#db = db;
    this.#onDisk = lock !== undefined;
    this.#lock = lock;
    this.#st = prepareStatements(db, this.#onDisk);
    if (this.#onDisk) {
      // Commits only hand pages to the OS; flush() makes them durable, and the
      // store checkpoints itself (#checkpoint), never SQLite on its own.
      db.exec("PRAGMA synchronous = OFF");
      db.exec("PRAGMA wal_autocheckpoint = 0");
      db.exec(`PRAGMA journal_size_limit = ${WAL_SIZE_LIMIT_BYTES}`);
      this.#flusher = new WalFlusher(dbPath(dir), dir);
      this.#dbFile = new FileSync(dbPath(dir));
    } else {
      // In memory (the simulator): everything since the last flush is one open
      // transaction, which a crash may roll back (see crash()).
      this.#memory = new MemoryFlusher(db, manualFlush);
      this.#flusher = this.#memory;
    }
    const row = db.prepare(
      "SELECT cluster_id, node_id, group_id, secret FROM identity WHERE singleton = 1",
    ).get();
    if (row === undefined) {
      throw new StoreError(
        `${
          dbPath(dir)
        } has no identity row; remove this node from the cluster ('seguro member remove' on another node) and join again with a fresh data dir`,
      );
    }
    this.identity = {
      clusterId: String(row.cluster_id),
      nodeId: Number(row.node_id),
      groupId: Number(row.group_id),
    };
    this.#secret = new Uint8Array(row.secret as Uint8Array);
    this.#state = this.#readState();
    const entries = new EntryPayloads(db, this.identity.groupId);
    this.#ships = new ShipTables(db, entries);
    this.#images = new ImageTables(db, entries);
    this.#machineSettings = new MachineSettings(db);
    const durably = (body: () => void) => {
      this.#check();
      this.#transactions++;
      this.#write(body);
      this.flush();
    };
    this.#localSettings = new LocalSettings(db, durably);
    // Staging need not be durable chunk by chunk: a crash loses a suffix of
    // what was staged (the WAL is sequential), which is pulled again; the
    // install itself is in a persist the driver flushes.
    this.#snapshotStage = new SnapshotStage(
      db,
      { ships: this.#ships, images: this.#images },
      (body) => {
        this.#check();
        this.#transactions++;
        this.#write(body);
      },
    );
  }

  /**
   * Creates a data dir: the directory (absent, or present and empty), the
   * database with its schema, identity, secret, founding membership and
   * settings. Returns the store open and locked.
   */
  static create(dir: string, init: StoreInit): Store {
    validateIdentity(init.identity);
    if (!(init.secret instanceof Uint8Array) || init.secret.length < SECRET_BYTES_MIN) {
      throw new StoreError(
        `The cluster secret has ${init.secret?.length} bytes; use at least ${SECRET_BYTES_MIN} random bytes`,
      );
    }
    validateConf(init.conf, "founding membership");
    let entries: Deno.DirEntry[];
    try {
      entries = [...Deno.readDirSync(dir)];
    } catch (e) {
      if (!(e instanceof Deno.errors.NotFound)) {
        throw new StoreError(`Cannot read ${dir} (${errorText(e)}); pass another --data-dir`);
      }
      entries = [];
    }
    if (entries.length > 0) {
      const what = entries.some((e) => e.name === DATABASE_FILE)
        ? "already holds a Seguro data dir"
        : "is not empty";
      throw new StoreError(
        `${dir} ${what}; use an empty or absent directory for a new data dir`,
      );
    }
    // The secret goes in here: the dir is 0700 however it was made, and the
    // database 0600 before SQLite opens it (its -wal and -shm take its mode).
    makePrivateDir(dir);
    try {
      Deno.writeFileSync(dbPath(dir), new Uint8Array(), {
        createNew: true,
        mode: PRIVATE_FILE_MODE,
      });
    } catch (e) {
      if (!(e instanceof Deno.errors.AlreadyExists)) throw e;
      throw new StoreError(
        `${dir} already holds a Seguro data dir; use an empty or absent directory`,
      );
    }
    let lock: Deno.FsFile | undefined = lockDir(dir);
    const db = new DatabaseSync(dbPath(dir));
    let locked = false;
    try {
      lockDatabase(db, dir);
      locked = true;
      db.exec("PRAGMA journal_mode = WAL");
      initialize(db, init, Date.now());
      const store = new Store(dir, db, lock);
      lock = undefined;
      writePidFile(dir);
      return store;
    } catch (e) {
      if (db.isTransaction) db.exec("ROLLBACK");
      db.close();
      lock?.close();
      // Leave the dir empty again so that `create` can be retried; unless
      // another process won the race to create it (then the files are its).
      if (locked) {
        for (const suffix of ["", "-wal", "-shm"]) {
          try {
            Deno.removeSync(dbPath(dir) + suffix);
          } catch {
            // Never created.
          }
        }
      }
      throw e;
    }
  }

  /**
   * Opens an existing data dir and takes its lock. Before writing anything it
   * checks that the dir holds a SQLite database written by a Seguro whose
   * schema this one can read, reading its first pages only (so a node starts
   * as fast on many GB as on a new dir; {@linkcode checkIntegrity}, run by
   * `seguro doctor`, reads them all). A failed open leaves `seguro.db`
   * unchanged.
   */
  static open(dir: string): Store {
    checkBeforeOpen(dir);
    const open = openDirProblem(dir, "The data dir");
    if (open !== undefined) throw new StoreError(open);
    privatizeDir(dir); // files of an older Seguro were 0644 in a 0700 dir
    let lock: Deno.FsFile | undefined = lockDir(dir);
    // A process killed -9 may have left commits the OS has not written yet:
    // make them durable before this node believes (and acknowledges) them.
    // Before SQLite opens the files: closing another descriptor of a file
    // would drop this process's POSIX locks on it.
    try {
      syncFilesOf(dbPath(dir));
    } catch (e) {
      lock.close();
      throw new StoreError(`Cannot flush ${dbPath(dir)} to disk (${errorText(e)}); check the disk`);
    }
    const db = new DatabaseSync(dbPath(dir));
    try {
      lockDatabase(db, dir);
      const version = Number(db.prepare("PRAGMA user_version").get()?.user_version);
      if (version < SCHEMA_VERSION) {
        db.exec("BEGIN IMMEDIATE");
        migrate(db, version);
        db.exec("COMMIT");
      }
      const store = new Store(dir, db, lock);
      lock = undefined;
      writePidFile(dir);
      return store;
    } catch (e) {
      if (db.isTransaction) db.exec("ROLLBACK");
      db.close();
      lock?.close();
      throw e;
    }
  }

  /**
   * A store in memory, for the whole-node simulator and unit tests: the same
   * schema and code, no file, no lock. `label` stands in for the data dir in
   * messages. A flush completes at once, unless `manualFlush` (the
   * simulator's disk, which completes flushes when it chooses:
   * {@linkcode completeFlushes}).
   */
  static inMemory(label: string, init: StoreInit, options: { manualFlush?: boolean } = {}): Store {
    validateIdentity(init.identity);
    validateConf(init.conf, "founding membership");
    const db = new DatabaseSync(":memory:");
    initialize(db, init, 0);
    db.exec("PRAGMA trusted_schema = OFF");
    return new Store(label, db, undefined, options.manualFlush ?? false);
  }

  /**
   * Simulates a crash of an in-memory store's machine: this object becomes
   * unusable and a new one opens what survived, reading its state again as
   * `open` would. Every transaction before the last completed flush
   * survives; those after it survive all (`keepUnflushed`, the OS wrote
   * them anyway) or none (a power loss).
   */
  crash(keepUnflushed: boolean): Store {
    this.#check();
    const memory = this.#memory;
    if (memory === undefined) {
      throw new StoreError("crash() is for in-memory stores (the simulator)");
    }
    const db = this.#db!;
    this.#db = undefined;
    memory.crash(keepUnflushed);
    return new Store(this.dir, db, undefined, memory.manual);
  }

  /**
   * The simulator's disk: completes the flushes requested so far (each
   * listener call runs now). Only for in-memory stores.
   */
  completeFlushes(): void {
    this.#check();
    this.#memory?.complete();
  }

  /** True when an in-memory store has a flush waiting for {@linkcode completeFlushes}. */
  get flushPending(): boolean {
    return this.#memory?.pending ?? false;
  }

  /** Sequence number of the last transaction committed (not necessarily durable). */
  get written(): number {
    return this.#written;
  }

  /** Sequence number of the last transaction known durable. */
  get durable(): number {
    return this.#durable;
  }

  /**
   * Who hears of flushes: `onDurable` with the sequence number of the last
   * durable transaction after each one; `onError` once if one fails (the
   * store is closed by then: the node must stop and restart).
   */
  listen(
    onDurable: (written: number) => void,
    onError: (e: StoreError) => void,
    onWritable?: () => void,
  ): void {
    this.#onDurable = onDurable;
    this.#onFlushError = onError;
    this.#onWritable = onWritable;
  }

  /**
   * True while a checkpoint runs: the driver takes no Ready until the
   * listener's `onWritable`. Once CHECKPOINT_AFTER_BYTES of log are written,
   * the store waits until every transaction is flushed (the log it copies
   * must be durable), copies the log into the database on this thread
   * (`wal_checkpoint(PASSIVE)` at `synchronous=OFF`: page copies into the
   * OS, a few ms of CPU), then fsyncs the database off the main thread;
   * only then may a write start the log over, on top of frames whose copy is
   * durable. A write that is not a Ready's (a setting, a snapshot chunk)
   * while that fsync runs makes it synchronously first (rare).
   */
  get holding(): boolean {
    return this.#hold !== "none";
  }

  /**
   * Makes the transactions up to `upTo` (default: every one committed so
   * far) durable, off the main thread; the listener hears when. One flush
   * runs at a time and covers everything committed before it starts; a
   * request it does not cover starts another right after it (group commit).
   */
  flush(upTo: number = this.#written): void {
    this.#check();
    invariant(
      upTo <= this.#written,
      () => `flush up to transaction ${upTo} asked for, but only ${this.#written} were written`,
    );
    if (upTo <= this.#durable) return;
    if (this.#flushTarget !== 0) {
      if (this.#flushTarget < upTo) this.#flushAgain = true;
      return;
    }
    const target = this.#written;
    this.#flushTarget = target;
    this.#flusher.sync((error) => {
      this.#flushTarget = 0;
      if (this.#db === undefined) return;
      if (error !== undefined) {
        this.#failFlush(error);
        return;
      }
      this.#fsyncs++;
      this.#durable = Math.max(this.#durable, target);
      if (this.#flushAgain) {
        this.#flushAgain = false;
        this.flush();
      }
      this.#maybeCheckpoint();
      this.#onDurable?.(this.#durable);
    });
  }

  /** After a flush: starts a checkpoint once the log has grown enough, or moves one on. */
  #maybeCheckpoint(): void {
    if (this.#dbFile === undefined) return;
    if (this.#hold === "none" && this.#bytesSinceCheckpoint >= CHECKPOINT_AFTER_BYTES) {
      this.#hold = "drain";
    }
    if (this.#hold !== "drain") return;
    if (this.#written !== this.#durable) {
      this.flush(); // a write after the last flush: it must be durable before its copy
      return;
    }
    this.#checkpoint();
  }

  /** Copies the durable log into the database, then fsyncs the database off the main thread. */
  #checkpoint(): void {
    try {
      this.#db!.prepare("PRAGMA wal_checkpoint(PASSIVE)").get();
    } catch (e) {
      this.#failFlush(e as Error);
      return;
    }
    this.#bytesSinceCheckpoint = 0;
    this.#hold = "dbSync";
    this.#dbFile!.sync((error) => {
      if (this.#db === undefined) return;
      if (error !== undefined) {
        this.#failFlush(error);
        return;
      }
      this.#checkpoints++;
      this.#hold = "none";
      this.#onWritable?.();
    });
  }

  #failFlush(error: Error): void {
    this.close();
    this.#onFlushError?.(
      new StoreError(
        `Flushing ${
          dbPath(this.dir)
        } to disk failed (${error.message}); the store is closed, fix the disk and restart the node`,
        { cause: error },
      ),
    );
  }

  /** A copy of the cluster secret. */
  secret(): Uint8Array {
    this.#check();
    return new Uint8Array(this.#secret);
  }

  /**
   * The applied ship state (tables `ship`, `event`): only the state machine
   * writes, inside {@linkcode applyTransaction}; everything else reads.
   */
  get ships(): ShipTables {
    this.#check();
    return this.#ships;
  }

  /** Ships' epoch snapshots (tables `image`, `image_chunk`): written like {@linkcode ships}. */
  get images(): ImageTables {
    this.#check();
    return this.#images;
  }

  /** The state machine's replicated settings: written like {@linkcode ships}. */
  get machineSettings(): MachineSettings {
    this.#check();
    return this.#machineSettings;
  }

  /**
   * A snapshot being received (staged chunk by chunk, each durable); a
   * `persist` with a snapshot installs it in the same transaction.
   */
  get snapshotStage(): SnapshotStage {
    this.#check();
    return this.#snapshotStage;
  }

  /** This node's own settings: each write durable in its own transaction. */
  get localSettings(): LocalSettings {
    this.#check();
    return this.#localSettings;
  }

  /**
   * The durable Raft state, ready for `new RaftNode(config, state)`: the
   * hard state, the snapshot (index 0, term 0, the founding membership when
   * never compacted), the entries after the snapshot in order, and the
   * applied index.
   */
  loadRaftState(): Required<RaftInitialState> {
    this.#check();
    const s = this.#state;
    const entries: Entry[] = [];
    let expected = s.snapshot.index + 1;
    for (const row of this.#st.selectEntries.iterate(this.identity.groupId, s.snapshot.index)) {
      const idx = Number(row.idx);
      const term = Number(row.term);
      const code = Number(row.type);
      const data = row.data as Uint8Array;
      const type = entryTypeOfCode(code);
      if (idx !== expected || type === undefined) {
        throw new StoreError(
          `${
            dbPath(this.dir)
          } holds log entry ${idx} (type ${code}) where entry ${expected} belongs; remove this node from the cluster ('seguro member remove' on another node) and join again with a fresh data dir`,
        );
      }
      entries.push({ index: idx, term, type, data });
      expected++;
    }
    return {
      hardState: { term: s.term, vote: s.vote, commit: s.commit },
      snapshot: s.snapshot,
      entries,
      applied: s.applied,
    };
  }

  /**
   * Runs `body` (writes to the applied-state tables through
   * {@linkcode Store.ships}, {@linkcode Store.images} and
   * {@linkcode Store.machineSettings}) and records `applied` as the applied index, in
   * one transaction that asks for no flush of its own: the write-ahead log is
   * sequential, so the next flush makes it durable,
   * and a crash before that loses a suffix of applied state together with
   * its applied index, which the node re-applies from the Raft log. The
   * stored commit index rises to at least `applied`.
   */
  applyTransaction(applied: number, body: () => void): void {
    this.#check();
    const old = this.#state;
    invariant(
      Number.isSafeInteger(applied) && applied >= old.applied && applied <= old.lastIndex,
      () =>
        `applied index ${applied} is outside ${old.applied}..${old.lastIndex} (stored applied..last index)`,
    );
    this.#transactions++;
    const commit = Math.max(old.commit, applied);
    this.#write(() => {
      body();
      this.#st.updateHardState.run(old.term, old.vote, commit, applied, this.identity.groupId);
    });
    this.#state = { ...old, commit, applied };
  }

  /**
   * Writes one Ready in one transaction: snapshot, then entries, then hard
   * state, then the applied index. Durable once a {@linkcode flush} started
   * after it completes. Throws
   * {@linkcode StoreInvariantError}, writing nothing, when the batch breaks
   * a rule (non-contiguous entries, commit going back, truncating committed
   * entries, ...).
   */
  persist(batch: PersistBatch): void {
    this.#check();
    this.#transactions++;
    const old = this.#state;
    const next: GroupState = { ...old };
    const snap = batch.snapshot;
    if (snap !== undefined) {
      validateSnapshot(snap, old.snapshot);
      const committedTerm = this.#termAt(old.commit) ?? 0;
      invariant(
        snap.term >= committedTerm,
        () =>
          `snapshot (index ${snap.index}, term ${snap.term}) is older than the committed entry ${old.commit} (term ${committedTerm})`,
      );
      next.snapshot = snap;
      next.lastIndex = snap.index;
      next.lastTerm = snap.term;
      next.commit = Math.max(next.commit, snap.index);
      next.applied = Math.max(next.applied, snap.index);
    }
    const entries = batch.entries;
    let truncateFrom = 0;
    if (entries.length > 0) {
      truncateFrom = this.#validateEntries(entries, next, snap !== undefined);
      const last = entries[entries.length - 1];
      next.lastIndex = last.index;
      next.lastTerm = last.term;
    }
    const hs = batch.hardState;
    if (hs !== undefined) {
      validateHardState(hs, old);
      next.term = hs.term;
      next.vote = hs.vote;
      next.commit = Math.max(next.commit, hs.commit);
    }
    invariant(
      batch.apply === undefined || (batch.applied !== undefined && snap === undefined),
      () =>
        `a batch that applies entries must name its applied index and carry no snapshot (applied ${batch.applied}, snapshot ${snap?.index})`,
    );
    if (batch.applied !== undefined) {
      const a = batch.applied;
      invariant(
        Number.isSafeInteger(a) && a >= old.applied,
        () => `applied index ${a} is below the stored applied index ${old.applied}`,
      );
      next.applied = Math.max(next.applied, a);
    }
    invariant(
      next.term >= next.lastTerm,
      () => `hard state term ${next.term} is below the last log term ${next.lastTerm}`,
    );
    invariant(
      next.commit <= next.lastIndex,
      () => `commit index ${next.commit} passes the last log index ${next.lastIndex}`,
    );
    invariant(
      next.applied <= next.commit,
      () => `applied index ${next.applied} passes the commit index ${next.commit}`,
    );
    const hardStateChanged = next.term !== old.term || next.vote !== old.vote ||
      next.commit !== old.commit || next.applied !== old.applied;
    if (snap === undefined && entries.length === 0 && !hardStateChanged) return;

    const g = this.identity.groupId;
    const st = this.#st;
    let bytes = 0;
    this.#write(() => {
      if (snap !== undefined) {
        // The log goes; entries whose bytes applied events or image chunks point to stay.
        st.deleteUnreferencedFrom.run(g, old.snapshot.index, g, old.snapshot.index);
        this.#writeSnapshot(snap);
        this.#snapshotStage.install(snap);
      }
      if (truncateFrom > 0) st.deleteEntriesFrom.run(g, truncateFrom);
      for (const e of entries) {
        st.insertEntry.run(g, e.index, e.term, entryTypeCode(e.type), e.data);
        bytes += e.data.length;
      }
      batch.apply?.();
      if (hardStateChanged) {
        st.updateHardState.run(next.term, next.vote, next.commit, next.applied, g);
      }
    });
    this.#state = next;
    this.#entriesWritten += entries.length;
    this.#bytesWritten += bytes;
    this.#bytesSinceCheckpoint += bytes;
  }

  /**
   * Drops the entries up to `snapshot.index` (the application has durably
   * saved its state there) and records `snapshot` with its membership as the
   * log's new start. The index must lie between the current snapshot index
   * and the commit index, and `snapshot.term` must be the term of the entry
   * held there.
   */
  compact(snapshot: SnapshotMeta): void {
    this.#check();
    this.#transactions++;
    const old = this.#state;
    const { index, term } = snapshot;
    validateConf(snapshot.conf, `compaction snapshot ${index}`);
    invariant(
      Number.isSafeInteger(index) && index >= old.snapshot.index && index <= old.commit,
      () =>
        `compaction index ${index} is outside [snapshot index ${old.snapshot.index}, commit index ${old.commit}]`,
    );
    if (index === old.snapshot.index) {
      invariant(
        term === old.snapshot.term,
        () => `compaction snapshot ${index} has term ${term}, the stored one ${old.snapshot.term}`,
      );
      return;
    }
    const held = this.#termAt(index);
    invariant(
      held === term,
      () => `compaction snapshot ${index} has term ${term} but the entry held there has ${held}`,
    );
    const g = this.identity.groupId;
    const applied = Math.max(old.applied, index);
    this.#write(() => {
      // Entries whose bytes applied events or image chunks point to stay (the state).
      this.#st.deleteUnreferencedUpTo.run(g, old.snapshot.index, index, g);
      this.#writeSnapshot(snapshot);
      if (applied !== old.applied) {
        this.#st.updateHardState.run(old.term, old.vote, old.commit, applied, g);
      }
    });
    this.#state = { ...old, snapshot, applied };
  }

  /** Index of the last log entry (the snapshot index when the log is empty). */
  lastIndex(): number {
    this.#check();
    return this.#state.lastIndex;
  }

  /** Index of the first log entry held: one past the snapshot index. */
  firstIndex(): number {
    this.#check();
    return this.#state.snapshot.index + 1;
  }

  /** Counters since open. */
  stats(): StoreStats {
    return {
      fsyncs: this.#fsyncs,
      checkpoints: this.#checkpoints,
      transactions: this.#transactions,
      entriesWritten: this.#entriesWritten,
      bytesWritten: this.#bytesWritten,
    };
  }

  /**
   * Closes the database and releases the data dir's lock. Safe to call
   * twice. Everything committed is durable once it returns: the last
   * connection checkpoints at `synchronous=FULL` as it closes (blocking,
   * once, at shutdown).
   */
  close(): void {
    const db = this.#db;
    if (db === undefined) return;
    this.#db = undefined;
    this.#flusher.close();
    this.#dbFile?.close();
    try {
      if (this.#onDisk) {
        removePidFile(this.dir);
        if (db.isTransaction) db.exec("ROLLBACK");
        db.exec("PRAGMA synchronous = FULL");
      }
    } finally {
      db.close();
      this.#lock?.close();
    }
  }

  // ------------------------------------------------------------ internals

  #check(): void {
    if (this.#db === undefined) {
      throw new StoreError(`The store of ${this.dir} is closed; open it again`);
    }
  }

  /**
   * Runs `body` in one write transaction. A failed write (disk full, I/O
   * error) closes the store: after a failed fsync the state of the file is
   * unknown, so the node must restart and reload.
   */
  #write(body: () => void): void {
    const st = this.#st;
    if (this.#hold === "dbSync") {
      // This write may start the log over, on frames whose copy in the database
      // is not yet durable: make it so first (blocking; rare, see holding).
      this.#dbFile!.syncNow();
    }
    try {
      st.begin.run();
      body();
      st.commit.run();
    } catch (e) {
      try {
        st.rollback.run();
      } catch {
        // No transaction was open (BEGIN itself failed).
      } finally {
        this.close();
      }
      throw new StoreError(
        `Writing to ${dbPath(this.dir)} failed (${
          errorText(e)
        }); the store is closed, fix the disk and restart the node`,
        { cause: e },
      );
    }
    this.#written++;
    this.#bytesSinceCheckpoint += TRANSACTION_BYTES_ESTIMATE;
  }

  #writeSnapshot(s: SnapshotMeta): void {
    const g = this.identity.groupId;
    const st = this.#st;
    st.updateSnapshot.run(s.index, s.term, g);
    st.deleteMembers.run(g);
    for (const id of s.conf.voters) st.insertMember.run(g, id, 0);
    for (const id of s.conf.learners) st.insertMember.run(g, id, 1);
  }

  #termAt(index: number): number | undefined {
    const s = this.#state.snapshot;
    if (index === s.index) return s.term;
    const row = this.#st.termAt.get(this.identity.groupId, index);
    return row === undefined ? undefined : Number(row.term);
  }

  /**
   * Checks `entries` against the log as it stands after the batch's snapshot
   * (`next`); returns the index to truncate from (0 when only appending).
   */
  #validateEntries(entries: readonly Entry[], next: GroupState, afterSnapshot: boolean): number {
    const first = entries[0].index;
    const snapIndex = next.snapshot.index;
    invariant(
      Number.isSafeInteger(first) && first > snapIndex && first <= next.lastIndex + 1,
      () =>
        `batch starts at entry ${first}; it must lie in [${snapIndex + 1}, ${
          next.lastIndex + 1
        }] (after the snapshot, at most one past the last index)`,
    );
    // Appending (the common case) needs no read: the last term is cached.
    let prevTerm = first - 1 === next.lastIndex
      ? next.lastTerm
      : afterSnapshot || first - 1 === snapIndex
      ? next.snapshot.term
      : this.#termAt(first - 1)!;
    for (let k = 0; k < entries.length; k++) {
      const e = entries[k];
      invariant(
        e.index === first + k,
        () => `batch entry ${k} has index ${e.index}; entries must be contiguous from ${first}`,
      );
      invariant(
        Number.isSafeInteger(e.term) && e.term >= prevTerm && e.term >= 1,
        () =>
          `entry ${e.index} has term ${e.term}; terms are integers >= 1 and >= the term ${prevTerm} of the entry before`,
      );
      invariant(
        ENTRY_TYPE_CODE[e.type] !== undefined && e.data instanceof Uint8Array,
        () => `entry ${e.index} has type ${e.type} and data ${typeof e.data}`,
      );
      prevTerm = e.term;
    }
    if (first > next.lastIndex) return 0;
    invariant(
      first > next.commit,
      () =>
        `batch starting at entry ${first} would truncate committed entries (commit ${next.commit})`,
    );
    return first;
  }

  #readState(): GroupState {
    const g = this.identity.groupId;
    const st = this.#st;
    const hs = st.selectHardState.get(g);
    const sm = st.selectSnapshot.get(g);
    if (hs === undefined || sm === undefined) {
      throw new StoreError(
        `${
          dbPath(this.dir)
        } has no state for group ${g}; remove this node from the cluster ('seguro member remove' on another node) and join again with a fresh data dir`,
      );
    }
    const voters: number[] = [];
    const learners: number[] = [];
    for (const row of st.selectMembers.iterate(g)) {
      (row.learner ? learners : voters).push(Number(row.node_id));
    }
    const snapshot: SnapshotMeta = {
      index: Number(sm.idx),
      term: Number(sm.term),
      conf: { voters, learners },
    };
    const last = st.lastEntry.get(g, snapshot.index);
    return {
      term: Number(hs.term),
      vote: Number(hs.vote),
      commit: Number(hs.commit_index),
      applied: Number(hs.applied_index),
      snapshot,
      lastIndex: last === undefined ? snapshot.index : Number(last.idx),
      lastTerm: last === undefined ? snapshot.term : Number(last.term),
    };
  }
}

// ---------------------------------------------------------------- helpers

function dbPath(dir: string): string {
  return `${dir}/${DATABASE_FILE}`;
}

function errorText(e: unknown): string {
  return e instanceof Error ? e.message : String(e);
}

/**
 * The simulator's disk (an in-memory store): everything written since the
 * last completed flush is one open transaction (the store's own are
 * savepoints inside it). A completed flush commits it; a crash commits or
 * rolls it back.
 */
class MemoryFlusher implements Flusher {
  readonly #db: DatabaseSync;
  /** Flushes wait for complete() (else they complete at once). */
  readonly manual: boolean;
  #waiting: ((error?: Error) => void)[] = [];

  constructor(db: DatabaseSync, manual: boolean) {
    this.#db = db;
    this.manual = manual;
    db.exec("BEGIN");
  }

  get pending(): boolean {
    return this.#waiting.length > 0;
  }

  sync(done: (error?: Error) => void): void {
    this.#waiting.push(done);
    if (!this.manual) this.complete();
  }

  /** The disk caught up: what was written is durable; the flushes asked for complete. */
  complete(): void {
    this.#db.exec("COMMIT");
    this.#db.exec("BEGIN");
    const waiting = this.#waiting;
    this.#waiting = [];
    for (const done of waiting) done();
  }

  crash(keep: boolean): void {
    this.#waiting = [];
    this.#db.exec(keep ? "COMMIT" : "ROLLBACK");
  }

  close(): void {
    this.#waiting = [];
  }
}

function invariant(ok: boolean, message: () => string): void {
  if (!ok) throw new StoreInvariantError(`Store invariant broken: ${message()}`);
}

function isBusy(e: unknown): boolean {
  return e instanceof Error && (e as Error & { errcode?: number }).errcode === SQLITE_BUSY;
}

function inUseError(dir: string, fix = "stop it first"): StoreError {
  let pid = "unknown";
  try {
    const text = Deno.readTextFileSync(`${dir}/${PID_FILE}`).trim();
    if (/^\d+$/.test(text)) pid = text;
  } catch {
    // No pid file: the holder may be an older or foreign process.
  }
  return new StoreError(`${dir} is in use by another seguro process (pid ${pid}?); ${fix}`);
}

/** The founding contents of a new store. */
export interface StoreInit {
  /** Cluster, node and group ids. */
  identity: StoreIdentity;
  /** The cluster secret. */
  secret: Uint8Array;
  /** The founding membership. */
  conf: ConfState;
  /** This node's settings to start with: where it listens and is reached. */
  settings?: LocalSettingsInit;
  /**
   * Founding member addresses, as if `address` commands had been applied
   * (the whole-node simulator's nodes start knowing each other).
   */
  addresses?: ReadonlyMap<number, string>;
}

/** Writes the schema, identity, founding state and settings of a new store, in one transaction. */
function initialize(db: DatabaseSync, init: StoreInit, createdAtMs: number): void {
  db.exec("BEGIN IMMEDIATE");
  migrate(db, 0);
  db.prepare(
    "INSERT INTO identity (singleton, cluster_id, node_id, group_id, secret, created_at_ms) VALUES (1, ?, ?, ?, ?, ?)",
  ).run(
    init.identity.clusterId,
    init.identity.nodeId,
    init.identity.groupId,
    init.secret,
    createdAtMs,
  );
  const g = init.identity.groupId;
  db.prepare(
    "INSERT INTO hard_state (group_id, term, vote, commit_index, applied_index) VALUES (?, 0, ?, 0, 0)",
  ).run(g, NO_NODE);
  db.prepare("INSERT INTO snapshot_meta (group_id, idx, term) VALUES (?, 0, 0)").run(g);
  const member = db.prepare(
    "INSERT INTO snapshot_member (group_id, node_id, learner) VALUES (?, ?, ?)",
  );
  for (const id of init.conf.voters) member.run(g, id, 0);
  for (const id of init.conf.learners) member.run(g, id, 1);
  LocalSettings.initialize(db, init.settings ?? {});
  MachineSettings.initialize(db, init.addresses ?? new Map());
  db.exec("COMMIT");
}

function writePidFile(dir: string): void {
  Deno.writeTextFileSync(`${dir}/${PID_FILE}`, `${Deno.pid}\n`, { mode: PRIVATE_FILE_MODE });
}

function removePidFile(dir: string): void {
  try {
    if (Deno.readTextFileSync(`${dir}/${PID_FILE}`).trim() === String(Deno.pid)) {
      Deno.removeSync(`${dir}/${PID_FILE}`);
    }
  } catch {
    // Already gone: nothing to release.
  }
}

/**
 * Takes the data dir's lock: an exclusive `flock` of `seguro.lock`, held by
 * the store until it closes. Checked before any file of the dir is opened,
 * so that a second opener in the same process never closes a descriptor of
 * a file the open store holds POSIX locks on (closing drops them).
 */
function lockDir(dir: string): Deno.FsFile {
  let file: Deno.FsFile;
  try {
    file = Deno.openSync(`${dir}/${LOCK_FILE}`, {
      read: true,
      write: true,
      create: true,
      mode: PRIVATE_FILE_MODE,
    });
  } catch (e) {
    throw new StoreError(
      `Cannot open ${dir}/${LOCK_FILE} (${errorText(e)}); check its permissions`,
    );
  }
  if (!file.tryLockSync(true)) {
    file.close();
    throw inUseError(dir);
  }
  return file;
}

/** True when a process holds the data dir's lock (the lock file may not exist yet). */
function dirLocked(dir: string): boolean {
  let file: Deno.FsFile;
  try {
    file = Deno.openSync(`${dir}/${LOCK_FILE}`, { read: true });
  } catch {
    return false;
  }
  try {
    if (!file.tryLockSync(false)) return true;
    file.unlockSync();
    return false;
  } finally {
    file.close();
  }
}

/** fsync of a database and its log, if present (blocking: only at open). */
function syncFilesOf(path: string): void {
  for (const p of [path, `${path}-wal`]) {
    let file: Deno.FsFile;
    try {
      file = Deno.openSync(p, { read: true });
    } catch {
      continue;
    }
    try {
      file.syncSync();
    } finally {
      file.close();
    }
  }
}

/**
 * Puts a read-write connection in exclusive locking mode and takes SQLite's
 * lock with an empty write transaction: SQLite then holds it until the
 * connection closes (or the process dies). A holder elsewhere (an older
 * Seguro, which locked only this way) makes this fail within BUSY_TIMEOUT_MS.
 */
function lockDatabase(db: DatabaseSync, dir: string): void {
  db.exec(`PRAGMA busy_timeout = ${BUSY_TIMEOUT_MS}`);
  // No other connection, in this process or another: no locking per statement
  // (a shared-memory lock per read transaction cost ~0.5 ms per event at 1 in flight).
  db.exec("PRAGMA locking_mode = EXCLUSIVE");
  try {
    // Through prepare: errors from exec() carry no SQLite error code in Deno 2.9.
    db.prepare("BEGIN IMMEDIATE").run();
    db.prepare("COMMIT").run();
  } catch (e) {
    if (isBusy(e)) throw inUseError(dir);
    throw e;
  }
  db.exec("PRAGMA synchronous = FULL");
  db.exec("PRAGMA trusted_schema = OFF");
}

/** Runs the migrations after `fromVersion`, inside the caller's transaction. */
function migrate(db: DatabaseSync, fromVersion: number): void {
  for (const m of MIGRATIONS) {
    if (m.version <= fromVersion) continue;
    db.exec(m.sql);
    db.exec(`PRAGMA user_version = ${m.version}`);
  }
  db.exec(`PRAGMA application_id = ${APPLICATION_ID}`);
}

/**
 * Every check `open` makes before it opens the database for writing: the
 * dir holds a SQLite database of Seguro's, with a schema this Seguro reads,
 * that no process holds. They read the file's first pages only, so a node
 * starts as fast on a data dir of many GB as on a new one; reading every
 * page is {@linkcode checkIntegrity}'s, on demand. `deep`, if given, runs on
 * the same read-only connection once these checks pass.
 */
function checkBeforeOpen(dir: string, deep?: DeepCheck): void {
  const path = dbPath(dir);
  let isFile = false;
  try {
    isFile = Deno.statSync(path).isFile;
  } catch (e) {
    if (!(e instanceof Deno.errors.NotFound || e instanceof Deno.errors.NotADirectory)) {
      throw new StoreError(`Cannot read ${path} (${errorText(e)}); check its permissions`);
    }
  }
  if (!isFile) {
    throw new StoreError(
      `${dir} is not a Seguro data dir (no ${DATABASE_FILE}); run 'seguro init' or 'seguro join' to create one, or pass --data-dir`,
    );
  }
  // First: a store open in this process must not have its files opened and
  // closed under it (closing a descriptor drops the process's POSIX locks).
  if (dirLocked(dir)) throw inUseError(dir, deep?.inUseFix);
  const header = new Uint8Array(SQLITE_HEADER.length);
  const file = Deno.openSync(path, { read: true });
  let got = 0;
  try {
    while (got < header.length) {
      const n = file.readSync(header.subarray(got));
      if (n === null) break;
      got += n;
    }
  } finally {
    file.close();
  }
  if (got < header.length || !SQLITE_HEADER.every((b, i) => header[i] === b)) {
    throw new StoreError(
      `${path} is not a SQLite database; move it away, or pass the --data-dir of a Seguro node`,
    );
  }
  // Reading a WAL database creates -wal/-shm files if missing; remove those
  // this check created (they hold nothing: a read-only connection never writes).
  const sidecars = [`${path}-wal`, `${path}-shm`].filter((p) => !exists(p));
  try {
    checkReadOnly(dir, path, deep);
  } finally {
    for (const p of sidecars) {
      try {
        if (!p.endsWith("-wal") || Deno.statSync(p).size === 0) Deno.removeSync(p);
      } catch {
        // Not created after all.
      }
    }
  }
}

function checkReadOnly(dir: string, path: string, deep: DeepCheck | undefined): void {
  let db: DatabaseSync;
  try {
    db = new DatabaseSync(path, { readOnly: true });
  } catch (e) {
    throw new StoreError(`Cannot open ${path} (${errorText(e)}); check its permissions`);
  }
  try {
    db.exec(`PRAGMA busy_timeout = ${BUSY_TIMEOUT_MS}`);
    const appId = Number(db.prepare("PRAGMA application_id").get()?.application_id);
    const tables = Number(db.prepare("SELECT count(*) AS n FROM sqlite_schema").get()?.n);
    if (appId === 0 && tables === 0) {
      throw new StoreError(
        `${path} is an empty SQLite database (was creating the data dir interrupted?); remove ${dir} and run 'seguro init' or 'seguro join' again`,
      );
    }
    if (appId !== APPLICATION_ID) {
      throw new StoreError(
        `${path} is a SQLite database of another program (application_id 0x${
          (appId >>> 0).toString(16).padStart(8, "0")
        }, Seguro's is 0x${
          APPLICATION_ID.toString(16)
        }); move it away, or pass the --data-dir of a Seguro node`,
      );
    }
    const version = Number(db.prepare("PRAGMA user_version").get()?.user_version);
    if (version > SCHEMA_VERSION) {
      throw new StoreError(
        `${path} was written by a newer Seguro (schema ${version}, this one reads up to ${SCHEMA_VERSION}); upgrade seguro`,
      );
    }
    if (version < 1) {
      throw new StoreError(
        `${path} has schema version ${version}, so its creation never finished; remove ${dir} and run 'seguro init' or 'seguro join' again`,
      );
    }
    deep?.run(db, path);
  } catch (e) {
    if (e instanceof StoreError) throw e;
    if (isBusy(e)) throw inUseError(dir, deep?.inUseFix);
    throw new StoreError(
      `${path} is corrupt: ${
        errorText(e)
      }; remove this node from the cluster ('seguro member remove' on another node) and join again with a fresh data dir`,
      { cause: e },
    );
  } finally {
    db.close();
  }
}

/** A check that reads more than `open` does, on the read-only connection of its checks. */
interface DeepCheck {
  /** Runs once the checks of `open` passed. */
  run(db: DatabaseSync, path: string): void;
  /** What the in-use error tells the user to do. */
  inUseFix: string;
}

/** Most findings {@linkcode checkIntegrity} collects (SQLite's default): the first say enough. */
const INTEGRITY_FINDINGS_MAX = 100;

/** What {@linkcode checkIntegrity} found. */
export interface IntegrityReport {
  /** The database file it read. */
  path: string;
  /** Bytes it checked: the database's pages times the page size (committed WAL pages included). */
  bytes: number;
  /** SQLite's findings, one line each, at most about 100; empty when every page is sound. */
  findings: string[];
}

/** Options of {@linkcode checkIntegrity}. */
export interface IntegrityCheckOptions {
  /**
   * Called once the checks of `open` passed, just before the whole file is
   * read (the part whose time grows with the file).
   */
  onStart?: (path: string, bytes: number) => void;
}

/**
 * Reads every page of a stopped node's database and returns what is wrong
 * with it, by SQLite's `PRAGMA integrity_check`, after the checks of
 * {@linkcode Store.open} (which throw the same one-line StoreErrors here).
 * `integrity_check` rather than `quick_check`: it also verifies that every
 * index matches its table, and the store finds log entries and events
 * through their primary-key indexes, so an index that lost a row would hide
 * an entry without any read error. Its time grows with the file, which is
 * why `open` does not run it.
 *
 * A running node holds the database's exclusive lock, so the dir of a
 * running node is refused (stop the node first), and a node started during
 * the check fails to open it. Nothing is written: the connection is
 * read-only, and the empty `-wal`/`-shm` files SQLite may create for it are
 * removed.
 *
 * ```ts ignore
 * const report = checkIntegrity("/var/lib/seguro");
 * for (const finding of report.findings) console.log(finding);
 * ```
 */
export function checkIntegrity(dir: string, options: IntegrityCheckOptions = {}): IntegrityReport {
  let report: IntegrityReport | undefined;
  checkBeforeOpen(dir, {
    inUseFix: "stop the node first",
    run(db, path) {
      const pages = Number(db.prepare("PRAGMA page_count").get()?.page_count);
      const pageBytes = Number(db.prepare("PRAGMA page_size").get()?.page_size);
      options.onStart?.(path, pages * pageBytes);
      report = { path, bytes: pages * pageBytes, findings: integrityFindings(db) };
    },
  });
  invariant(report !== undefined, () => `checkIntegrity(${dir}) returned without checking`);
  return report!;
}

/** The lines of `PRAGMA integrity_check`, without its "ok" and "*** in database ..." headings. */
function integrityFindings(db: DatabaseSync): string[] {
  const findings: string[] = [];
  try {
    const rows = db.prepare(`PRAGMA integrity_check(${INTEGRITY_FINDINGS_MAX})`).iterate();
    for (const row of rows) {
      for (const line of String(row.integrity_check).split("\n")) {
        if (line.trim() !== "" && line !== "ok" && !line.startsWith("***")) findings.push(line);
      }
    }
  } catch (e) {
    if (isBusy(e)) throw e;
    // A page too damaged for SQLite to walk past ends the check: the last finding.
    findings.push(errorText(e));
  }
  return findings;
}

function exists(path: string): boolean {
  try {
    Deno.lstatSync(path);
    return true;
  } catch {
    return false;
  }
}

function prepareStatements(db: DatabaseSync, onDisk: boolean): Statements {
  const st: Statements = {
    // In memory, transactions are savepoints inside the open one of MemoryFlusher.
    begin: db.prepare(onDisk ? "BEGIN IMMEDIATE" : "SAVEPOINT w"),
    commit: db.prepare(onDisk ? "COMMIT" : "RELEASE w"),
    rollback: db.prepare(onDisk ? "ROLLBACK" : "ROLLBACK TO w"),
    insertEntry: db.prepare(
      "INSERT INTO log_entry (group_id, idx, term, type, data) VALUES (?, ?, ?, ?, ?)",
    ),
    deleteEntriesFrom: db.prepare("DELETE FROM log_entry WHERE group_id = ? AND idx >= ?"),
    deleteUnreferencedUpTo: db.prepare(
      "DELETE FROM log_entry WHERE group_id = ?1 AND idx > ?2 AND idx <= ?3 AND idx NOT IN (SELECT idx FROM entry_ref WHERE group_id = ?4 AND idx > ?2 AND idx <= ?3)",
    ),
    deleteUnreferencedFrom: db.prepare(
      "DELETE FROM log_entry WHERE group_id = ? AND idx > ? AND idx NOT IN (SELECT idx FROM entry_ref WHERE group_id = ? AND idx > ?)",
    ),
    termAt: db.prepare("SELECT term FROM log_entry WHERE group_id = ? AND idx = ?"),
    lastEntry: db.prepare(
      "SELECT idx, term FROM log_entry WHERE group_id = ? AND idx > ? ORDER BY idx DESC LIMIT 1",
    ),
    selectEntries: db.prepare(
      "SELECT idx, term, type, data FROM log_entry WHERE group_id = ? AND idx > ? ORDER BY idx",
    ),
    updateHardState: db.prepare(
      "UPDATE hard_state SET term = ?, vote = ?, commit_index = ?, applied_index = ? WHERE group_id = ?",
    ),
    selectHardState: db.prepare(
      "SELECT term, vote, commit_index, applied_index FROM hard_state WHERE group_id = ?",
    ),
    updateSnapshot: db.prepare("UPDATE snapshot_meta SET idx = ?, term = ? WHERE group_id = ?"),
    selectSnapshot: db.prepare("SELECT idx, term FROM snapshot_meta WHERE group_id = ?"),
    deleteMembers: db.prepare("DELETE FROM snapshot_member WHERE group_id = ?"),
    insertMember: db.prepare(
      "INSERT INTO snapshot_member (group_id, node_id, learner) VALUES (?, ?, ?)",
    ),
    selectMembers: db.prepare(
      "SELECT node_id, learner FROM snapshot_member WHERE group_id = ? ORDER BY node_id",
    ),
  };
  return st;
}

function validateIdentity(id: StoreIdentity): void {
  if (!/^[0-9a-f]{32}$/.test(id.clusterId)) {
    throw new StoreError(
      `Cluster id '${id.clusterId}' is invalid; use 32 lowercase hex characters`,
    );
  }
  if (!Number.isSafeInteger(id.nodeId) || id.nodeId < 1) {
    throw new StoreError(`Node id ${id.nodeId} is invalid; use an integer >= 1`);
  }
  if (!Number.isSafeInteger(id.groupId) || id.groupId < 0) {
    throw new StoreError(`Group id ${id.groupId} is invalid; use an integer >= 0`);
  }
}

function validateConf(conf: ConfState, what: string): void {
  const all = [...conf.voters, ...conf.learners];
  const ok = all.every((id) => Number.isSafeInteger(id) && id >= 1) &&
    new Set(all).size === all.length;
  invariant(
    ok,
    () =>
      `${what} has voters [${conf.voters}] and learners [${conf.learners}]; ids must be distinct integers >= 1`,
  );
}

function validateSnapshot(snap: SnapshotMeta, current: SnapshotMeta): void {
  validateConf(snap.conf, `snapshot ${snap.index}`);
  invariant(
    Number.isSafeInteger(snap.index) && Number.isSafeInteger(snap.term) &&
      snap.index >= current.index && snap.term >= current.term &&
      (snap.index > current.index || snap.term === current.term),
    () =>
      `snapshot (index ${snap.index}, term ${snap.term}) does not follow the stored one (index ${current.index}, term ${current.term})`,
  );
}

function validateHardState(hs: HardState, old: GroupState): void {
  invariant(
    Number.isSafeInteger(hs.term) && hs.term >= old.term,
    () => `hard state term ${hs.term} is below the stored term ${old.term}`,
  );
  invariant(
    Number.isSafeInteger(hs.vote) && hs.vote >= 0 &&
      (hs.term > old.term || old.vote === NO_NODE || hs.vote === old.vote),
    () => `hard state changes the vote in term ${hs.term} from ${old.vote} to ${hs.vote}`,
  );
  invariant(
    Number.isSafeInteger(hs.commit) && hs.commit >= old.commit,
    () => `hard state commit ${hs.commit} is below the stored commit ${old.commit}`,
  );
}
