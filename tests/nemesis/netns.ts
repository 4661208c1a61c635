/**
 * The nemesis's network: one Linux network namespace per node, each joined
 * by a veth pair to a bridge that lives in a namespace of its own (never in
 * the root namespace), with addresses in 10.213.X.0/24 that exist only
 * inside those namespaces. Names carry the driver's pid (`sgn<pid>-...`) so
 * parallel runs never collide, and namespaces left by a driver that died are
 * swept at the next start. Partitions are the node's bridge port going down.
 * @module
 */

import { NET_COMMAND_MS } from "./limits.ts";

/** What a command printed and how it ended. */
export interface CommandResult {
  /** Exit code (-1 when it did not finish in time). */
  code: number;
  /** Its standard output. */
  stdout: string;
  /** Its standard error. */
  stderr: string;
}

/** Runs `cmd args` to the end (killed after `timeoutMs`). */
export async function sh(
  cmd: string,
  args: readonly string[],
  timeoutMs = NET_COMMAND_MS,
): Promise<CommandResult> {
  let child: Deno.ChildProcess;
  try {
    child = new Deno.Command(cmd, {
      args: [...args],
      stdin: "null",
      stdout: "piped",
      stderr: "piped",
    }).spawn();
  } catch (e) {
    return { code: 127, stdout: "", stderr: (e as Error).message };
  }
  const timer = setTimeout(() => {
    try {
      child.kill("SIGKILL");
    } catch {
      // ended
    }
  }, timeoutMs);
  const out = await child.output();
  clearTimeout(timer);
  const text = new TextDecoder();
  return {
    code: out.signal === "SIGKILL" && out.code !== 0 ? -1 : out.code,
    stdout: text.decode(out.stdout),
    stderr: text.decode(out.stderr),
  };
}

/** Runs `cmd args` and throws, with its error output, unless it exits 0. */
export async function must(cmd: string, args: readonly string[]): Promise<string> {
  const r = await sh(cmd, args);
  if (r.code !== 0) {
    throw new Error(
      `'${cmd} ${args.join(" ")}' failed (exit ${r.code}): ${r.stderr.trim() || r.stdout.trim()}`,
    );
  }
  return r.stdout;
}

/** Why network namespaces cannot be used here, or undefined when they can. */
export async function namespacesUnavailable(): Promise<string | undefined> {
  if (Deno.build.os !== "linux") return "network namespaces need Linux";
  // `id -u`, not Deno.uid(): the test runs with the product's permission set, without --allow-sys.
  const uid = await sh("id", ["-u"]);
  if (uid.code !== 0 || uid.stdout.trim() !== "0") return "creating network namespaces needs root";
  const version = await sh("ip", ["-V"]);
  if (version.code !== 0) return "the 'ip' command (iproute2) is missing";
  const probe = `sgn${Deno.pid}-probe`;
  const made = await sh("ip", ["netns", "add", probe]);
  if (made.code !== 0) return `'ip netns add' failed: ${made.stderr.trim()}`;
  await sh("ip", ["netns", "del", probe]);
  return undefined;
}

const NAME_PREFIX = "sgn";

/** Namespaces of this run and of every node, its addresses and links. */
export class Network {
  /** Prefix of every namespace of this run. */
  readonly prefix: string;
  /** The namespace holding the bridge. */
  readonly bridgeNs: string;
  /** Node ids, 1..n. */
  readonly ids: number[];
  /** Third octet of the subnet. */
  readonly subnet: number;
  readonly #made: string[] = [];

  private constructor(run: string, nodes: number) {
    this.prefix = `${NAME_PREFIX}${run}`;
    this.bridgeNs = `${this.prefix}-br`;
    this.ids = Array.from({ length: nodes }, (_, i) => i + 1);
    this.subnet = (Deno.pid % 250) + 1;
  }

  /** The namespace of node `id`. */
  nodeNs(id: number): string {
    return `${this.prefix}-n${id}`;
  }

  /** Node `id`'s address (inside the namespaces only). */
  ip(id: number): string {
    return `10.213.${this.subnet}.${id}`;
  }

