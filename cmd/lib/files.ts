/**
 * Reading the files users name on the command line, with errors that say
 * what went wrong and what to do.
 * @module
 */

import { CliError } from "./errors.ts";
import { cue, type Noun, NounError } from "../../vere/noun.ts";

/** Reads a whole file; a missing, unreadable or non-regular file is a CliError. */
export function readInputFile(path: string): Uint8Array {
  try {
    const info = Deno.statSync(path);
    if (info.isDirectory) throw new CliError(`${path} is a directory; give the path of a file`);
    return Deno.readFileSync(path);
  } catch (e) {
    if (e instanceof CliError) throw e;
    if (e instanceof Deno.errors.NotFound) {
      throw new CliError(`cannot read ${path}: no such file; check the path`);
    }
    if (e instanceof Deno.errors.PermissionDenied || e instanceof Deno.errors.NotCapable) {
      throw new CliError(`cannot read ${path}: permission denied; check the file's permissions`);
    }
    throw new CliError(`cannot read ${path}: ${(e as Error).message}`);
  }
}

/** Reads and cues a file of jammed noun bytes; a malformed file is a CliError. */
export function readNounFile(path: string): { bytes: Uint8Array; noun: Noun } {
  const bytes = readInputFile(path);
  try {
    return { bytes, noun: cue(bytes) };
  } catch (e) {
    if (e instanceof NounError) {
      throw new CliError(`${path} is not a jammed noun: ${e.message}`);
    }
    throw e;
  }
}
