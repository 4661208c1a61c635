/**
 * What a nemesis run must undo whatever happens: kill its nodes, remove its
 * namespaces and temp dir. Tasks run last-registered first, each once, from
 * the run's `finally` or from the SIGINT handler of main.ts.
 * @module
 */

const tasks: { what: string; run: () => Promise<void> }[] = [];

/** Registers a cleanup task; returns a function that runs it now (and unregisters it). */
export function onCleanup(what: string, run: () => Promise<void>): () => Promise<void> {
  const task = { what, run };
  tasks.push(task);
  return async () => {
    const i = tasks.indexOf(task);
    if (i < 0) return;
    tasks.splice(i, 1);
    await run();
  };
}

/** Runs every registered task, newest first; a failing task is reported and the rest still run. */
export async function runCleanup(report: (line: string) => void = console.error): Promise<void> {
  while (tasks.length > 0) {
    const task = tasks.pop()!;
    try {
      await task.run();
    } catch (e) {
      report(`cleanup: ${task.what} failed: ${(e as Error).message}`);
    }
  }
}