  /** Node `id`'s port on the bridge (in the bridge's namespace). */
  port(id: number): string {
    return `p${id}`;
  }

  /**
   * Creates the bridge namespace, one namespace per node, the veth pairs and
   * the addresses. On failure, removes what it made and throws.
   */
  static async create(nodes: number, run = `${Deno.pid}`): Promise<Network> {
    const net = new Network(run, nodes);
    try {
      await net.#add(net.bridgeNs);
      const br = ["-n", net.bridgeNs];
      await must("ip", [...br, "link", "set", "lo", "up"]);
      await must("ip", [...br, "link", "add", "name", "br0", "type", "bridge"]);
      await must("ip", [...br, "link", "set", "br0", "up"]);
      for (const id of net.ids) {
        const ns = net.nodeNs(id);
        await net.#add(ns);
        const port = net.port(id);
        await must("ip", [
          ...br,
          "link",
          "add",
          "name",
          port,
          "type",
          "veth",
          "peer",
          "name",
          "eth0",
          "netns",
          ns,
        ]);
        await must("ip", [...br, "link", "set", port, "master", "br0"]);
        await must("ip", [...br, "link", "set", port, "up"]);
        await must("ip", ["-n", ns, "addr", "add", `${net.ip(id)}/24`, "dev", "eth0"]);
        await must("ip", ["-n", ns, "link", "set", "eth0", "up"]);
        await must("ip", ["-n", ns, "link", "set", "lo", "up"]);
      }
    } catch (e) {
      await net.destroy();
      throw e;
    }
    return net;
  }

  async #add(ns: string): Promise<void> {
    await must("ip", ["netns", "add", ns]);
    this.#made.push(ns);
  }

  /** Cuts node `id` off the bridge (its veth's bridge end goes down). */
  async linkDown(id: number): Promise<void> {
    await must("ip", ["-n", this.bridgeNs, "link", "set", this.port(id), "down"]);
  }

  /** Joins node `id` to the bridge again. */
  async linkUp(id: number): Promise<void> {
    await must("ip", ["-n", this.bridgeNs, "link", "set", this.port(id), "up"]);
  }

  /** Runs `cmd args` inside node `id`'s namespace; throws unless it exits 0. */
  inNode(id: number, cmd: string, args: readonly string[]): Promise<string> {
    return must("ip", ["netns", "exec", this.nodeNs(id), cmd, ...args]);
  }

  /** Kills what still runs in this run's namespaces (started by this run) and removes them. */
  async destroy(): Promise<void> {
    for (const ns of this.#made.reverse()) await removeNamespace(ns);
    this.#made.length = 0;
  }

  /**
   * Removes the namespaces of earlier runs whose driver is gone (killed
   * before its cleanup ran); returns their names.
   */
  static async sweepStale(): Promise<string[]> {
    const list = await sh("ip", ["netns", "list"]);
    const swept: string[] = [];
    for (const line of list.stdout.split("\n")) {
      const name = line.trim().split(" ")[0];
      const m = new RegExp(`^${NAME_PREFIX}(\\d+)-`).exec(name);
      if (!m || Number(m[1]) === Deno.pid) continue;
      if (processAlive(Number(m[1]))) continue;
      await removeNamespace(name);
      swept.push(name);
    }
    return swept;
  }
}

/** True while `pid` runs (a zombie, already dead but not yet reaped, does not count). */
function processAlive(pid: number): boolean {
  try {
    const status = Deno.readTextFileSync(`/proc/${pid}/status`);
    return !/^State:\s+Z/m.test(status);
  } catch {
    return false;
  }
}

async function removeNamespace(ns: string): Promise<void> {
  const pids = await sh("ip", ["netns", "pids", ns]);
  for (const pid of pids.stdout.split("\n").map((p) => Number(p.trim())).filter((p) => p > 0)) {
    try {
      Deno.kill(pid, "SIGKILL");
    } catch {
      // ended meanwhile
    }
  }
  await sh("ip", ["netns", "del", ns]);
}
