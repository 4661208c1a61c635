/**
 * CPU time of a process on this machine, for the CPU per released event the
 * benchmarks report: user + system time of all its threads, from
 * `/proc/PID/stat` (Linux only; elsewhere there is no figure).
 *
 * @example
 * ```ts ignore
 * const before = processCpuMicros(pid);
 * // ... the load ...
 * const after = processCpuMicros(pid);
 * if (before !== undefined && after !== undefined) console.log((after - before) / events);
 * ```
 * @module
 */

import { join } from "node:path";
import { PID_FILE } from "../cluster/store.ts";

/**
 * Clock ticks per second of the times in /proc/PID/stat: Linux reports them
 * in USER_HZ, which its user ABI fixes at 100 on x86 and arm (what
 * `getconf CLK_TCK` prints); one tick is 10 ms of CPU.
 */
export const PROC_TICKS_PER_SECOND = 100;

/** Microseconds of CPU in one /proc tick. */
const MICROS_PER_TICK = 1_000_000 / PROC_TICKS_PER_SECOND;

/**
 * utime and stime, fields 14 and 15 of /proc/PID/stat, counted from field 3
 * (the first after the `)` that closes field 2, the command name, which may
 * itself hold spaces and parentheses).
 */
const UTIME_AFTER_COMM = 14 - 3;
const STIME_AFTER_COMM = 15 - 3;

/**
 * User + system CPU time, in microseconds (10 ms steps), of the process
 * whose /proc/PID/stat line is `stat`. Throws on a line that is not one.
 */
export function cpuMicrosOfStat(stat: string): number {
  const close = stat.lastIndexOf(")");
  const fields = stat.slice(close + 1).trim().split(" ");
  const utime = Number(fields[UTIME_AFTER_COMM]);
  const stime = Number(fields[STIME_AFTER_COMM]);
  if (close < 0 || !Number.isSafeInteger(utime) || !Number.isSafeInteger(stime)) {
    throw new Error(`Not a /proc/PID/stat line: ${JSON.stringify(stat.slice(0, 80))}`);
  }
  return (utime + stime) * MICROS_PER_TICK;
}

/**
 * User + system CPU time of process `pid` (all its threads) so far, in
 * microseconds (10 ms steps), or undefined when there is no /proc entry to
 * read (not Linux, the process is gone, or reading is not allowed).
 */
export function processCpuMicros(pid: number): number | undefined {
  const stat = procStatOf(pid);
  return stat === undefined ? undefined : cpuMicrosOfStat(stat);
}

/**
 * The /proc/PID/stat line of `pid`, or undefined. Deno reads /proc only with
 * --allow-all, which Seguro's permission set does not have: then `cat`
 * reads it (--allow-run suffices).
 */
function procStatOf(pid: number): string | undefined {
  const path = `/proc/${pid}/stat`;
  try {
    return Deno.readTextFileSync(path);
  } catch (e) {
    if (!(e instanceof Deno.errors.NotCapable)) return undefined;
  }
  try {
    const out = new Deno.Command("cat", { args: [path], stdout: "piped", stderr: "null" })
      .outputSync();
    return out.success ? new TextDecoder().decode(out.stdout) : undefined;
  } catch {
    return undefined; // no permission to run it either
  }
}

/**
 * The pid of the running node that has data dir `dir` open (its `seguro.pid`),
 * or undefined when there is none on this machine: no pid file, or its
 * process is gone.
 */
export function nodePidOf(dir: string): number | undefined {
  let text: string;
  try {
    text = Deno.readTextFileSync(join(dir, PID_FILE)).trim();
  } catch {
    return undefined;
  }
  if (!/^\d+$/.test(text)) return undefined;
  const pid = Number(text);
  return processCpuMicros(pid) === undefined ? undefined : pid;
}

/** CPU microseconds per event between two readings; undefined when either is missing. */
export function cpuMicrosPerEvent(
  before: number | undefined,
  after: number | undefined,
  events: number,
): number | undefined {
  if (before === undefined || after === undefined || events <= 0) return undefined;
  return (after - before) / events;
}
