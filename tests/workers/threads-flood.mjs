// A worker of tests/threads.test.ts: floods `target` with small messages
// until the send fails, starting together with the other flooders.
// ctl: Int32 [0] flooders ready.
import { workerData, parentPort } from "node:worker_threads";
import { Bus } from "bus1-wasm";

const { handle, ref, target, nFlooders, ctl, size, max } = workerData;
const bus = await Bus.attach(handle);
const peer = bus.adopt(ref);
const c = new Int32Array(ctl);
const deadline = Date.now() + 10_000;
Atomics.add(c, 0, 1);
while (Atomics.load(c, 0) < nFlooders) {
  if (Date.now() > deadline) throw new Error("the other flooders did not start");
  Atomics.wait(c, 1, 0, 1);
}
const payload = new Uint8Array(size).fill(0x5a);
let sent = 0, code = null, message = null;
while (sent < max && Date.now() < deadline) {
  try {
    peer.send(target, payload);
    sent++;
  } catch (e) {
    code = e.code ?? null;
    message = String(e.message);
    break;
  }
}
parentPort.postMessage({ sent, code, message });
