/**
 * TCP between nodes. One port per node takes both peers and admin clients;
 * every connection starts with TLS and the handshake (cluster/connect.ts).
 *
 * Each node dials each peer it must send to and uses that connection only
 * for its own messages; replies come back over the peer's own connection.
 * A peer that is down is redialled with capped exponential backoff, and
 * messages for it are dropped meanwhile (Raft retransmits). Every
 * connection's send queue is bounded, so a slow peer cannot exhaust memory.
 * Malformed, oversized, unauthenticated or wrong-cluster input closes that
 * connection with a logged reason; the node keeps running.
 * @module
 */

import type { LogSink } from "./log_event.ts";
import { WireError } from "./codec.ts";
import { type FrameConn, FrameType } from "./frame.ts";
import { Admission, type Handshaking, RateLimitedLog } from "./admission.ts";
import type { Hello } from "./handshake.ts";
import { HandshakeError } from "./handshake_error.ts";
import { openConn, type Security } from "./connect.ts";
import { decodeMessage, encodeMessage } from "./wire.ts";
import type { PeerMessage } from "./snapshot_stream.ts";
import { parseAddress } from "./address.ts";

/** First redial delay after a failed connection. */
export const BACKOFF_MIN_MS = 50;
/** Longest redial delay. */
export const BACKOFF_MAX_MS = 2000;
/** Bytes held for a peer while its connection is being made. */
export const WAITING_BYTES_MAX = 4 * 1024 * 1024;
/** Per-peer send queue bound (bytes). */
export const PEER_QUEUE_BYTES_MAX = 32 * 1024 * 1024;
/** Longest a closing transport waits for queued answers to be written. */
export const CLOSE_FLUSH_MS_MAX = 1000;

/** Settings of a transport. */
export interface TransportConfig {
  /** This node's cluster id (32 hex characters). */
  clusterId: string;
  /** This node's id. */
  nodeId: number;
  /** TLS with this node's certificate, or plaintext with the cluster secret. */
  security: Security;
  /** True for the serial of a revoked certificate: refused at the handshake. */
  isRevoked?: (serial: string) => boolean;
  /** A bound listener; the transport accepts on it until closed. */
  listener: Deno.TcpListener;
  /** The address peers reach this node at (host:port). */
  advertise: string;
  /** Called for every authenticated, well-formed Raft message addressed to this node. */
  onRaft: (message: PeerMessage) => void;
  /** Called for every authenticated admin client connection. */
  onClient: (conn: FrameConn, hello: Hello) => void;
  /** Where connection events go (never secrets). */
  log: LogSink;
  /** Per-peer send queue bound; default {@linkcode PEER_QUEUE_BYTES_MAX}. */
  peerQueueBytesMax?: number;
  /** True for a node whose removal from the cluster was committed: it is told so and let go. */
  isRemoved?: (nodeId: number) => boolean;
  /** Peer `by` says this node was removed from the cluster. */
  onRemoved?: (by: number) => void;
}

/** What the transport knows of one peer, for `seguro status`. */
export interface PeerView {
  /** Peer node id. */
  id: number;
  /** Its address. */
  address: string;
  /** True while our connection to it is up. */
  connected: boolean;
  /** Messages dropped because it was down or its queue was full. */
  dropped: number;
  /** Milliseconds since a message from it last arrived, or null if never. */
  lastHeardMs: number | null;
}

class PeerLink {
  readonly id: number;
  address: string;
  conn: FrameConn | undefined;
  dialing = false;
  backoffMs = 0;
  retryAt = 0;
  dropped = 0;
  lastHeard = 0;
  failing = false;
  /** Messages that arrived while the first connection was being made (bounded). */
  waiting: Uint8Array[] = [];
  waitingBytes = 0;

  constructor(id: number, address: string) {
    this.id = id;
    this.address = address;
  }
}

