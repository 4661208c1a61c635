/**
 * Runs `cue` on bytes posted to it, in a worker, so a test can stop a cue that
 * hangs: a watchdog in the same thread would never get to run.
 * @module
 */

/// <reference lib="deno.worker" />

import { cue } from "../../vere/noun.ts";

self.onmessage = (event: MessageEvent<Uint8Array>) => {
  try {
    cue(event.data);
    self.postMessage({ name: "none", message: "cue returned a noun" });
  } catch (e) {
    const err = e as Error;
    self.postMessage({ name: err.name, message: err.message });
  }
};
