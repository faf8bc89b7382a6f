// A worker of the lock-contention test: many sends to one receiver at once,
// so that locks are contended and taken through the sleeping path.
import { workerData, parentPort } from "node:worker_threads";
import { Bus } from "bus1-wasm";

const { handle, ref, target, count, index } = workerData;
const bus = await Bus.attach(handle);
const peer = bus.adopt(ref);
const payload = new Uint8Array(8);
const v = new DataView(payload.buffer);
for (let i = 0; i < count; i++) {
  v.setUint32(0, index, true);
  v.setUint32(4, i, true);
  for (;;) {
    try {
      peer.send(target, payload);
      break;
    } catch (e) {
      if (e.code !== "EDQUOT") throw e; // the receiver is behind: try again
    }
  }
}
parentPort.postMessage("done");
bus.close();
