/**
 * The `seguro` command line: builds the program from the command modules and
 * runs it with consistent errors (one line on stderr; exit 2 for usage
 * errors, 1 for failures).
 * @module
 */

import { Command, CommanderError } from "@commander-js/extra-typings";
import { VERSION } from "../cluster/version.ts";
import { CliError, EXIT_FAILURE, EXIT_USAGE } from "./lib/errors.ts";
import { missingPermission } from "../server/errors.ts";
import { colors } from "./lib/output.ts";
import { cliErrorOf } from "./lib/options.ts";
import { nounCommand } from "./noun.ts";
import { pillCommand } from "./pill.ts";
import { initCommand } from "./init.ts";
import { joinCommand } from "./join.ts";
import { runCommand } from "./run.ts";
import { statusCommand } from "./status.ts";
import { memberCommand } from "./member.ts";
import { doctorCommand } from "./doctor.ts";
import { tokenCommand } from "./token.ts";
import { certCommand } from "./cert.ts";
import { shipCommand } from "./ship.ts";
import { addPierCommands } from "./ship_pier.ts";
import { logCommand } from "./log.ts";
import { demoCommand } from "./demo.ts";
import { benchCommand } from "./bench.ts";
import { execGuardCommand } from "./exec_guard.ts";

/** Applies the settings every command shares, to it and its subcommands. */
function configure(command: Command): void {
  command
    .exitOverride()
    .configureOutput({ outputError: () => {} })
    .showSuggestionAfterError(true)
    .allowExcessArguments(false);
  for (const sub of command.commands as Command[]) configure(sub);
}

/** Builds the whole `seguro` program. */
export function buildCli(): Command {
  const program = new Command("seguro")
    .description("Seguro: a replicated event log for Urbit ships")
    .version(VERSION, "-V, --version", "print the version")
    .helpOption("-h, --help", "show help");
  program.addCommand(demoCommand());
  program.addCommand(initCommand());
  program.addCommand(joinCommand());
  program.addCommand(runCommand());
  program.addCommand(statusCommand());
  program.addCommand(memberCommand());
  program.addCommand(doctorCommand());
  const ship = shipCommand();
  addPierCommands(ship); // import, export, attach: the pier side of `seguro ship`
  program.addCommand(ship);
  program.addCommand(logCommand());
  program.addCommand(benchCommand());
  program.addCommand(tokenCommand());
  program.addCommand(certCommand());
  program.addCommand(nounCommand());
  program.addCommand(pillCommand());
  program.addCommand(execGuardCommand(), { hidden: true });
  configure(program);
  return program;
}

/** The words of the (sub)command `argv` names, e.g. `seguro noun cue`. */
function commandPathOf(argv: readonly string[]): string {
  const words = ["seguro"];
  let cur = buildCli();
  for (const arg of argv) {
    const sub = (cur.commands as Command[]).find((c) => c.name() === arg);
    if (sub === undefined) break;
    words.push(arg);
    cur = sub;
  }
  return words.join(" ");
}

/**
 * A failure that is the user's to fix, as a CliError: client, API and store
 * errors that escaped a command, and a permission this process lacks; else
 * `e` unchanged (a real bug).
 */
function userErrorOf(e: unknown): unknown {
  if (e instanceof Deno.errors.NotCapable) {
    return new CliError(missingPermission(e));
  }
  return cliErrorOf(e);
}

/**
 * Runs the CLI on `argv` (the arguments after the program name) and returns
 * the exit code. Errors are printed as one line: `error: <what>; <fix>`.
 */
export async function runCli(argv: readonly string[]): Promise<number> {
  const program = buildCli();
  try {
    await program.parseAsync([...argv], { from: "user" });
    return 0;
  } catch (e) {
    if (e instanceof CommanderError) {
      if (e.code === "commander.helpDisplayed" || e.code === "commander.version") return 0;
      if (e.code === "commander.help" || e.code === "commander.executeSubCommandAsync") {
        return e.exitCode;
      }
      const what = e.message.replace(/^error: /, "").replace(/\n+/g, " ").trim();
      const where = commandPathOf(argv);
      console.error(`${colors.red("error:")} ${what}; run '${where} --help' for usage`);
      return EXIT_USAGE;
    }
    const known = userErrorOf(e);
    if (known instanceof CliError) {
      console.error(`${colors.red("error:")} ${known.message}`);
      return known.exitCode;
    }
    const err = e as Error;
    console.error(
      `${
        colors.red("error:")
      } internal error: ${err.message}; please report it with the command you ran`,
    );
    if (Deno.env.get("SEGURO_DEBUG")) console.error(err.stack);
    return EXIT_FAILURE;
  }
}
