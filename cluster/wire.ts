/**
 * The binary form of Raft messages between nodes. A message is a tag byte,
 * the header (group, from, to, term) and the fields of its type; entries and
 * contexts are length-prefixed byte strings. Decoding validates every field
 * and throws {@linkcode WireError}; it never trusts a count it has not
 * checked against the bytes present.
 *
 * ```
 * message := tag:u8 group:u32 from:u32 to:u32 term:u64 body
 * app            index:u64 logTerm:u64 commit:u64 n:u32 entry*n
 * appResp        index:u64 reject:u8 hintIndex:u64 hintTerm:u64
 * vote|preVote   index:u64 logTerm:u64 transfer:u8
 * voteResp|preVoteResp  reject:u8
 * heartbeat      commit:u64 readSeq:u64
 * heartbeatResp  readSeq:u64
 * snap           index:u64 term:u64 conf
 * timeoutNow     (nothing)
 * readIndex      context:bytes
 * readIndexResp  index:u64 context:bytes
 * snapOffer | snapPull | snapChunk   snapshot streaming (cluster/snapshot_stream.ts)
 * entry := index:u64 term:u64 type:u8 data:bytes     (type: cluster/entry_type.ts)
 * conf  := nv:u32 voter:u32*nv nl:u32 learner:u32*nl
 * ```
 * @module
 */

import type { ConfState, Entry, MessageType, SnapshotMeta } from "../core/mod.ts";
import { ByteReader, ByteWriter, WireError } from "./codec.ts";
import { entryTypeCode, entryTypeOfCode } from "./entry_type.ts";
import { shipKey, shipOfKey } from "./ships.ts";
import type { PeerMessage, SnapshotStreamMessage, WirePiece } from "./snapshot_stream.ts";

const TAGS: readonly (MessageType | SnapshotStreamMessage["type"])[] = [
  "app",
  "appResp",
  "vote",
  "preVote",
  "voteResp",
  "preVoteResp",
  "heartbeat",
  "heartbeatResp",
  "snap",
  "timeoutNow",
  "readIndex",
  "readIndexResp",
  "snapOffer",
  "snapPull",
  "snapChunk",
];
const TAG_OF = new Map<PeerMessage["type"], number>(TAGS.map((t, i) => [t, i + 1]));

/** Piece kinds on the wire. */
const PIECE_EVENTS = 1;
const PIECE_IMAGE = 2;

function writePiece(w: ByteWriter, p: WirePiece): void {
  w.u8(p.kind === "events" ? PIECE_EVENTS : PIECE_IMAGE).raw(shipKey(p.ship)).u64(p.addedIndex);
  if (p.kind === "events") w.u64(p.from).u64(p.to);
  else w.u64(p.epoch).u64(p.offset);
}

function readPiece(r: ByteReader): WirePiece {
  const kind = r.u8("piece kind");
  const ship = shipOfKey(r.raw(16, "ship"));
  const addedIndex = r.u64("added index");
  if (kind === PIECE_EVENTS) {
    return { kind: "events", ship, addedIndex, from: r.u64("from event"), to: r.u64("to event") };
  }
  if (kind === PIECE_IMAGE) {
    return { kind: "image", ship, addedIndex, epoch: r.u64("epoch"), offset: r.u64("offset") };
  }
  throw new WireError(`The snapshot piece kind ${kind} is unknown`);
}

/** Bytes of an encoded entry besides its data: index, term, type, data length. */
const ENTRY_FIXED_BYTES = 8 + 8 + 1 + 4;

/** Largest membership the wire accepts (voters + learners). */
export const CONF_MEMBERS_MAX = 1024;

function writeConf(w: ByteWriter, conf: ConfState): void {
  w.u32(conf.voters.length);
  for (const id of conf.voters) w.u32(id);
  w.u32(conf.learners.length);
  for (const id of conf.learners) w.u32(id);
}

function readIds(r: ByteReader, what: string): number[] {
  const n = r.u32(`${what} count`);
  if (n > CONF_MEMBERS_MAX || n * 4 > r.remaining) {
    throw new WireError(`The ${what} count ${n} is impossible for this frame`);
  }
  const ids: number[] = [];
  for (let i = 0; i < n; i++) ids.push(r.u32(what));
  return ids;
}

function readConf(r: ByteReader): ConfState {
  return { voters: readIds(r, "voter"), learners: readIds(r, "learner") };
}

function writeSnapshotMeta(w: ByteWriter, s: SnapshotMeta): void {
  w.u64(s.index).u64(s.term);
  writeConf(w, s.conf);
}

function readSnapshotMeta(r: ByteReader): SnapshotMeta {
  return { index: r.u64("snapshot index"), term: r.u64("snapshot term"), conf: readConf(r) };
}

/** Exact encoded size of a message, so it is written into one buffer without growing. */
function encodedSize(m: PeerMessage): number {
  let size = 1 + 4 + 4 + 4 + 8 + 64; // header plus room for fixed fields
  if (m.type === "app") {
    for (const e of m.entries) size += ENTRY_FIXED_BYTES + e.data.length;
  } else if (m.type === "readIndex" || m.type === "readIndexResp") {
    size += m.context.length;
  } else if (m.type === "snap" || m.type === "snapOffer") {
    size += 8 + 4 * (m.snapshot.conf.voters.length + m.snapshot.conf.learners.length);
    if (m.type === "snapOffer") size += m.manifest.length;
  } else if (m.type === "snapPull" || m.type === "snapChunk") {
    size += 64;
    if (m.type === "snapChunk") size += m.data.length;
  }
  return size;
}

