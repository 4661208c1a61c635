/**
 * `seguro noun cue FILE` and `seguro noun mug FILE`: look inside a jammed noun.
 * @module
 */

import { Command, type CommandUnknownOpts } from "@commander-js/extra-typings";
import { mug, type Noun, NounError } from "../vere/noun.ts";
import { nounAt, nounStats, parseAxisPath, renderNoun } from "../vere/noun_show.ts";
import { readNounFile } from "./lib/files.ts";
import { CliError, UsageError } from "./lib/errors.ts";
import { count, formatFields, hex32, note, print, toJson } from "./lib/output.ts";

function parseMaxChars(value: string): number {
  const n = Number(value);
  if (!Number.isInteger(n) || n < 10) {
    throw new UsageError(`--max-chars must be a whole number of at least 10 (got '${value}')`);
  }
  return n;
}

/** Builds the `noun` command group. */
export function nounCommand(): CommandUnknownOpts {
  const group = new Command("noun").description("look inside jammed nouns (Urbit's binary format)");

  group
    .command("cue")
    .description("summarize a jammed noun: size, depth, cells, atoms, mug")
    .argument("<file>", "a file of jam bytes (a pill, an event, a message)")
    .option("--path <axes>", "print the sub-noun at these axes instead, e.g. /2/3")
    .option("--max-chars <n>", "longest rendering --path prints", parseMaxChars, 2000)
    .option("--json", "print JSON")
    .action((file, options) => {
      const { bytes, noun } = readNounFile(file);
      if (options.path !== undefined) {
        let axes: bigint[];
        try {
          axes = parseAxisPath(options.path);
        } catch (e) {
          throw new UsageError(`--path: ${(e as NounError).message}`);
        }
        let sub: Noun;
        try {
          sub = nounAt(noun, axes);
        } catch (e) {
          throw new CliError(`--path ${options.path}: ${(e as NounError).message}`);
        }
        const shown = renderNoun(sub, options.maxChars);
        if (options.json) {
          print(
            toJson({
              path: options.path,
              mug: hex32(mug(sub)),
              ...nounStats(sub),
              text: shown.text,
            }),
          );
        } else {
          print(shown.text);
          if (shown.truncated) {
            note(`(truncated at ${options.maxChars} characters; raise --max-chars)`);
          }
        }
        return;
      }
      const stats = nounStats(noun);
      const m = mug(noun);
      if (options.json) {
        print(toJson({ file, bytes: bytes.length, mug: hex32(m), ...stats }));
        return;
      }
      print(formatFields([
        ["file", file],
        ["bytes", count(bytes.length)],
        ["mug", hex32(m)],
        ["depth", count(stats.depth)],
        ["cells", `${count(stats.cells)} distinct`],
        ["atoms", `${count(stats.atoms)} (largest ${count(stats.largestAtomBytes)} bytes)`],
        ["starts", renderNoun(noun, 60).text],
      ]));
    });

  group
    .command("mug")
    .description("print the mug (Urbit's 31-bit noun hash) of a jammed noun")
    .argument("<file>", "a file of jam bytes")
    .option("--json", "print JSON")
    .action((file, options) => {
      const m = mug(readNounFile(file).noun);
      print(options.json ? toJson({ file, mug: hex32(m) }) : hex32(m));
    });

  return group;
}
