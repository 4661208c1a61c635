/**
 * Reading a `/metrics` answer in tests: the Prometheus text format parsed by
 * a real parser (npm `prom2javascript`, which groups histogram series by
 * their labels and checks each one's count against its `+Inf` bucket), plus
 * the checks it leaves out (every family has a type and help, buckets are
 * cumulative), and lookups by labels.
 *
 * (`parse-prometheus-text-format` was tried first: it merges the series of
 * a labelled histogram into one and drops their counts and sums.)
 * @module
 */

import { getMetricsFromIterator, type PromData, type PromHistogramData } from "prom2javascript";

/** One sample of a gauge or counter, or one series of a histogram. */
export interface Sample {
  /** Labels (without `le`). */
  labels: Record<string, string>;
  /** Gauge or counter value. */
  value?: number;
  /** Histogram: cumulative count per upper bound (`+Inf` included). */
  buckets?: Record<string, number>;
  /** Histogram: number of observations. */
  count?: number;
  /** Histogram: sum of observations. */
  sum?: number;
}

/** One metric family. */
export interface Family {
  /** Metric name. */
  name: string;
  /** Help text. */
  help: string;
  /** gauge, counter, histogram or summary. */
  type: string;
  /** Its samples. */
  samples: Sample[];
}

/** Parses the Prometheus text format; throws on a malformed answer. */
export async function parsePrometheus(text: string): Promise<Family[]> {
  const parsed = await getMetricsFromIterator(text.split("\n")[Symbol.iterator]());
  return Object.entries(parsed).map(([name, f]) => {
    if (f.help === "") throw new Error(`${name} has no help text`);
    if (!["gauge", "counter", "histogram", "summary"].includes(f.type)) {
      throw new Error(`${name} has no known type (${f.type})`);
    }
    if (f.type !== "histogram") {
      return {
        name,
        help: f.help,
        type: f.type,
        samples: (f.data as PromData[]).map((d) => ({ labels: d.labels, value: d.value })),
      };
    }
    const samples = (f.data as PromHistogramData[]).map((d) => {
      // By bound (an object lists integer-like keys such as "1" first).
      const buckets = Object.entries(d.buckets)
        .map(([le, n]) => [le === "+Inf" ? Infinity : Number(le), n])
        .sort((a, b) => a[0] - b[0]);
      for (let i = 1; i < buckets.length; i++) {
        if (!(buckets[i][0] > buckets[i - 1][0] && buckets[i][1] >= buckets[i - 1][1])) {
          throw new Error(`${name}${JSON.stringify(d.labels)}: buckets are not cumulative`);
        }
      }
      return { labels: d.labels, buckets: d.buckets, count: d.count, sum: d.sum };
    });
    return { name, help: f.help, type: f.type, samples };
  });
}

/** The family named `name`; throws when absent. */
export function family(families: Family[], name: string): Family {
  const f = families.find((x) => x.name === name);
  if (f === undefined) throw new Error(`no metric ${name}`);
  return f;
}

/** The sample of `name` whose labels include `labels`; throws unless exactly one matches. */
export function sample(
  families: Family[],
  name: string,
  labels: Record<string, string> = {},
): Sample {
  const hits = family(families, name).samples.filter((s) =>
    Object.entries(labels).every(([k, v]) => s.labels[k] === v)
  );
  if (hits.length !== 1) {
    throw new Error(`${hits.length} samples of ${name} match ${JSON.stringify(labels)}`);
  }
  return hits[0];
}

/** The value of the gauge or counter sample of `name` with `labels`. */
export function value(
  families: Family[],
  name: string,
  labels: Record<string, string> = {},
): number {
  const v = sample(families, name, labels).value;
  if (v === undefined) throw new Error(`${name} is not a gauge or counter`);
  return v;
}

/** GETs `http://address/metrics` and parses it. */
export async function scrape(address: string): Promise<Family[]> {
  const response = await fetch(`http://${address}/metrics`);
  const text = await response.text();
  if (response.status !== 200) throw new Error(`GET /metrics: ${response.status} ${text}`);
  return await parsePrometheus(text);
}
