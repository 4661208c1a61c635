/**
 * How every command prints: tables for people (aligned, no box drawing, so
 * they stay readable when piped), JSON with `--json`, and colour only on a
 * terminal that wants it (NO_COLOR and TERM=dumb turn it off, FORCE_COLOR on).
 * @module
 */

import { createColors } from "picocolors";

function wantsColor(): boolean {
  const env = (name: string) => Deno.env.get(name) ?? "";
  if (env("NO_COLOR") !== "") return false;
  if (env("FORCE_COLOR") !== "" && env("FORCE_COLOR") !== "0") return true;
  return Deno.stdout.isTerminal() && env("TERM") !== "dumb";
}

/** Colour functions: identity functions when colour is off. */
export const colors: ReturnType<typeof createColors> = createColors(wantsColor());

/** A column of a table: its header, how to read a cell from a row, and its alignment. */
export interface Column<Row> {
  /** Header text, printed upper-case. */
  header: string;
  /** The cell text of a row. */
  cell: (row: Row) => string;
  /** Right-align (numbers). */
  right?: boolean;
}

/** Formats rows as an aligned table: a header line, then one line per row. */
export function formatTable<Row>(rows: readonly Row[], columns: readonly Column<Row>[]): string {
  const cells = rows.map((row) => columns.map((c) => c.cell(row)));
  const widths = columns.map((c, i) =>
    Math.max(c.header.length, ...cells.map((line) => line[i].length))
  );
  const pad = (text: string, i: number) =>
    columns[i].right ? text.padStart(widths[i]) : text.padEnd(widths[i]);
  const header = columns.map((c, i) => pad(c.header.toUpperCase(), i)).join("  ").trimEnd();
  const lines = cells.map((line) => line.map(pad).join("  ").trimEnd());
  return [colors.bold(header), ...lines].join("\n");
}

/** Formats label/value pairs as two aligned columns. */
export function formatFields(fields: readonly [string, string][]): string {
  const width = Math.max(...fields.map(([label]) => label.length));
  return fields.map(([label, value]) => `${colors.dim(label.padEnd(width))}  ${value}`).join(
    "\n",
  );
}

/** A number with thousands separators: 3889185 is `3,889,185`. */
export function count(n: number): string {
  return n.toLocaleString("en-US");
}

/** A 32-bit value as `0x` and 8 hex digits. */
export function hex32(n: number): string {
  return "0x" + n.toString(16).padStart(8, "0");
}

/** JSON text of a value; bigints become decimal strings. */
export function toJson(value: unknown): string {
  return JSON.stringify(value, (_key, v) => typeof v === "bigint" ? v.toString() : v, 2);
}

/** Writes a line to stdout. */
export function print(text: string): void {
  console.log(text);
}

/** Writes a line to stderr: notes and summaries that must not pollute piped output. */
export function note(text: string): void {
  console.error(colors.dim(text));
}
