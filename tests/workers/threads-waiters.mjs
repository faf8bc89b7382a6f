// A worker of tests/threads.test.ts: one of several threads that wait() on
// the same peer with a long timeout and take what arrives, until a message
// whose first byte is 255 (one such for each waiter). It reports how many it
// took and its longest wait: while the main thread keeps sending, a wait
// that lasts about its whole timeout slept through a wake-up (ABI.md §5.5;
// a wait that times out returns true all the same if a message came).
import { workerData, parentPort } from "node:worker_threads";
import { Bus } from "bus1-wasm";

const { handle, ref } = workerData;
const bus = await Bus.attach(handle);
const peer = bus.adopt(ref);
parentPort.postMessage("ready");
let took = 0, longest = 0;
for (;;) {
  const m = peer.recv();
  if (!m) {
    const t = performance.now();
    peer.wait(5_000);
    longest = Math.max(longest, performance.now() - t);
    continue;
  }
  const last = m.payload[0] === 255;
  m.release();
  if (last) break;
  took++;
}
parentPort.postMessage({ took, longest });
