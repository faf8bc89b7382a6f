// A sink on the bus: adopts its peer, blocks in peer.wait(), receives with
// recv() and releases every slice (bench/protocol.js says what it answers).
// Replies go to the main thread's node `back`.
import { parentPort, workerData } from "node:worker_threads";
import { Bus } from "bus1-wasm";
import { sink } from "../protocol.js";

const { handle, ref, back } = workerData;
const bus = await Bus.attach(handle);
const peer = bus.adopt(ref);
const take = sink((bytes) => peer.send(back, bytes));

parentPort.postMessage("up");
for (;;) {
  const m = peer.recv();
  if (m === null) {
    peer.wait();
    continue;
  }
  const more = take(m.payload); // a notification has no payload: the main thread is gone
  m.release();
  if (!more) break;
}
bus.close();
