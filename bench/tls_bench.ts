/**
 * What encryption costs a node per byte it sends: CPU microseconds per KiB
 * (both ends, in this one process) to move 128 MiB over loopback TCP
 *
 * - `node:tls`: the nodes' own path (cluster/tls.ts: mutual TLS 1.3 with
 *   node:tls over a Deno TCP connection);
 * - `deno-tls`: Deno's native TLS (`Deno.listenTls`, `Deno.startTls`), with a
 *   server certificate only: it cannot ask the dialler for a certificate nor
 *   give the Finished messages the nodes' handshake binds to
 *   (cluster/handshake.ts), so the nodes cannot use it; it shows what the
 *   encryption itself costs;
 * - `tcp`: no encryption (what `--insecure-plaintext` sends on).
 *
 * Writes of 1 KiB (an event at a time) and 64 KiB (a batch).
 *
 *     deno task bench:tls [--mib 128] [--json]
 * @module
 */

import process from "node:process";
import { parseArgs } from "node:util";
import { createClusterCa, issueCertificate } from "../cluster/certs.ts";
import { secureAccept, secureConnect, type TlsIdentity } from "../cluster/tls.ts";

const { values } = parseArgs({
  args: Deno.args,
  options: {
    mib: { type: "string", default: "128" },
    json: { type: "boolean", default: false },
  },
});
const TOTAL = Number(values.mib) * 1024 * 1024;
if (!Number.isSafeInteger(TOTAL) || TOTAL <= 0) {
  throw new Error(`--mib takes a positive integer (got ${values.mib})`);
}

/** One way of sending bytes: a connected pair, the sender's write and the receiver's read. */
interface Pair {
  write(bytes: Uint8Array): Promise<void>;
  /** Resolves once `total` bytes have arrived. */
  drain(total: number): Promise<void>;
  close(): void;
}

async function writeAll(conn: Deno.Conn, bytes: Uint8Array): Promise<void> {
  let written = 0;
  while (written < bytes.length) written += await conn.write(bytes.subarray(written));
}

async function readAll(
  from: { read(buf: Uint8Array): Promise<number | null> },
  total: number,
): Promise<void> {
  const buf = new Uint8Array(64 * 1024);
  for (let got = 0; got < total;) {
    const n = await from.read(buf);
    if (n === null) throw new Error(`the connection ended after ${got} of ${total} bytes`);
    got += n;
  }
}

async function tcpPair(): Promise<Pair> {
  const listener = Deno.listen({ hostname: "127.0.0.1", port: 0 });
  const accepted = listener.accept();
  const dialled = await Deno.connect({ hostname: "127.0.0.1", port: listener.addr.port });
  const server = await accepted;
  listener.close();
  for (const c of [dialled, server]) c.setNoDelay(true);
  return {
    write: (bytes) => writeAll(dialled, bytes),
    drain: (total) => readAll(server, total),
    close: () => [dialled, server].forEach((c) => c.close()),
  };
}

async function denoTlsPair(node: TlsIdentity): Promise<Pair> {
  const listener = Deno.listenTls({
    hostname: "127.0.0.1",
    port: 0,
    cert: node.certPem,
    key: node.keyPem,
  });
  const accepted = listener.accept();
  const tcp = await Deno.connect({ hostname: "127.0.0.1", port: listener.addr.port });
  tcp.setNoDelay(true);
  const dialled = await Deno.startTls(tcp, { hostname: "seguro", caCerts: [node.caPem] });
  const server = await accepted;
  listener.close();
  await Promise.all([dialled.handshake(), server.handshake()]);
  return {
    write: (bytes) => writeAll(dialled, bytes),
    drain: (total) => readAll(server, total),
    close: () => [dialled, server].forEach((c) => c.close()),
  };
}

async function nodeTlsPair(node: TlsIdentity, dialler: TlsIdentity): Promise<Pair> {
  const listener = Deno.listen({ hostname: "127.0.0.1", port: 0 });
  const accepted = listener.accept().then((c) => secureAccept(c, node, 5000));
  const tcp = await Deno.connect({ hostname: "127.0.0.1", port: listener.addr.port });
  const [server, client] = await Promise.all([accepted, secureConnect(tcp, dialler, 5000)]);
  listener.close();
  return {
    write: async (bytes) => {
      await client.stream.write(bytes);
    },
    drain: (total) => readAll(server.stream, total),
    close: () => [client, server].forEach((c) => c.stream.close()),
  };
}

/** CPU microseconds (user + system, this process) per KiB through `pair`, in writes of `size`. */
async function measure(pair: Pair, size: number): Promise<number> {
  const chunk = new Uint8Array(size);
  for (let i = 0; i < size; i++) chunk[i] = (i * 131 + 7) & 0xff;
  const writes = Math.ceil(TOTAL / size);
  const before = process.cpuUsage();
  const drained = pair.drain(writes * size);
  for (let i = 0; i < writes; i++) await pair.write(chunk);
  await drained;
  const used = process.cpuUsage(before);
  pair.close();
  return (used.user + used.system) / ((writes * size) / 1024);
}

const ca = await createClusterCa(new Date());
const identity = async (nodeId: number): Promise<TlsIdentity> => ({
  ...(await issueCertificate(ca, { kind: "node", nodeId }, new Date(), 1)),
  caPem: ca.certPem,
});
const [node, dialler] = [await identity(1), await identity(2)];

const paths: [string, () => Promise<Pair>][] = [
  ["node:tls", () => nodeTlsPair(node, dialler)],
  ["deno-tls", () => denoTlsPair(node)],
  ["tcp", tcpPair],
];
const rows: { path: string; writeBytes: number; cpuUsPerKiB: number }[] = [];
for (const size of [1024, 64 * 1024]) {
  for (const [path, open] of paths) {
    const cpuUsPerKiB = await measure(await open(), size);
    rows.push({ path, writeBytes: size, cpuUsPerKiB });
    if (!values.json) {
      console.log(
        `${path.padEnd(9)} writes of ${String(size / 1024).padStart(2)} KiB: ${
          cpuUsPerKiB.toFixed(2)
        } us of CPU per KiB (both ends)`,
      );
    }
  }
}
if (values.json) console.log(JSON.stringify(rows));
