/**
 * The version of the vere an `--exec` command runs, as vere names itself
 * (`urbit -R` prints `urbit 3.0-954fd0b471` first). Standby piers record it
 * in new epochs' `vere.txt`: vere 3.x and 4.x roll a new epoch on every start
 * whose `vere.txt` names another version.
 * @module
 */

import { basename } from "node:path";

/** How long `urbit -R` may take. */
const VERSION_TIMEOUT_MS = 10_000;

/**
 * The version `program -R` reports, or undefined when the program is not
 * named like vere (`urbit`, `vere`: anything else may take `-R` for
 * something else) or does not say.
 */
export async function runtimeVersion(program: string): Promise<string | undefined> {
  if (!/urbit|vere/i.test(basename(program))) return undefined;
  let child: Deno.ChildProcess;
  try {
    child = new Deno.Command(program, {
      args: ["-R"],
      stdin: "null",
      stdout: "piped",
      stderr: "null",
    }).spawn();
  } catch {
    return undefined;
  }
  const timer = setTimeout(() => {
    try {
      child.kill("SIGKILL");
    } catch {
      // exited already
    }
  }, VERSION_TIMEOUT_MS);
  try {
    const out = await child.output();
    return /^urbit (\S+)/m.exec(new TextDecoder().decode(out.stdout))?.[1];
  } finally {
    clearTimeout(timer);
  }
}
