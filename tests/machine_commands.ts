/**
 * Helpers for tests of the state machine: committing commands the way the
 * driver does, and the commands that store an epoch image.
 * @module
 */

import { type ApplyResult, encodeCommand, type Machine } from "../cluster/machine.ts";
import { sha256 } from "../cluster/images.ts";
import type { Store } from "../cluster/store.ts";

/**
 * Applies `commands` as committed at `from`, `from + 1`, ... in term 1
 * (persisted first, as the driver does: applied rows point into the entries).
 */
export function applyAll(
  store: Store,
  machine: Machine,
  commands: Uint8Array[],
  from = 1,
): ApplyResult[] {
  store.persist({
    entries: commands.map((data, i) => ({ index: from + i, term: 1, type: "normal", data })),
    hardState: { term: 1, vote: 1, commit: from + commands.length - 1 },
  });
  const results: ApplyResult[] = [];
  store.applyTransaction(from + commands.length - 1, () => {
    commands.forEach((c, i) => results.push(machine.apply(c, from + i, 1)));
  });
  return results;
}

/**
 * Commands that store `ship`'s image of `epoch` (`file`) in chunks of
 * `chunkBytes`, then complete it unless `partial`.
 */
export function imageCommands(
  ship: bigint,
  epoch: number,
  file: Uint8Array,
  options: { chunkBytes: number; partial?: boolean },
): Uint8Array[] {
  const out: Uint8Array[] = [];
  for (let offset = 0; offset < file.length; offset += options.chunkBytes) {
    const data = file.subarray(offset, offset + options.chunkBytes);
    out.push(
      encodeCommand({ kind: "imageChunk", ship, epoch, offset, sha256: sha256(data), data }),
    );
  }
  if (options.partial !== true) {
    out.push(
      encodeCommand({ kind: "imageDone", ship, epoch, size: file.length, sha256: sha256(file) }),
    );
  }
  return out;
}
