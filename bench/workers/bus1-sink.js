// A sink on the bus: adopts its peer, blocks in peer.wait(), receives with
// recv() and releases every slice (bench/protocol.js says what it answers).
// Replies go to the main thread's node `back`.
import { parentPort, workerData } from "node:worker_threads";
import { Bus } from "bus1-wasm";
import { DATA, END, PING, message, summary } from "../protocol.js";

const { handle, ref, back } = workerData;
const bus = await Bus.attach(handle);
const peer = bus.adopt(ref);
const pong = message(PING);
let count = 0, bytes = 0;

parentPort.postMessage("up");
for (;;) {
  const m = peer.recv();
  if (m === null) {
    peer.wait();
    continue;
  }
  const payload = m.payload;
  const kind = payload.length > 0 ? payload[0] : -1;
  if (kind === DATA) {
    count++;
    bytes += payload.length;
    m.release();
    continue;
  }
  m.release();
  if (kind === PING) {
    peer.send(back, pong);
  } else if (kind === END) {
    peer.send(back, summary(count, bytes));
    count = bytes = 0;
  } else {
    break; // QUIT, or a notification: the main thread is gone
  }
}
bus.close();
