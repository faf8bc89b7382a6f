// A worker of tests/threads.test.ts: sends `count` numbered messages to
// `target`, in bursts with pauses, so the receiver has to wait in between.
import { workerData, parentPort } from "node:worker_threads";
import { Bus } from "bus1-wasm";

const { handle, ref, target, count, burst, pauseMs } = workerData;
const bus = await Bus.attach(handle);
const peer = bus.adopt(ref);
const sleep = (ms) => new Promise((r) => setTimeout(r, ms));
for (let seq = 0; seq < count; seq++) {
  // 4-byte sequence number, then a pattern of varying length
  const p = new Uint8Array(4 + (seq % 61));
  new DataView(p.buffer).setUint32(0, seq, true);
  for (let i = 4; i < p.length; i++) p[i] = (seq + i) & 255;
  peer.send(target, p);
  if (seq % burst === burst - 1) await sleep(pauseMs);
}
parentPort.postMessage({ sent: count });
