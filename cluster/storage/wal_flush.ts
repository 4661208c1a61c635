/**
 * How the store's writes reach the disk without the event loop waiting for
 * it (P13). The store's connection runs with `synchronous=OFF`: a commit
 * only hands its pages to the operating system. Durability comes from
 * `fdatasync` on Deno's blocking-I/O threads (`FsFile.syncData`):
 *
 * - {@linkcode WalFlusher}: of the `-wal` file. The write-ahead log is
 *   sequential and checksummed, so one flush makes every transaction
 *   committed before it durable, and a crash before it loses a suffix of
 *   transactions, never a middle.
 * - {@linkcode FileSync} of the database file, after the store has copied the
 *   (flushed) log into it, before SQLite may start the log over (see
 *   `Store.holding` in cluster/store.ts).
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

/** fdatasync of one file, asynchronously (Deno's blocking pool), or at once. */
export class FileSync implements Flusher {
  readonly #path: string;
  #file: Deno.FsFile | undefined;
  #closed = false;

  /** `path`: the file (opened read-only on first use). */
  constructor(path: string) {
    this.#path = path;
  }

  #open(): Deno.FsFile {
    this.#file ??= Deno.openSync(this.#path, { read: true });
    return this.#file;
  }

  /** Starts one fdatasync. */
  sync(done: (error?: Error) => void): void {
    let file: Deno.FsFile;
    try {
      file = this.#open();
    } catch (e) {
      queueMicrotask(() => done(e as Error));
      return;
    }
    file.syncData().then(
      () => {
        if (!this.#closed) done();
      },
      (e) => {
        if (!this.#closed) done(e as Error);
      },
    );
  }

  /** fdatasync now, blocking the caller (for the rare write that cannot wait). */
  syncNow(): void {
    this.#open().syncDataSync();
  }

  /** Closes the file handle. */
  close(): void {
    this.#closed = true;
    this.#file?.close();
    this.#file = undefined;
  }
}

/** fdatasync of a database's `-wal` file, and of its directory once (the log's own entry). */
export class WalFlusher implements Flusher {
  readonly #wal: FileSync;
  readonly #dir: string;
  #dirSynced = false;
  #closed = false;

  /** `dbPath`: the database file; `dir`: its directory. */
  constructor(dbPath: string, dir: string) {
    this.#wal = new FileSync(`${dbPath}-wal`);
    this.#dir = dir;
  }

  /** Starts one fdatasync of the log. */
  sync(done: (error?: Error) => void): void {
    if (this.#dirSynced) {
      this.#wal.sync(done);
      return;
    }
    this.#dirSynced = true;
    // Settles with the error, if any, so that it is never an unhandled rejection.
    const dir: Promise<Error | undefined> = Deno.open(this.#dir, { read: true }).then(async (d) => {
      try {
        await d.sync();
      } finally {
        d.close();
      }
    }).then(() => undefined, (e) => e as Error);
    this.#wal.sync((error) => {
      dir.then((dirError) => {
        if (!this.#closed) done(error ?? dirError);
      });
    });
  }

  /** Closes the log's file handle. */
  close(): void {
    this.#closed = true;
    this.#wal.close();
  }
}
