/**
 * Single-server membership changes: applying one to a {@linkcode ConfState}
 * and the binary form stored in `conf` entries.
 *
 * @module
 */

import type { ConfChange, ConfChangeRecord, ConfState } from "./messages.ts";

const CHANGE_TYPES: readonly ConfChange["type"][] = [
  "addLearner",
  "promoteLearner",
  "addVoter",
  "removeNode",
];

/** Largest node id the binary form can carry (u32). */
export const MAX_NODE_ID = 0xffff_ffff;

/**
 * Returns the membership after `change`, or a sentence saying why the change
 * is not valid for `conf` (the caller turns it into a refusal).
 */
export function applyConfChange(conf: ConfState, change: ConfChange): ConfState | string {
  const id = change.nodeId;
  if (!Number.isInteger(id) || id < 1 || id > MAX_NODE_ID) {
    return `Node id ${id} is not an integer between 1 and ${MAX_NODE_ID}`;
  }
  const isVoter = conf.voters.includes(id);
  const isLearner = conf.learners.includes(id);
  switch (change.type) {
    case "addLearner":
      if (isVoter || isLearner) return `Node ${id} is already a member`;
      return { voters: conf.voters, learners: sorted([...conf.learners, id]) };
    case "addVoter":
      if (isVoter || isLearner) return `Node ${id} is already a member; promote a learner instead`;
      return { voters: sorted([...conf.voters, id]), learners: conf.learners };
    case "promoteLearner":
      if (!isLearner) return `Node ${id} is not a learner`;
      return {
        voters: sorted([...conf.voters, id]),
        learners: conf.learners.filter((n) => n !== id),
      };
    case "removeNode":
      if (!isVoter && !isLearner) return `Node ${id} is not a member`;
      if (isVoter && conf.voters.length === 1) return `Node ${id} is the last voter`;
      return {
        voters: conf.voters.filter((n) => n !== id),
        learners: conf.learners.filter((n) => n !== id),
      };
  }
}

/** True when `a` and `b` have the same voters and learners. */
export function confEquals(a: ConfState, b: ConfState): boolean {
  return sameIds(a.voters, b.voters) && sameIds(a.learners, b.learners);
}

/** Every member of `conf` (voters then learners). */
export function confMembers(conf: ConfState): number[] {
  return [...conf.voters, ...conf.learners];
}

/**
 * Encodes a record as bytes: u8 change type, u32 node id, u32 voter count,
 * voters (u32 each), u32 learner count, learners (u32 each); little endian.
 */
export function encodeConfChangeRecord(record: ConfChangeRecord): Uint8Array {
  const { voters, learners } = record.conf;
  const bytes = new Uint8Array(1 + 4 + 4 + 4 * voters.length + 4 + 4 * learners.length);
  const view = new DataView(bytes.buffer);
  bytes[0] = CHANGE_TYPES.indexOf(record.change.type);
  view.setUint32(1, record.change.nodeId, true);
  let at = 5;
  for (const list of [voters, learners]) {
    view.setUint32(at, list.length, true);
    at += 4;
    for (const id of list) {
      view.setUint32(at, id, true);
      at += 4;
    }
  }
  return bytes;
}

/** Decodes {@linkcode encodeConfChangeRecord}'s bytes; throws on malformed input. */
export function decodeConfChangeRecord(bytes: Uint8Array): ConfChangeRecord {
  const view = new DataView(bytes.buffer, bytes.byteOffset, bytes.byteLength);
  if (bytes.length < 13) {
    throw new RangeError(`Conf change record has ${bytes.length} bytes, fewer than the 13 minimum`);
  }
  const type = CHANGE_TYPES[bytes[0]];
  if (type === undefined) throw new RangeError(`Conf change type ${bytes[0]} is unknown`);
  const nodeId = view.getUint32(1, true);
  let at = 5;
  const lists: number[][] = [];
  for (let l = 0; l < 2; l++) {
    if (at + 4 > bytes.length) throw new RangeError("Conf change record is truncated");
    const n = view.getUint32(at, true);
    at += 4;
    if (at + 4 * n > bytes.length) throw new RangeError("Conf change record is truncated");
    const list: number[] = [];
    for (let i = 0; i < n; i++, at += 4) list.push(view.getUint32(at, true));
    lists.push(list);
  }
  if (at !== bytes.length) {
    throw new RangeError(`Conf change record has ${bytes.length - at} trailing bytes`);
  }
  return { change: { type, nodeId }, conf: { voters: lists[0], learners: lists[1] } };
}

function sorted(ids: number[]): number[] {
  return ids.sort((a, b) => a - b);
}

function sameIds(a: readonly number[], b: readonly number[]): boolean {
  if (a.length !== b.length) return false;
  for (let i = 0; i < a.length; i++) if (a[i] !== b[i]) return false;
  return true;
}
