// One thread of the WASI scenario (tests/wasi/scenario.mjs), in a Node
// worker_thread or a Deno Worker. It hosts the core the way a non-JS host
// would (docs/ABI.md, "Hosting the core without JavaScript"): its own WASI
// instance (node:wasi, which Deno implements too), its own instance of
// build/bus1.wasi.wasm on the shared memory it was given, `_initialize`
// through `wasi.initialize`, and the bus1.objects_drop callback. Then it runs
// the steps the main thread asks for, one at a time, and answers each.
import { WASI } from "node:wasi";
import { steps, makeThread } from "./scenario.mjs";

const port = globalThis.Deno
  ? { post: (m) => self.postMessage(m), on: (f) => { self.onmessage = (e) => f(e.data); } }
  : await (async () => {
    const { parentPort } = await import("node:worker_threads");
    return { post: (m) => parentPort.postMessage(m), on: (f) => parentPort.on("message", f) };
  })();

let t = null;

port.on((msg) => {
  if (msg.op === "start") {
    try {
      const wasi = new WASI({ version: "preview1", args: [], env: {}, returnOnExit: true });
      // count the WASI calls the core makes (clock_time_get from the lock waits)
      const calls = {};
      const wasiImport = {};
      for (const [name, f] of Object.entries(wasi.wasiImport)) {
        wasiImport[name] = (...a) => {
          calls[name] = (calls[name] ?? 0) + 1;
          return f.apply(wasi.wasiImport, a);
        };
      }
      let thread = null;
      const instance = new WebAssembly.Instance(msg.module, {
        env: { memory: msg.memory },
        wasi_snapshot_preview1: wasiImport,
        bus1: { objects_drop: (slots, count) => thread.objectsDrop(slots, count) },
      });
      wasi.initialize(instance);
      thread = makeThread(msg.name, instance.exports, msg.memory, calls, msg.ctl);
      t = thread;
      port.post({ ok: true, result: { name: msg.name } });
    } catch (e) {
      port.post({ ok: false, error: String(e?.stack ?? e) });
    }
    return;
  }
  try {
    const step = steps[msg.op];
    if (!step) throw new Error(`no step ${msg.op}`);
    port.post({ ok: true, result: step(t, msg.args ?? {}) });
  } catch (e) {
    port.post({ ok: false, error: String(e?.stack ?? e) });
  }
});
