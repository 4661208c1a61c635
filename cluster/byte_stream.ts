/**
 * The byte stream a {@linkcode FrameConn} reads and writes: a plain TCP
 * connection (`--insecure-plaintext`), or TLS on top of one
 * (cluster/tls.ts). One small interface, so the frame layer is the same
 * over both.
 * @module
 */

import type { TLSSocket } from "node:tls";

/** An ordered, reliable byte stream with the reads and writes of a `Deno.Conn`. */
export interface ByteStream {
  /** Reads into `buf`; resolves with the count read, or null at the end of the stream. */
  read(buf: Uint8Array): Promise<number | null>;
  /** Writes all of `bytes` (or throws); resolves with their count once handed to the socket. */
  write(bytes: Uint8Array): Promise<number>;
  /** Ends this side's writing (the other side reads the end of the stream), after what is written. */
  closeWrite(): Promise<void>;
  /** Closes the stream; idempotent. */
  close(): void;
  /** The other end as host:port. */
  readonly remote: string;
}

/** A plain TCP connection as a byte stream, with Nagle's algorithm off (it adds ~40 ms per reply). */
export function tcpStream(conn: Deno.TcpConn): ByteStream {
  conn.setNoDelay(true);
  const a = conn.remoteAddr;
  return {
    read: (buf) => conn.read(buf),
    write: (bytes) => conn.write(bytes),
    closeWrite: () => conn.closeWrite(),
    close: () => {
      try {
        conn.close();
      } catch {
        // already closed
      }
    },
    remote: `${a.hostname}:${a.port}`,
  };
}

/** Bytes a TLS stream takes from the socket before a reader asks for them (then it pauses). */
export const TLS_READ_AHEAD_BYTES_MAX = 1024 * 1024;

/**
 * A node:tls socket (already through its handshake) as a byte stream. The
 * socket pushes data; this holds at most {@linkcode TLS_READ_AHEAD_BYTES_MAX}
 * of it before pausing the socket, so a peer that sends faster than the
 * node reads cannot fill memory.
 */
export class TlsStream implements ByteStream {
  readonly remote: string;
  readonly #sock: TLSSocket;
  #chunks: Uint8Array[] = [];
  #held = 0;
  #ended = false;
  #error: Error | undefined;
  #waiter: (() => void) | undefined;

  /** Takes over `sock`'s data events; `remote` names the other end for logs. */
  constructor(sock: TLSSocket, remote: string) {
    this.#sock = sock;
    this.remote = remote;
    sock.on("data", (d: Uint8Array) => {
      this.#chunks.push(d);
      this.#held += d.length;
      if (this.#held >= TLS_READ_AHEAD_BYTES_MAX) sock.pause();
      this.#wake();
    });
    sock.on("end", () => {
      this.#ended = true;
      this.#wake();
    });
    sock.on("close", (hadError: boolean) => {
      if (hadError && !this.#ended) {
        this.#error ??= new Error(
          "TLS failed (a record did not authenticate, or the socket broke)",
        );
      }
      this.#ended = true;
      this.#wake();
    });
    sock.on("error", (e: Error) => {
      this.#error ??= e;
      this.#wake();
    });
  }

  #wake(): void {
    const w = this.#waiter;
    this.#waiter = undefined;
    w?.();
  }

  /** Reads what has arrived into `buf`, waiting for some when none has. */
  async read(buf: Uint8Array): Promise<number | null> {
    while (this.#chunks.length === 0) {
      if (this.#error !== undefined) throw this.#error;
      if (this.#ended) return null;
      await new Promise<void>((resolve) => this.#waiter = resolve);
    }
    let n = 0;
    while (n < buf.length && this.#chunks.length > 0) {
      const head = this.#chunks[0];
      const take = Math.min(head.length, buf.length - n);
      buf.set(head.subarray(0, take), n);
      n += take;
      if (take === head.length) this.#chunks.shift();
      else this.#chunks[0] = head.subarray(take);
    }
    this.#held -= n;
    if (this.#held < TLS_READ_AHEAD_BYTES_MAX && this.#sock.isPaused()) this.#sock.resume();
    return n;
  }

  /** Writes `bytes`; resolves once the socket has taken them (flow control: one write at a time). */
  write(bytes: Uint8Array): Promise<number> {
    if (this.#error !== undefined) return Promise.reject(this.#error);
    return new Promise((resolve, reject) => {
      this.#sock.write(bytes, (e?: Error | null) => e ? reject(e) : resolve(bytes.length));
    });
  }

  /** Sends TLS close_notify and ends the TCP stream's writing side. */
  closeWrite(): Promise<void> {
    return new Promise((resolve) => this.#sock.end(() => resolve()));
  }

  /** Closes the socket at once. */
  close(): void {
    this.#ended = true;
    this.#sock.destroy();
    this.#wake();
  }
}
