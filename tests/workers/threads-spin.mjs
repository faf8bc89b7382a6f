// A worker of tests/threads.test.ts: receives `count` messages with
// peer.wait() + recv(), checking that their u32 sequence numbers come in
// order, and records the most threads it ever saw spinning at once.
import { workerData, parentPort } from "node:worker_threads";
import { Bus } from "bus1-wasm";
import { coreOf } from "../../dist/host-common/bus.js";

const { handle, ref, count, spinners } = workerData;
const bus = await Bus.attach(handle);
const peer = bus.adopt(ref);
const i32 = new Int32Array(coreOf(bus).memory.buffer);

parentPort.postMessage({ step: "ready" });
let next = 0, outOfOrder = 0, maxSpinners = 0;
while (next < count) {
  if (!peer.wait(10_000)) break;
  const m = peer.recv();
  if (!m) continue;
  const seq = new DataView(m.payload.buffer, m.payload.byteOffset, 4).getUint32(0, true);
  if (seq !== next) outOfOrder++;
  next = seq + 1;
  m.release();
  maxSpinners = Math.max(maxSpinners, Atomics.load(i32, spinners));
}
parentPort.postMessage({ step: "done", received: next, outOfOrder, maxSpinners });
bus.close();