/** Encodes a message (Raft's or snapshot streaming's). */
export function encodeMessage(m: PeerMessage): Uint8Array {
  const w = new ByteWriter(encodedSize(m));
  w.u8(TAG_OF.get(m.type)!).u32(m.groupId).u32(m.from).u32(m.to).u64(m.term);
  switch (m.type) {
    case "app":
      w.u64(m.index).u64(m.logTerm).u64(m.commit).u32(m.entries.length);
      for (const e of m.entries) {
        w.u64(e.index).u64(e.term).u8(entryTypeCode(e.type)).bytes(e.data);
      }
      break;
    case "appResp":
      w.u64(m.index).u8(m.reject ? 1 : 0).u64(m.hintIndex).u64(m.hintTerm);
      break;
    case "vote":
    case "preVote":
      w.u64(m.index).u64(m.logTerm).u8(m.transfer ? 1 : 0);
      break;
    case "voteResp":
    case "preVoteResp":
      w.u8(m.reject ? 1 : 0);
      break;
    case "heartbeat":
      w.u64(m.commit).u64(m.readSeq);
      break;
    case "heartbeatResp":
      w.u64(m.readSeq);
      break;
    case "snap":
      writeSnapshotMeta(w, m.snapshot);
      break;
    case "timeoutNow":
      break;
    case "readIndex":
      w.bytes(m.context);
      break;
    case "readIndexResp":
      w.u64(m.index).bytes(m.context);
      break;
    case "snapOffer":
      writeSnapshotMeta(w, m.snapshot);
      w.bytes(m.manifest);
      break;
    case "snapPull":
      w.u64(m.index);
      writePiece(w, m.piece);
      break;
    case "snapChunk":
      w.u64(m.index);
      writePiece(w, m.piece);
      w.u8(m.gone ? 1 : 0).raw(m.sha256).bytes(m.data);
      break;
  }
  return w.finish();
}

function flag(r: ByteReader, what: string): boolean {
  const b = r.u8(what);
  if (b > 1) throw new WireError(`The ${what} flag is ${b}, not 0 or 1`);
  return b === 1;
}

function readEntries(r: ByteReader): Entry[] {
  const n = r.u32("entry count");
  if (n * ENTRY_FIXED_BYTES > r.remaining) {
    throw new WireError(`The entry count ${n} is impossible for ${r.remaining} remaining bytes`);
  }
  const entries: Entry[] = [];
  for (let i = 0; i < n; i++) {
    const index = r.u64("entry index");
    const term = r.u64("entry term");
    const code = r.u8("entry type");
    const type = entryTypeOfCode(code);
    if (type === undefined) throw new WireError(`The entry type ${code} is unknown`);
    entries.push({ index, term, type, data: r.bytes("entry data") });
  }
  return entries;
}

/**
 * Decodes a message. The result's byte fields are views into `bytes`
 * (no copy). Throws WireError on anything malformed.
 */
export function decodeMessage(bytes: Uint8Array): PeerMessage {
  const r = new ByteReader(bytes);
  const code = r.u8("message tag");
  const type = TAGS[code - 1];
  if (type === undefined) throw new WireError(`The message tag ${code} is unknown`);
  const groupId = r.u32("group id");
  const from = r.u32("sender id");
  const to = r.u32("recipient id");
  const term = r.u64("term");
  const h = { groupId, from, to, term };
  let m: PeerMessage;
  switch (type) {
    case "app":
      m = {
        ...h,
        type,
        index: r.u64("index"),
        logTerm: r.u64("log term"),
        commit: r.u64("commit"),
        entries: readEntries(r),
      };
      break;
    case "appResp":
      m = {
        ...h,
        type,
        index: r.u64("index"),
        reject: flag(r, "reject"),
        hintIndex: r.u64("hint index"),
        hintTerm: r.u64("hint term"),
      };
      break;
    case "vote":
    case "preVote":
      m = {
        ...h,
        type,
        index: r.u64("index"),
        logTerm: r.u64("log term"),
        transfer: flag(r, "transfer"),
      };
      break;
    case "voteResp":
    case "preVoteResp":
      m = { ...h, type, reject: flag(r, "reject") };
      break;
    case "heartbeat":
      m = { ...h, type, commit: r.u64("commit"), readSeq: r.u64("read sequence") };
      break;
    case "heartbeatResp":
      m = { ...h, type, readSeq: r.u64("read sequence") };
      break;
    case "snap":
      m = { ...h, type, snapshot: readSnapshotMeta(r) };
      break;
    case "timeoutNow":
      m = { ...h, type };
      break;
    case "readIndex":
      m = { ...h, type, context: r.bytes("read context") };
      break;
    case "readIndexResp":
      m = { ...h, type, index: r.u64("index"), context: r.bytes("read context") };
      break;
    case "snapOffer":
      m = { ...h, type, snapshot: readSnapshotMeta(r), manifest: r.bytes("manifest") };
      break;
    case "snapPull":
      m = { ...h, type, index: r.u64("snapshot index"), piece: readPiece(r) };
      break;
    case "snapChunk":
      m = {
        ...h,
        type,
        index: r.u64("snapshot index"),
        piece: readPiece(r),
        gone: flag(r, "gone"),
        sha256: r.raw(32, "sha256"),
        data: r.bytes("chunk data"),
      };
      break;
  }
  r.end(`${type} message`);
  return m;
}
