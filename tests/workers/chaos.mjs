// A worker of the fault test (tests/faults.test.ts): random operations on
// its own peer until it is terminated, at any moment, maybe inside a call.
import { workerData, parentPort } from "node:worker_threads";
import { Bus } from "bus1-wasm";
import { xorshift32 } from "./xorshift.mjs";

const { handle, ref, targets, seed } = workerData;
const bus = await Bus.attach(handle);
const peer = bus.adopt(ref);
const rand = xorshift32(seed);
let node = 4;
const payload = new Uint8Array(2048);
parentPort.postMessage("running");
for (;;) {
  try {
    const x = rand();
    if (x < 0.4) {
      const dsts = targets.filter(() => rand() < 0.5);
      peer.send(dsts, payload.subarray(0, Math.floor(rand() * 2048)), { handles: [node], continue: true });
    } else if (x < 0.8) {
      const m = peer.recv();
      if (m) m.release();
    } else if (x < 0.9) {
      const id = peer.transfer(node);
      peer.release(id);
    } else {
      peer.destroy(node, { releaseHandles: true });
      node += 4;
    }
  } catch (e) {
    if (e.code === "ESHUTDOWN") break; // the bus broke, or our peer went away
    if (!["EDQUOT", "EHOSTUNREACH", "ENXIO", "ESTALE"].includes(e.code)) throw e;
  }
}
parentPort.postMessage("stopped");