/** The node's network side: peers out, peers and clients in. */
export class Transport {
  readonly #cfg: TransportConfig;
  readonly #peers = new Map<number, PeerLink>();
  readonly #inbound = new Set<FrameConn>();
  /** Addresses from the replicated membership. */
  #known: ReadonlyMap<number, string> = new Map();
  /**
   * Addresses authenticated peers announced in their hello: how a new learner
   * answers a leader whose address it has not applied yet.
   */
  readonly #hints = new Map<number, string>();
  #closed = false;
  #accepting: Promise<void> | undefined;
  /** Removed nodes told so, to log each once. */
  readonly #toldRemoved = new Set<number>();
  /** Authenticated connections peers made to this node, and whose they are. */
  readonly #inboundPeers = new Map<FrameConn, number>();
  readonly #admission: Admission;
  /** Connections the admission closed to make room, until their handshake gives up. */
  readonly #evicted = new WeakSet<Deno.TcpConn>();
  /** The certificate serial of each authenticated connection, both ways (TLS only). */
  readonly #serials = new Map<FrameConn, string>();
  /** Accepted connections still in TLS or the handshake (closed with the transport). */
  readonly #opening = new Set<Deno.TcpConn>();
  /** Evictions and failed handshakes: strangers decide how many, so the lines are bounded. */
  readonly #strangers: RateLimitedLog;

  /** Makes a transport; call {@linkcode start} to accept connections. */
  constructor(config: TransportConfig) {
    this.#cfg = config;
    this.#admission = new Admission();
    this.#strangers = new RateLimitedLog(config.log);
  }

  /** Starts accepting connections. */
  start(): void {
    this.#accepting = this.#acceptLoop();
  }

  /**
   * Sets where each peer is (from the replicated membership). A peer that is
   * in neither this map nor the hints (addresses authenticated peers gave in
   * their hello) is dropped.
   */
  setPeers(addresses: ReadonlyMap<number, string>): void {
    this.#known = addresses;
    this.#applyPeers();
  }

