/**
 * The start of every connection: each side sends a hello (who it is), then
 * proves it holds the cluster secret with an HMAC over both hellos. Nothing
 * else is accepted until both proofs check.
 *
 * ```
 * hello := "SGRO" version:u16 kind:u8 (1 peer, 2 client) clusterId:16 bytes
 *          nodeId:u32 (0 for a client) nonce:32 bytes address:text
 * auth  := HMAC-SHA256(secret, label || initiator hello || acceptor hello)
 *          label = "seguro/1 initiator" or "seguro/1 acceptor"
 * ```
 * Both hellos carry fresh random nonces, so a proof cannot be replayed on
 * another connection, and the labels differ by side, so a proof cannot be
 * reflected back. The secret never crosses the wire.
 * @module
 */

import { createHmac, timingSafeEqual } from "node:crypto";
import { ByteReader, ByteWriter, WireError } from "./codec.ts";
import { FRAME_BYTES_MAX, type FrameConn, FrameType } from "./frame.ts";

/** Version of the node-to-node and client protocol. */
export const PROTOCOL_VERSION = 1;
const MAGIC = new TextEncoder().encode("SGRO");
const ADDRESS_BYTES_MAX = 255;
/** A handshake that has not finished in this time closes the connection. */
export const HANDSHAKE_TIMEOUT_MS = 5000;

/** Who is on the other end: another node, or an admin client (the CLI). */
export type ConnKind = "peer" | "client";

/** A hello frame, decoded. */
export interface Hello {
  /** Protocol version of the sender. */
  version: number;
  /** Peer or client. */
  kind: ConnKind;
  /** The cluster the sender belongs to, 32 hex characters. */
  clusterId: string;
  /** The sender's node id; 0 for a client. */
  nodeId: number;
  /** Where the sender can be reached (nodes), or "" (clients). */
  address: string;
  /** 32 random bytes. */
  nonce: Uint8Array;
}

/** The handshake failed; the message is the reason, safe to log (no secrets). */
export class HandshakeError extends Error {
  /** True when the connection closed or went silent, rather than a side refusing the other. */
  readonly lost: boolean;
  /** Makes a HandshakeError with the reason. */
  constructor(message: string, lost = false) {
    super(message);
    this.name = "HandshakeError";
    this.lost = lost;
  }
}

/** The other side belongs to another cluster (another token's, or another data dir's). */
export class WrongClusterError extends HandshakeError {
  /** The cluster this side belongs to (a client: its token's). */
  readonly local: string;
  /** The cluster the other side said it belongs to. */
  readonly remote: string;

  /** Makes the error; the message names both clusters from this side's point of view. */
  constructor(local: string, remote: string) {
    super(
      `Wrong cluster: the other side belongs to cluster ${remote.slice(0, 8)}..., this side to ${
        local.slice(0, 8)
      }...`,
    );
    this.name = "WrongClusterError";
    this.local = local;
    this.remote = remote;
  }
}

/** 16 bytes of a cluster id from its 32 hex characters. */
export function clusterIdBytes(clusterId: string): Uint8Array {
  if (!/^[0-9a-f]{32}$/.test(clusterId)) {
    throw new RangeError(`A cluster id is 32 lowercase hex characters (got '${clusterId}')`);
  }
  const out = new Uint8Array(16);
  for (let i = 0; i < 16; i++) out[i] = parseInt(clusterId.slice(2 * i, 2 * i + 2), 16);
  return out;
}

function hexOf(bytes: Uint8Array): string {
  return Array.from(bytes, (b) => b.toString(16).padStart(2, "0")).join("");
}

/** Encodes a hello frame body. */
export function encodeHello(hello: Hello): Uint8Array {
  const address = new TextEncoder().encode(hello.address);
  if (address.length > ADDRESS_BYTES_MAX) {
    throw new RangeError(`An address is at most ${ADDRESS_BYTES_MAX} bytes`);
  }
  return new ByteWriter(64 + address.length)
    .raw(MAGIC)
    .u16(hello.version)
    .u8(hello.kind === "peer" ? 1 : 2)
    .raw(clusterIdBytes(hello.clusterId))
    .u32(hello.nodeId)
    .raw(hello.nonce)
    .bytes(address)
    .finish();
}

