/**
 * Looking into nouns: statistics of a noun, the sub-noun at an axis path, and
 * a bounded, readable rendering (`[%pill %brass ...]`). No recursion.
 * @module
 */

import { cordText, isCell, type Noun, NounError } from "./noun.ts";

/** Shape statistics of a noun, counted over its distinct cells (a shared subtree counts once). */
export interface NounStats {
  /** Distinct cells. */
  cells: number;
  /** Atom leaves of the distinct cells (plus the root when it is an atom). */
  atoms: number;
  /** Longest path from the root to an atom, in cells. */
  depth: number;
  /** Bytes of the largest atom. */
  largestAtomBytes: number;
}

/** Computes {@linkcode NounStats}. */
export function nounStats(noun: Noun): NounStats {
  const stats: NounStats = { cells: 0, atoms: 0, depth: 0, largestAtomBytes: 0 };
  const countAtom = (atom: bigint) => {
    stats.atoms++;
    const bytes = Math.ceil(atom.toString(16).length / 2);
    if (atom !== 0n && bytes > stats.largestAtomBytes) stats.largestAtomBytes = bytes;
  };
  if (!isCell(noun)) {
    countAtom(noun);
    return stats;
  }
  const depth = new Map<Noun, number>();
  const stack: Noun[] = [noun];
  while (stack.length > 0) {
    const top = stack[stack.length - 1];
    if (!isCell(top) || depth.has(top)) {
      stack.pop();
      continue;
    }
    const { head, tail } = top;
    if (isCell(head) && !depth.has(head)) {
      stack.push(head);
      continue;
    }
    if (isCell(tail) && !depth.has(tail)) {
      stack.push(tail);
      continue;
    }
    stats.cells++;
    if (!isCell(head)) countAtom(head);
    if (!isCell(tail)) countAtom(tail);
    const d = 1 +
      Math.max(isCell(head) ? depth.get(head)! : 0, isCell(tail) ? depth.get(tail)! : 0);
    depth.set(top, d);
    stack.pop();
  }
  stats.depth = depth.get(noun)!;
  return stats;
}

/**
 * Parses an axis path like `/2/3`: each segment is a Nock axis (1 is the
 * noun, 2 its head, 3 its tail, 6 the head of the tail...) applied in turn.
 */
export function parseAxisPath(text: string): bigint[] {
  if (!/^(\/[0-9]+)+$/.test(text) && text !== "/") {
    throw new NounError(`The path '${text}' is not a list of axes; write it like /2/3 or /6`);
  }
  const axes = text.split("/").filter((s) => s !== "").map((s) => BigInt(s));
  for (const axis of axes) {
    if (axis === 0n) throw new NounError("Axis 0 does not exist; axes start at 1 (the whole noun)");
  }
  return axes;
}

/** The sub-noun at each axis of `axes` in turn; throws NounError where an atom has no such part. */
export function nounAt(noun: Noun, axes: readonly bigint[]): Noun {
  let cur = noun;
  const walked: string[] = [];
  for (const axis of axes) {
    const route = axis.toString(2).slice(1); // after the leading 1: 0 = head, 1 = tail
    for (const step of route) {
      if (!isCell(cur)) {
        throw new NounError(
          `There is no axis ${axis} under /${walked.join("/")}: an atom is in the way`,
        );
      }
      cur = step === "0" ? cur.head : cur.tail;
    }
    walked.push(axis.toString());
  }
  return cur;
}

/** How an atom reads: `%term` if it spells one, `'text'` if printable, else `@ud` or `@ux`. */
export function renderAtom(atom: bigint, textCharsMax = 60): string {
  if (atom === 0n) return "0";
  const text = atom >= 0x61n ? cordText(atom) : undefined;
  if (text !== undefined) {
    if (/^[a-z][a-z0-9-]*$/.test(text) && text.length <= textCharsMax) return `%${text}`;
    if (text.length >= 2 && /^[\x20-\x7e\n\t]+$/.test(text)) {
      const shown = text.length > textCharsMax ? text.slice(0, textCharsMax) + "..." : text;
      const suffix = text.length > textCharsMax ? ` (${text.length} chars)` : "";
      return `'${
        shown.replaceAll("\\", "\\\\").replaceAll("'", "\\'").replaceAll("\n", "\\0a")
      }'${suffix}`;
    }
  }
  if (atom < 0x1_0000_0000n) return atom.toString().replace(/\B(?=(\d{3})+(?!\d))/g, ".");
  const hex = atom.toString(16);
  if (hex.length > 32) return `0x${hex.slice(-32)}... (${Math.ceil(hex.length / 2)} bytes)`;
  return "0x" + hex;
}

/** Result of {@linkcode renderNoun}. */
export interface Rendering {
  /** The text, at most `maxChars` long plus a closing marker. */
  text: string;
  /** True when the noun did not fit. */
  truncated: boolean;
}

/**
 * Renders a noun like Hoon prints one: `[a b c]` for right-nested cells, `~`
 * for a tuple's final 0, atoms as {@linkcode renderAtom}. Stops at `maxChars`.
 */
export function renderNoun(noun: Noun, maxChars = 2000): Rendering {
  type Step = { noun: Noun; inTail: boolean };
  const out: string[] = [];
  let length = 0;
  const emit = (s: string) => {
    out.push(s);
    length += s.length;
  };
  const stack: Step[] = [{ noun, inTail: false }];
  while (stack.length > 0) {
    if (length > maxChars) {
      return { text: out.join("").slice(0, maxChars) + " ...", truncated: true };
    }
    const { noun: n, inTail } = stack.pop()!;
    if (!inTail) {
      if (isCell(n)) {
        emit("[");
        stack.push({ noun: n.tail, inTail: true }, { noun: n.head, inTail: false });
      } else {
        emit(renderAtom(n));
      }
    } else if (isCell(n)) {
      emit(" ");
      stack.push({ noun: n.tail, inTail: true }, { noun: n.head, inTail: false });
    } else {
      emit(n === 0n ? " ~]" : ` ${renderAtom(n)}]`);
    }
  }
  return { text: out.join(""), truncated: false };
}
