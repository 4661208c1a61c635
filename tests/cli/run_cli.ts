/**
 * Running the `seguro` CLI as a child process with the release permission
 * set, for the CLI tests.
 * @module
 */

import assert from "node:assert/strict";
import { selfCommand } from "../../server/self_command.ts";

/** What a CLI run printed and how it exited. */
export interface Run {
  code: number;
  stdout: string;
  stderr: string;
}

/** Runs `seguro args` to its end (killed after `timeoutMs`, when given). */
export async function seguro(
  args: string[],
  env: Record<string, string> = {},
  timeoutMs?: number,
): Promise<Run> {
  const self = selfCommand(args);
  const { code, stdout, stderr } = await new Deno.Command(self.cmd, {
    args: self.args,
    env: { NO_COLOR: "", FORCE_COLOR: "", ...env },
    stdout: "piped",
    stderr: "piped",
    signal: timeoutMs === undefined ? undefined : AbortSignal.timeout(timeoutMs),
  }).output();
  const text = new TextDecoder();
  return { code, stdout: text.decode(stdout), stderr: text.decode(stderr) };
}

/** A usage or failure error is exactly one line on stderr, starting `error:`. */
export function assertOneLineError(run: Run, code: number, pattern: RegExp): void {
  assert.equal(run.code, code, `exit code; stderr: ${run.stderr}`);
  const lines = run.stderr.trimEnd().split("\n");
  assert.equal(lines.length, 1, `one line, got: ${run.stderr}`);
  assert.match(lines[0], /^error: /);
  assert.match(lines[0], pattern);
}
