/**
 * One-line renderings of messages and entries for simulator traces.
 *
 * @module
 */

import type { Entry, Message } from "../../core/mod.ts";

/** Renders an entry as `index/term:type[:payload]`. */
export function formatEntry(e: Entry): string {
  if (e.type === "noop") return `${e.index}/${e.term}:noop`;
  if (e.type === "conf") return `${e.index}/${e.term}:conf`;
  return `${e.index}/${e.term}:${payloadLabel(e.data)}`;
}

/** Renders a client payload (first 4 bytes as a little-endian counter). */
export function payloadLabel(data: Uint8Array): string {
  if (data.byteLength < 4) return `<${data.byteLength}b>`;
  return `p${new DataView(data.buffer, data.byteOffset, 4).getUint32(0, true)}`;
}

/** Renders a message as `from->to type(term ...)`. */
export function formatMessage(m: Message): string {
  const head = `${m.from}->${m.to} ${m.type} t${m.term}`;
  switch (m.type) {
    case "app": {
      const es = m.entries.length === 0
        ? ""
        : ` [${m.entries[0].index}..${m.entries[m.entries.length - 1].index}]`;
      return `${head} prev=${m.index}/${m.logTerm} commit=${m.commit}${es}`;
    }
    case "appResp":
      return m.reject
        ? `${head} reject ${m.index} hint=${m.hintIndex}/${m.hintTerm}`
        : `${head} ok ${m.index}`;
    case "vote":
    case "preVote":
      return `${head} last=${m.index}/${m.logTerm}${m.transfer ? " transfer" : ""}`;
    case "voteResp":
    case "preVoteResp":
      return `${head} ${m.reject ? "reject" : "grant"}`;
    case "heartbeat":
      return `${head} commit=${m.commit} read=${m.readSeq}`;
    case "heartbeatResp":
      return `${head} read=${m.readSeq}`;
    case "snap":
      return `${head} snapshot=${m.snapshot.index}/${m.snapshot.term}`;
    case "readIndexResp":
      return `${head} index=${m.index}`;
    default:
      return head;
  }
}
