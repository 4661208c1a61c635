/**
 * The Seguro version, from deno.json (imported statically, so a compiled
 * binary carries it).
 * @module
 */

import denoJson from "../deno.json" with { type: "json" };

/** The version every node reports and `seguro --version` prints. */
export const VERSION: string = denoJson.version;
