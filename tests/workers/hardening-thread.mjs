// A worker of tests/hardening.test.ts: a thread that runs what the test asks.
// It attaches to workerData.handle (if given), then runs each function posted
// to it, one at a time, as `fn(env, data)` with env = { ...bus1-wasm exports,
// bus (the attached Bus or null), state (kept between calls) }, and answers
// { id, value } or { id, error: { bus1, code, name, message } }. It stays
// alive until it is terminated (or closes its bus and exits if asked).
import { workerData, parentPort } from "node:worker_threads";
import * as api from "bus1-wasm";

const bus = workerData?.handle ? await api.Bus.attach(workerData.handle) : null;
const state = {};
const AsyncFunction = (async () => {}).constructor;

parentPort.on("message", async ({ id, source, data }) => {
  try {
    const fn = new AsyncFunction("env", "data", `return (${source})(env, data);`);
    const value = await fn({ ...api, bus, state }, data);
    parentPort.postMessage({ id, value });
  } catch (e) {
    parentPort.postMessage({
      id,
      error: { bus1: e instanceof api.Bus1Error, code: e?.code ?? null, name: e?.name ?? null, message: String(e?.message ?? e) },
    });
  }
});
parentPort.postMessage({ id: 0 });
