// A Deno Web Worker of tests/deno/threads.test.ts: runs one role of the
// ordering stress test (tests/workers/stress-agent.mjs) and posts what it
// logged, or the error that stopped it.
import { Bus } from "bus1-wasm";
import { runStress } from "../../workers/stress-agent.mjs";

self.onmessage = async (e) => {
  try {
    self.postMessage({ ok: await runStress(Bus, e.data) });
  } catch (err) {
    self.postMessage({ error: String(err?.stack ?? err) });
  }
};