  #applyPeers(): void {
    const addresses = new Map(this.#hints);
    for (const [id, address] of this.#known) addresses.set(id, address);
    for (const id of addresses.keys()) if (this.#cfg.isRemoved?.(id)) addresses.delete(id);
    for (const [id, address] of addresses) {
      if (id === this.#cfg.nodeId) continue;
      const link = this.#peers.get(id);
      if (link === undefined) {
        const fresh = new PeerLink(id, address);
        this.#peers.set(id, fresh);
        this.#dial(fresh); // connect before the first message needs it
      } else if (link.address !== address) {
        link.address = address;
        link.conn?.close();
      }
    }
    for (const [id, link] of this.#peers) {
      if (!addresses.has(id)) {
        link.conn?.close();
        this.#peers.delete(id);
      }
    }
  }

  /** Sends a Raft message to its recipient; drops it when the peer is down or backed up. */
  send(m: PeerMessage): void {
    const link = this.#peers.get(m.to);
    if (link === undefined) return;
    if (link.conn === undefined || link.conn.closed) {
      this.#dial(link);
      // While a dial is under way, hold messages so that the first vote
      // request to a peer never connected before is not lost; while backing
      // off from a failed dial, drop them (Raft retransmits).
      const bytes = encodeMessage(m);
      if (link.dialing && link.waitingBytes + bytes.length <= WAITING_BYTES_MAX) {
        link.waiting.push(bytes);
        link.waitingBytes += bytes.length;
      } else {
        link.dropped++;
      }
      return;
    }
    if (!link.conn.send(FrameType.raft, encodeMessage(m))) link.dropped++;
  }

  /** One row per known peer. */
  peers(): PeerView[] {
    const now = Date.now();
    return [...this.#peers.values()].map((l) => ({
      id: l.id,
      address: l.address,
      connected: l.conn !== undefined && !l.conn.closed,
      dropped: l.dropped,
      lastHeardMs: l.lastHeard === 0 ? null : now - l.lastHeard,
    }));
  }

  #dial(link: PeerLink): void {
    if (this.#closed || link.dialing || Date.now() < link.retryAt) return;
    link.dialing = true;
    this.#connect(link).finally(() => {
      link.dialing = false;
    });
  }

  async #connect(link: PeerLink): Promise<void> {
    const address = link.address;
    let fc: FrameConn | undefined;
    try {
      const { hostname, port } = parseAddress(address);
      const conn = await Deno.connect({ hostname, port });
      const opened = await openConn(conn, "initiator", this.#local(), this.#cfg.security, {
        queueBytesMax: this.#cfg.peerQueueBytesMax ?? PEER_QUEUE_BYTES_MAX,
        isRevoked: this.#cfg.isRevoked,
      });
      fc = opened.fc;
      const hello = opened.hello;
      if (hello.nodeId !== link.id) {
        await fc.goodbye(`This address belongs to node ${link.id}, not ${hello.nodeId}`);
        throw new HandshakeError(`${address} answered as node ${hello.nodeId}, not ${link.id}`);
      }
      if (this.#closed || this.#peers.get(link.id) !== link || link.address !== address) {
        fc.close();
        return;
      }
      link.conn = fc;
      this.#track(fc, hello.serial);
      link.backoffMs = 0;
      for (const bytes of link.waiting) if (!fc.send(FrameType.raft, bytes)) link.dropped++;
      link.waiting = [];
      link.waitingBytes = 0;
      if (link.failing) this.#cfg.log(`peer ${link.id} at ${address}: connected`);
      link.failing = false;
      // The peer never sends on this connection but a goodbye; read to notice it closing.
      this.#drainOutbound(link, fc);
    } catch (e) {
      fc?.close();
      link.dropped += link.waiting.length;
      link.waiting = [];
      link.waitingBytes = 0;
      link.backoffMs = Math.min(
        BACKOFF_MAX_MS,
        Math.max(BACKOFF_MIN_MS, link.backoffMs * 2),
      );
      // Jitter spreads redials of many nodes: 50-100% of the delay.
      link.retryAt = Date.now() + link.backoffMs * (0.5 + Math.random() / 2);
      if (!link.failing) {
        this.#cfg.log(`peer ${link.id} at ${address}: ${reason(e)}; retrying with backoff`);
      }
      link.failing = true;
    }
  }

  async #drainOutbound(link: PeerLink, fc: FrameConn): Promise<void> {
    try {
      while (true) {
        const f = await fc.read();
        if (f === null) break;
        if (f.type === FrameType.goodbye) {
          this.#cfg.log(`peer ${link.id}: closed: ${new TextDecoder().decode(f.body)}`);
          break;
        }
        if (f.type === FrameType.removed) {
          this.#cfg.onRemoved?.(link.id);
          break;
        }
      }
    } catch (e) {
      if (!fc.closed) this.#cfg.log(`peer ${link.id}: ${reason(e)}`);
    } finally {
      fc.close();
      if (link.conn === fc) link.conn = undefined;
    }
  }

  async #acceptLoop(): Promise<void> {
    while (!this.#closed) {
      let conn: Deno.TcpConn;
      try {
        conn = await this.#cfg.listener.accept();
      } catch (e) {
        if (this.#closed) return;
        this.#strangers.line(`accept failed: ${reason(e)}`);
        continue;
      }
      const admitted = {
        address: conn.remoteAddr.hostname,
        close: () => {
          this.#evicted.add(conn); // logged once, as evicted, not again as a failed handshake
          closeQuietly(conn);
        },
      };
      for (const old of this.#admission.admit(admitted)) {
        this.#strangers.line(
          `closed a connection from ${old.address} still in its handshake, to make room for a new one`,
          { event: "connection_evicted", from: old.address },
        );
      }
      this.#serve(conn, admitted);
    }
  }

  #local() {
    return {
      kind: "peer",
      clusterId: this.#cfg.clusterId,
      nodeId: this.#cfg.nodeId,
      address: this.#cfg.advertise,
    } as const;
  }

  async #serve(conn: Deno.TcpConn, admitted: Handshaking): Promise<void> {
    this.#opening.add(conn);
    const from = `${conn.remoteAddr.hostname}:${conn.remoteAddr.port}`;
    let fc: FrameConn;
    let hello: Hello;
    try {
      ({ fc, hello } = await openConn(conn, "acceptor", this.#local(), this.#cfg.security, {
        isRevoked: this.#cfg.isRevoked,
      }));
    } catch (e) {
      if (!this.#evicted.delete(conn)) {
        this.#strangers.line(`closed connection from ${from}: ${reason(e)}`, {
          event: "connection_closed",
          from,
        });
      }
      closeQuietly(conn);
      return;
    } finally {
      this.#opening.delete(conn);
      this.#admission.done(admitted);
    }
    this.#inbound.add(fc);
    fc.onClose(() => this.#inbound.delete(fc));
    this.#track(fc, hello.serial);
    if (this.#closed) {
      fc.close();
      return;
    }
    if (hello.kind === "client") {
      this.#cfg.onClient(fc, hello);
      return;
    }
    if (this.#cfg.isRemoved?.(hello.nodeId)) {
      await this.#tellRemoved(fc, hello.nodeId);
      return;
    }
    this.#inboundPeers.set(fc, hello.nodeId);
    fc.onClose(() => this.#inboundPeers.delete(fc));
    if (hello.address !== "" && this.#hints.get(hello.nodeId) !== hello.address) {
      this.#hints.set(hello.nodeId, hello.address);
      if (!this.#known.has(hello.nodeId)) this.#applyPeers();
    }
    try {
      while (true) {
        const f = await fc.read();
        if (f === null) break;
        if (f.type === FrameType.goodbye) break;
        if (f.type !== FrameType.raft) {
          throw new WireError(`A peer sent frame type ${f.type}, which peers do not send`);
        }
        const m = decodeMessage(f.body);
        if (m.from !== hello.nodeId || m.to !== this.#cfg.nodeId) {
          throw new WireError(
            `A message from ${m.from} to ${m.to} arrived on node ${hello.nodeId}'s connection to node ${this.#cfg.nodeId}`,
          );
        }
        if (this.#cfg.isRemoved?.(m.from)) {
          await this.#tellRemoved(fc, m.from);
          return;
        }
        const link = this.#peers.get(m.from);
        if (link !== undefined) link.lastHeard = Date.now();
        this.#cfg.onRaft(m);
      }
    } catch (e) {
      if (!fc.closed) {
        this.#cfg.log(`closed connection from node ${hello.nodeId} (${from}): ${reason(e)}`);
        await fc.goodbye(reason(e));
      }
    } finally {
      fc.close();
    }
  }

  /**
   * Call when more nodes are removed (`isRemoved`): tells each connected one
   * so at once (a removed node may be silent, waiting for a leader) and
   * stops dialling them.
   */
  tellRemovedPeers(): void {
    for (const [fc, id] of this.#inboundPeers) {
      if (this.#cfg.isRemoved?.(id)) this.#tellRemoved(fc, id);
    }
    this.#applyPeers();
  }

  #track(fc: FrameConn, serial: string | undefined): void {
    if (serial === undefined) return;
    this.#serials.set(fc, serial);
    fc.onClose(() => this.#serials.delete(fc));
  }

  /**
   * Call when more certificates are revoked (`isRevoked`): closes every
   * connection, either way, made with a revoked certificate.
   */
  dropRevoked(): void {
    for (const [fc, serial] of this.#serials) {
      if (!this.#cfg.isRevoked?.(serial)) continue;
      this.#cfg.log(`closed a connection made with certificate ${serial}, now revoked`);
      fc.goodbye(`The certificate ${serial} was revoked`);
    }
  }

  /** Tells a removed node so on its own connection, then closes it. */
  async #tellRemoved(fc: FrameConn, id: number): Promise<void> {
    if (!this.#toldRemoved.has(id)) {
      this.#toldRemoved.add(id);
      this.#cfg.log(`node ${id} was removed from the cluster but is still running: told it so`);
    }
    fc.send(FrameType.removed, new Uint8Array(0));
    await fc.goodbye(`Node ${id} was removed from the cluster`);
  }

  /** Stops accepting, closes every connection. */
  async close(): Promise<void> {
    if (this.#closed) return;
    this.#closed = true;
    try {
      this.#cfg.listener.close();
    } catch {
      // already closed
    }
    for (const link of this.#peers.values()) link.conn?.close();
    // Answers already queued go out first (e.g. to the 'member remove' that
    // removed this node), for at most CLOSE_FLUSH_MS_MAX.
    let timer: ReturnType<typeof setTimeout> | undefined;
    await Promise.race([
      Promise.all([...this.#inbound].map((fc) => fc.flush())),
      new Promise((resolve) => timer = setTimeout(resolve, CLOSE_FLUSH_MS_MAX)),
    ]);
    clearTimeout(timer);
    for (const fc of this.#inbound) fc.close();
    for (const conn of this.#opening) closeQuietly(conn);
    await this.#accepting;
  }
}

function closeQuietly(conn: Deno.TcpConn): void {
  try {
    conn.close();
  } catch {
    // already closed
  }
}

function reason(e: unknown): string {
  if (e instanceof HandshakeError || e instanceof WireError) return e.message;
  if (e instanceof Deno.errors.ConnectionRefused) return "connection refused";
  if (e instanceof Error) return e.message;
  return String(e);
}
