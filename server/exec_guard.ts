/**
 * The exec guard: runs a ship's runtime command for a node and makes sure it
 * never outlives that node. The node spawns the guard (`seguro exec-guard`)
 * with a pipe on its stdin; when the node dies, even by SIGKILL, the pipe
 * closes and the guard stops the command: SIGTERM, then SIGKILL after the
 * grace period. SIGTERM or SIGINT to the guard does the same. The guard exits
 * with the command's exit code (128 + signal number when a signal ended it).
 * @module
 */

const SIGNAL_NUMBERS: Record<string, number> = { SIGTERM: 15, SIGKILL: 9, SIGINT: 2 };

/** Runs `argv` under the guard; resolves to its exit code. */
export async function guard(argv: string[], graceMs: number): Promise<number> {
  let child: Deno.ChildProcess | undefined;
  let stopping = false;
  const stop = () => {
    if (stopping || child === undefined) return;
    stopping = true;
    try {
      child.kill("SIGTERM");
    } catch { /* already exited */ }
    const timer = setTimeout(() => {
      try {
        child?.kill("SIGKILL");
      } catch { /* already exited */ }
    }, graceMs);
    child.status.finally(() => clearTimeout(timer));
  };
  // Listening before the spawn: a signal between the two would otherwise end the guard
  // by its default action and leave the command running, unguarded. A listener runs only
  // after this synchronous block, once `child` is set.
  Deno.addSignalListener("SIGTERM", stop);
  Deno.addSignalListener("SIGINT", stop);
  try {
    try {
      child = new Deno.Command(argv[0], {
        args: argv.slice(1),
        stdin: "null",
        stdout: "inherit",
        stderr: "inherit",
      }).spawn();
    } catch (e) {
      console.error(`seguro exec-guard: cannot start ${argv[0]}: ${(e as Error).message}`);
      return 127;
    }
    // The node holds the write end of stdin: end of file means the node is gone.
    (async () => {
      try {
        for await (const _ of Deno.stdin.readable) { /* the node sends nothing */ }
      } catch { /* a broken pipe is the same news */ }
      stop();
    })();
    const status = await child.status;
    return status.signal === null ? status.code : 128 + (SIGNAL_NUMBERS[status.signal] ?? 0);
  } finally {
    Deno.removeSignalListener("SIGTERM", stop);
    Deno.removeSignalListener("SIGINT", stop);
  }
}