/** Decodes a hello frame body; throws WireError when malformed. */
export function decodeHello(body: Uint8Array): Hello {
  const r = new ByteReader(body);
  const magic = r.raw(4, "magic");
  if (magic.some((b, i) => b !== MAGIC[i])) {
    throw new WireError("The first frame is not a Seguro hello (bad magic)");
  }
  const version = r.u16("version");
  const kindCode = r.u8("connection kind");
  if (kindCode !== 1 && kindCode !== 2) {
    throw new WireError(`The connection kind ${kindCode} is unknown`);
  }
  const clusterId = hexOf(r.raw(16, "cluster id"));
  const nodeId = r.u32("node id");
  const nonce = r.raw(32, "nonce").slice();
  const addressBytes = r.bytes("address");
  if (addressBytes.length > ADDRESS_BYTES_MAX) throw new WireError("The address is too long");
  const address = new TextDecoder().decode(addressBytes);
  r.end("hello");
  return { version, kind: kindCode === 1 ? "peer" : "client", clusterId, nodeId, address, nonce };
}

function proof(secret: Uint8Array, label: string, initiator: Uint8Array, acceptor: Uint8Array) {
  return createHmac("sha256", secret)
    .update(label)
    .update(initiator)
    .update(acceptor)
    .digest();
}

/** What this side says about itself. */
export interface LocalHello {
  /** Peer (a node) or client (the CLI). */
  kind: ConnKind;
  /** This side's cluster id (a client gets it from the join token or the data dir). */
  clusterId: string;
  /** This node's id, 0 for a client. */
  nodeId: number;
  /** Where this node can be reached, "" for a client. */
  address: string;
}

async function readFrame(fc: FrameConn, type: number, what: string): Promise<Uint8Array> {
  const f = await fc.read();
  if (f === null) throw new HandshakeError(`The connection closed before the ${what}`, true);
  if (f.type === FrameType.goodbye) {
    throw new HandshakeError(`The other side refused: ${new TextDecoder().decode(f.body)}`);
  }
  if (f.type !== type) throw new HandshakeError(`Expected the ${what}, got frame type ${f.type}`);
  return f.body;
}

/**
 * Runs the handshake on a fresh connection and returns the other side's
 * hello once both proofs check. On failure the connection is closed (after a
 * goodbye saying why, where that is safe) and HandshakeError is thrown.
 */
export async function handshake(
  fc: FrameConn,
  side: "initiator" | "acceptor",
  local: LocalHello,
  secret: Uint8Array,
): Promise<Hello> {
  const timer = setTimeout(() => fc.close(), HANDSHAKE_TIMEOUT_MS);
  try {
    const mine = encodeHello({
      version: PROTOCOL_VERSION,
      ...local,
      nonce: crypto.getRandomValues(new Uint8Array(32)),
    });
    fc.send(FrameType.hello, mine);
    let theirs: Uint8Array;
    let hello: Hello;
    try {
      theirs = await readFrame(fc, FrameType.hello, "hello");
      hello = decodeHello(theirs);
    } catch (e) {
      if (fc.closed) throw new HandshakeError(`No hello within ${HANDSHAKE_TIMEOUT_MS} ms`, true);
      throw e instanceof WireError ? new HandshakeError(e.message) : e;
    }
    const refuse = async (reason: string): Promise<never> => {
      await fc.goodbye(reason);
      throw new HandshakeError(reason);
    };
    if (hello.version !== PROTOCOL_VERSION) {
      await refuse(
        `Protocol version ${hello.version} is not supported (this node speaks ${PROTOCOL_VERSION}); run the same seguro version on every node`,
      );
    }
    if (hello.clusterId !== local.clusterId) {
      await fc.goodbye(
        `Wrong cluster: the sender of this goodbye belongs to cluster ${
          local.clusterId.slice(0, 8)
        }..., not ${hello.clusterId.slice(0, 8)}...`,
      );
      throw new WrongClusterError(local.clusterId, hello.clusterId);
    }
    if (side === "acceptor" && hello.kind === "peer" && hello.nodeId < 1) {
      await refuse("A peer must have a node id of at least 1");
    }
    const [initiator, acceptor] = side === "initiator" ? [mine, theirs] : [theirs, mine];
    const myLabel = `seguro/1 ${side}`;
    const theirLabel = `seguro/1 ${side === "initiator" ? "acceptor" : "initiator"}`;
    fc.send(FrameType.auth, proof(secret, myLabel, initiator, acceptor));
    const theirProof = await readFrame(fc, FrameType.auth, "proof of the cluster secret");
    const expected = proof(secret, theirLabel, initiator, acceptor);
    if (theirProof.length !== expected.length || !timingSafeEqual(theirProof, expected)) {
      await refuse("Authentication failed: the cluster secret does not match (check the token)");
    }
    fc.frameBytesMax = FRAME_BYTES_MAX;
    return hello;
  } finally {
    clearTimeout(timer);
  }
}
