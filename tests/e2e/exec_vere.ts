/**
 * A test cluster whose nodes run ~zod with the real vere 3.0 in exec mode
 * (`seguro run --standby-dir DIR --exec '<urbit-3.0> -t --no-dock <ports>
 * {pier}'`): the set-up the real-vere exec tests and
 * bench/vere_failover_bench.ts share. ~zod must be imported already.
 * @module
 */

import { join } from "node:path";
import { quietPorts, vereBinary } from "../real_vere.ts";
import type { TestCluster, TestMember } from "./harness.ts";

/** Every member of a cluster restarted to run ~zod with the real vere 3.0 over its standby pier. */
export class ExecVere {
  readonly #c: TestCluster;
  readonly #extra: readonly string[];
  /** Each node's vere's ports (its own, so that two veres never share one). */
  readonly #ports: ReadonlyMap<number, string[]>;

  private constructor(c: TestCluster, extra: readonly string[], ports: Map<number, string[]>) {
    this.#c = c;
    this.#extra = extra;
    this.#ports = ports;
  }

  /**
   * Restarts every member of `c` with a standby dir and the real vere as its
   * exec runtime, plus the `seguro run` flags in `extra`; resolves once a
   * member leads.
   */
  static async start(c: TestCluster, extra: readonly string[] = []): Promise<ExecVere> {
    const ports = new Map<number, string[]>();
    for (const m of c.members.values()) ports.set(m.id, await quietPorts());
    const ev = new ExecVere(c, extra, ports);
    for (const m of c.members.values()) {
      await m.proc!.kill("SIGTERM");
      ev.restart(m);
    }
    await Promise.any([...c.members.values()].map((m) => m.proc!.waitForEvent("leader")));
    return ev;
  }

  /** Starts member `m` again with its exec flags (after a kill). */
  restart(m: TestMember): void {
    this.#c.restart(m.id, [
      "--standby-dir",
      join(this.#c.root, `standby-${m.id}`),
      "--exec",
      `${vereBinary("3.0")} -t --no-dock ${this.#ports.get(m.id)!.join(" ")} {pier}`,
      ...this.#extra,
    ]);
  }

  /** Member `m`'s standby pier of ~zod (the pier its vere runs while it is master). */
  standbyOf(m: TestMember): string {
    return join(this.#c.root, `standby-${m.id}`, "~zod");
  }

  /** Every member's log position now, for {@linkcode started}. */
  marks(): Map<number, number> {
    return new Map([...this.#c.members.values()].map((m) => [m.id, m.proc!.mark()]));
  }

  /** The member whose vere started ~zod after `marks`, and the event it started at. */
  started(
    marks: ReadonlyMap<number, number>,
    timeoutMs: number,
  ): Promise<{ m: TestMember; startEve: number }> {
    return Promise.any(
      [...this.#c.members.values()].map(async (m) => {
        const e = await m.proc!.waitForEvent(
          "runtime_started",
          { ship: "~zod" },
          marks.get(m.id)!,
          timeoutMs,
        );
        return { m, startEve: Number(e.eve) };
      }),
    );
  }
}
