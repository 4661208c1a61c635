/**
 * Network addresses as users write them: `host:port`, `[v6]:port`.
 * @module
 */

/** A parsed address. */
export interface Address {
  /** Host name or IP (IPv6 without brackets). */
  hostname: string;
  /** TCP port, 0..65535 (0 lets the OS choose when listening). */
  port: number;
}

/** Parses `host:port` or `[ipv6]:port`; throws RangeError with the accepted form. */
export function parseAddress(text: string): Address {
  const m = /^(?:\[([0-9a-fA-F:.]+)\]|([A-Za-z0-9.-]+)):([0-9]{1,5})$/.exec(text.trim());
  const port = m ? Number(m[3]) : NaN;
  if (m === null || port > 65535) {
    throw new RangeError(`'${text}' is not an address; write HOST:PORT, e.g. 10.0.0.5:7700`);
  }
  return { hostname: m[1] ?? m[2], port };
}

/** Formats an address back to `host:port` (brackets for IPv6). */
export function formatAddress(a: Address): string {
  return a.hostname.includes(":") ? `[${a.hostname}]:${a.port}` : `${a.hostname}:${a.port}`;
}
