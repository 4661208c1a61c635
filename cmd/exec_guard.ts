/**
 * `seguro exec-guard` (internal): the exec guard of server/exec_guard.ts.
 * @module
 */

import { Command, type CommandUnknownOpts } from "@commander-js/extra-typings";
import { positiveOption, UsageError } from "./lib/errors.ts";
import { guard } from "../server/exec_guard.ts";

/** The hidden `exec-guard` command. */
export function execGuardCommand(): CommandUnknownOpts {
  return new Command("exec-guard")
    .description("internal: run a ship's runtime command, stopping it when the node dies")
    .requiredOption("--grace-ms <ms>", "SIGTERM to SIGKILL grace", positiveOption("--grace-ms"))
    .argument("<command...>", "the command and its arguments (after --)")
    .action(async (argv, options) => {
      if (argv.length === 0) throw new UsageError("exec-guard needs a command after --");
      Deno.exit(await guard(argv, options.graceMs));
    });
}
