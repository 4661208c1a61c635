/**
 * Hostile input against a real 3-node cluster (P11): fast-check generates
 * frames for the leader's peer port, before the handshake and after it (as
 * an authenticated client and as a peer), and newt frames for its runtime
 * socket. Whatever arrives, the node closes only that connection (or answers
 * `%oops`), stays up with bounded memory, and the cluster keeps committing.
 */

import assert from "node:assert/strict";
import { join } from "node:path";
import fc from "fast-check";
import { encodeFrame, FrameType, HANDSHAKE_FRAME_BYTES_MAX } from "../../cluster/frame.ts";
import { openConn } from "../../cluster/connect.ts";
import { clientSecurity, type ClusterToken } from "../../cluster/token.ts";
import { nodeSecurity } from "../security.ts";
import { encodeFrameBytes } from "../../vere/newt.ts";
import { clusterTest, payloads, type TestCluster, type TestMember } from "./harness.ts";

/** Runs per kind of input: enough variety, bounded time. */
const RUNS = 60;
/** The leader's RSS may grow this much during the fuzzing (garbage included), no more. */
const RSS_GROWTH_MAX_MB = 200;

/** A process's RSS, through `ps` (the tests' permissions do not reach another process's /proc). */
async function rssMb(pid: number): Promise<number> {
  const out = await new Deno.Command("ps", { args: ["-o", "rss=", "-p", String(pid)] }).output();
  const kb = Number(new TextDecoder().decode(out.stdout).trim());
  assert.ok(out.code === 0 && kb > 0, `ps gave the RSS of process ${pid}`);
  return kb / 1024;
}

function portOf(m: TestMember): number {
  return Number(m.address.split(":")[1]);
}

/** Sends `bytes` on a fresh connection and reads until the node closes it (bounded by its timeouts). */
async function sendAndDrain(port: number, bytes: Uint8Array): Promise<void> {
  const conn = await Deno.connect({ hostname: "127.0.0.1", port });
  try {
    await conn.write(bytes).catch(() => 0);
    await conn.closeWrite().catch(() => {}); // the node sees the end, not a slow sender
    const buf = new Uint8Array(64 * 1024);
    while (await conn.read(buf).catch(() => null) !== null) { /* until closed */ }
  } finally {
    try {
      conn.close();
    } catch {
      // closed by the node
    }
  }
}

/** A frame of any type with a random body, or random bytes. */
const strangerBytes = fc.oneof(
  fc.uint8Array({ minLength: 1, maxLength: 2 * HANDSHAKE_FRAME_BYTES_MAX, size: "max" }),
  fc.tuple(fc.integer({ min: 0, max: 255 }), fc.uint8Array({ maxLength: 3000, size: "max" }))
    .map(([type, body]) => encodeFrame(type, body)),
);

/** After authenticating as `kind`, sends frames of random types and bodies on one connection. */
async function authenticatedFuzz(
  c: TestCluster,
  m: TestMember,
  kind: "client" | "peer",
  frames: [number, Uint8Array][],
): Promise<void> {
  const conn = await Deno.connect({ hostname: "127.0.0.1", port: portOf(m) });
  const token = c.credentials as ClusterToken;
  // Must succeed: the frames below are meant to arrive after authentication.
  const { fc: fconn } = await openConn(conn, "initiator", {
    kind,
    clusterId: token.clusterId,
    nodeId: kind === "peer" ? 77 : 0,
    address: "",
  }, kind === "peer" ? await nodeSecurity(token, 77) : await clientSecurity(token));
  try {
    for (const [type, body] of frames) {
      if (!fconn.send(type, body)) break;
    }
    await fconn.flush();
    await fconn.stream.closeWrite().catch(() => {});
    // The node may answer, or close at a frame it refuses: both are what should survive.
    while (await fconn.read().catch(() => null) !== null) { /* until the node closes it */ }
  } finally {
    fconn.close();
  }
}

clusterTest(
  "fuzzed frames before and after authentication, and fuzzed runtime frames: the cluster keeps committing",
  3,
  async (c) => {
    const leader = c.leader()!;
    const pid = leader.proc!.child.pid;
    const rssBefore = await rssMb(pid);
    await c.write(payloads("before", 20));

    // Before the handshake: anything at all.
    await fc.assert(
      fc.asyncProperty(strangerBytes, async (bytes) => {
        await sendAndDrain(portOf(leader), bytes);
      }),
      { numRuns: RUNS },
    );

    // After it, as a client and as a peer: frames of every type with random bodies.
    const frames = fc.array(
      fc.tuple(
        fc.constantFrom(FrameType.raft, FrameType.request, FrameType.response, 0, 99),
        fc.uint8Array({ maxLength: 2000, size: "max" }),
      ),
      { minLength: 1, maxLength: 5 },
    );
    for (const kind of ["client", "peer"] as const) {
      await fc.assert(
        fc.asyncProperty(frames, async (fs) => {
          await authenticatedFuzz(c, leader, kind, fs);
        }),
        { numRuns: RUNS },
      );
    }

    // The runtime socket: newt frames of random bytes, and garbage around them.
    await fc.assert(
      fc.asyncProperty(
        fc.uint8Array({ minLength: 1, maxLength: 3000, size: "max" }),
        fc.uint8Array({ maxLength: 64 }),
        async (body, tail) => {
          const conn = await Deno.connect({
            transport: "unix",
            path: join(leader.dir, "runtime.sock"),
          });
          try {
            const frame = encodeFrameBytes(body);
            const bytes = new Uint8Array(frame.length + tail.length);
            bytes.set(frame);
            bytes.set(tail, frame.length);
            await conn.write(bytes).catch(() => 0);
            await conn.closeWrite().catch(() => {});
            const buf = new Uint8Array(64 * 1024);
            while (await conn.read(buf).catch(() => null) !== null) { /* answers, then EOF */ }
          } finally {
            try {
              conn.close();
            } catch {
              // closed by the node
            }
          }
        },
      ),
      { numRuns: RUNS },
    );

    // Still the same leader process, still committing, memory bounded.
    assert.equal(leader.proc!.child.pid, pid);
    assert.equal((await c.write(payloads("after", 50))).size, 50);
    for (const m of c.members.values()) assert.equal((await c.status(m.id)).nodeId, m.id);
    const growth = await rssMb(pid) - rssBefore;
    assert.ok(growth <= RSS_GROWTH_MAX_MB, `the leader's RSS grew ${growth.toFixed(0)} MB`);
  },
);
