// Worker of tests/lanes-redteam2.test.ts: waits for ctl[2] (go), sleeps `delayMs`, then sends
// one message to each of `dests` in turn (plain unicasts: lanes once made), payload = its index.
// ctl[3] = 1 when done, ctl[5] = 1 once attached; t[1] done time.
import { workerData, parentPort } from "node:worker_threads";
import { Bus } from "bus1-wasm";

const { handle, ref, dests, ctl, tbuf, delayMs } = workerData;
const bus = await Bus.attach(handle);
const peer = bus.adopt(ref);
const c = new Int32Array(ctl);
const t = new Float64Array(tbuf);
Atomics.store(c, 5, 1);
Atomics.notify(c, 5);
Atomics.wait(c, 2, 0, 5000);
Atomics.wait(c, 7, 0, delayMs);
const out = { sent: [] };
try {
  for (let i = 0; i < dests.length; i++) { peer.send(dests[i], new Uint8Array([0xa0 + i])); out.sent.push(i); }
} catch (e) { out.error = String(e?.stack ?? e); }
t[1] = Date.now();
Atomics.store(c, 3, 1);
parentPort.postMessage(out);
peer.close();
bus.close();
