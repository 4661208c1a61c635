/**
 * How a log entry's type is written as a number: in the store's `log_entry`
 * table, in AppendEntries on the wire (cluster/wire.ts) and in the admin
 * protocol's `read` answers (cluster/admin_protocol.ts). One table, so the
 * three can never disagree.
 *
 * ```
 * 0 normal   1 conf   2 noop
 * ```
 * @module
 */

import type { EntryType } from "../core/mod.ts";

/** The code of each entry type. */
export const ENTRY_TYPE_CODE: Readonly<Record<EntryType, number>> = { normal: 0, conf: 1, noop: 2 };

/** Entry types by code. */
const ENTRY_TYPE_OF_CODE: readonly EntryType[] = ["normal", "conf", "noop"];

/** The code of `type`. */
export function entryTypeCode(type: EntryType): number {
  const code = ENTRY_TYPE_CODE[type];
  if (code === undefined) throw new RangeError(`'${type}' is not an entry type`);
  return code;
}

/** The entry type written as `code`, or undefined when no type has that code. */
export function entryTypeOfCode(code: number): EntryType | undefined {
  return ENTRY_TYPE_OF_CODE[code];
}
