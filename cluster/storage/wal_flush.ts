/**
 * How the store's writes reach the disk without the event loop waiting for
 * it (P13). The store's connection runs with `synchronous=OFF`: a commit
 * only hands its pages to the operating system. Durability comes from two
 * things off the main thread:
 *
 * - {@linkcode WalFlusher}: `fdatasync` of the `-wal` file on Deno's
 *   blocking-I/O threads (`FsFile.syncData`). The write-ahead log is
 *   sequential and checksummed, so one flush makes every transaction
 *   committed before it durable, and a crash before it loses a suffix of
 *   transactions, never a middle.
 * - {@linkcode Checkpointer}: copies the log into the database file from a
 *   Worker with its own connection at `synchronous=FULL`, which fsyncs the
 *   log before and the database after, so the writer may start the log over
 *   only once its frames are durable in the database (SQLite's own rule; the
 *   writer never checkpoints: `wal_autocheckpoint=0`).
 *
 * A failed fsync is final (its pages' state is unknown): the store closes
 * and the node restarts and reloads.
 * @module
 */

/** Makes everything a store has committed durable, off the main thread. */
export interface Flusher {
  /** Starts one flush; `done` runs once it is durable, or with the error. */
  sync(done: (error?: Error) => void): void;
  /** Stops; later completions are dropped. */
  close(): void;
}

/** fdatasync of a database's `-wal` file, asynchronously (Deno's blocking pool). */
export class WalFlusher implements Flusher {
  readonly #walPath: string;
  readonly #dir: string;
  #file: Deno.FsFile | undefined;
  #dirSynced = false;
  #closed = false;

  /** `dbPath`: the database file; `dir`: its directory (fsynced once, for the log's own entry). */
  constructor(dbPath: string, dir: string) {
    this.#walPath = `${dbPath}-wal`;
    this.#dir = dir;
  }

  /** Starts one fdatasync of the log. */
  sync(done: (error?: Error) => void): void {
    let file: Deno.FsFile;
    try {
      this.#file ??= Deno.openSync(this.#walPath, { read: true });
      file = this.#file;
    } catch (e) {
      queueMicrotask(() => done(e as Error));
      return;
    }
    const work = [file.syncData()];
    if (!this.#dirSynced) {
      // The log file's directory entry must be durable too, once.
      this.#dirSynced = true;
      work.push(
        Deno.open(this.#dir, { read: true }).then(async (d) => {
          try {
            await d.sync();
          } finally {
            d.close();
          }
        }),
      );
    }
    Promise.all(work).then(
      () => {
        if (!this.#closed) done();
      },
      (e) => {
        if (!this.#closed) done(e as Error);
      },
    );
  }

  /** Closes the log's file handle. */
  close(): void {
    this.#closed = true;
    this.#file?.close();
    this.#file = undefined;
  }
}

/** Flags shared with the checkpoint worker (Int32 slots of a SharedArrayBuffer). */
const BUSY = 0;
const CLOSING = 1;

/** Longest {@linkcode Checkpointer.close} waits for a checkpoint in progress. */
const CLOSE_WAIT_MS = 30_000;

/** What one checkpoint found: frames in the log, and how many of them are in the database now. */
export interface CheckpointResult {
  readonly log: number;
  readonly checkpointed: number;
}

/**
 * Runs `PRAGMA wal_checkpoint(PASSIVE)` in a Worker on its own connection,
 * one at a time. The Worker starts on the first request: most stores (a
 * command, a test) never write enough to need one.
 */
export class Checkpointer {
  readonly #dbPath: string;
  readonly #onDone: (result: CheckpointResult) => void;
  readonly #flags = new Int32Array(new SharedArrayBuffer(8));
  #worker: Worker | undefined;
  #running = false;
  #failed: Error | undefined;
  /** Checkpoints completed (for tests and stats). */
  completed = 0;

  /** `dbPath`: the database the worker checkpoints; `onDone` hears each result. */
  constructor(dbPath: string, onDone: (result: CheckpointResult) => void) {
    this.#dbPath = dbPath;
    this.#onDone = onDone;
  }

  /**
   * Starts the Worker now: creating one holds the caller's thread for tens
   * of ms, so a node does it before it serves anything, not at its first
   * checkpoint under load.
   */
  start(): void {
    if (Atomics.load(this.#flags, CLOSING) === 1) return;
    this.#worker ??= this.#start();
  }

  /** Asks for a checkpoint unless one is running; returns whether one started. */
  request(): boolean {
    if (this.#running || Atomics.load(this.#flags, CLOSING) === 1) return false;
    if (this.#failed !== undefined) throw this.#failed;
    this.#worker ??= this.#start();
    this.#running = true;
    this.#worker.postMessage({ type: "checkpoint" });
    return true;
  }

  /** True while a checkpoint runs. */
  get running(): boolean {
    return this.#running;
  }

  #start(): Worker {
    const worker = new Worker(new URL("./checkpoint_worker.ts", import.meta.url).href, {
      type: "module",
    });
    worker.onmessage = (
      e: MessageEvent<{ type: string; error?: string; log?: number; checkpointed?: number }>,
    ) => {
      this.#running = false;
      if (e.data.type === "failed") {
        this.#failed = new Error(`checkpointing ${this.#dbPath} failed: ${e.data.error}`);
        return;
      }
      this.completed++;
      if (Atomics.load(this.#flags, CLOSING) === 1) return;
      this.#onDone({ log: e.data.log ?? 0, checkpointed: e.data.checkpointed ?? 0 });
    };
    worker.onerror = (e) => {
      e.preventDefault();
      this.#running = false;
      this.#failed = new Error(`the checkpoint worker of ${this.#dbPath} failed: ${e.message}`);
    };
    worker.postMessage({ type: "init", path: this.#dbPath, flags: this.#flags });
    return worker;
  }

  /**
   * Stops the worker: waits (blocking, bounded) for a checkpoint in progress
   * to finish and close its connection, so the caller's close is the last.
   */
  close(): void {
    Atomics.store(this.#flags, CLOSING, 1);
    const worker = this.#worker;
    this.#worker = undefined;
    if (worker === undefined) return;
    Atomics.wait(this.#flags, BUSY, 1, CLOSE_WAIT_MS);
    worker.terminate();
  }
}
