/**
 * How late the event loop runs a timer: a timer asks to run every
 * {@linkcode LAG_SAMPLE_MS}; how much later than that it runs is time the
 * loop was busy (a long SQLite write, a big decode). Deno's
 * `monitorEventLoopDelay` does not see such blocking, so the node measures it
 * itself, for the `seguro_event_loop_lag_seconds` metric.
 * @module
 */

/** Milliseconds between samples. */
export const LAG_SAMPLE_MS = 20;

/** Samples the event loop's lag until stopped; `observe` gets each lag in ms. */
export class EventLoopLag {
  readonly #timer: number;
  #expected: number;

  /** Starts sampling with the monotonic clock `now` (ms). The timer does not keep the process alive. */
  constructor(observe: (lagMs: number) => void, now: () => number = () => performance.now()) {
    this.#expected = now() + LAG_SAMPLE_MS;
    // Deno's setInterval returns a number; the Node types in scope say otherwise.
    this.#timer = setInterval(() => {
      const t = now();
      observe(Math.max(0, t - this.#expected));
      this.#expected = t + LAG_SAMPLE_MS;
    }, LAG_SAMPLE_MS) as unknown as number;
    Deno.unrefTimer(this.#timer);
  }

  /** Stops sampling. */
  stop(): void {
    clearInterval(this.#timer);
  }
}
