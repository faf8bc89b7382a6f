// A sink on two SharedArrayBuffer rings (bench/ring.js): blocks in
// inbox.wait(), reads each message in place and releases it; replies on the
// outbox ring.
import { parentPort, workerData } from "node:worker_threads";
import { Ring } from "../ring.js";
import { DATA, END, PING, message, summary } from "../protocol.js";

const inbox = new Ring(workerData.inbox);
const outbox = new Ring(workerData.outbox);
const pong = message(PING);
let count = 0, bytes = 0;

parentPort.postMessage("up");
for (;;) {
  const payload = inbox.recv();
  if (payload === null) {
    inbox.wait();
    continue;
  }
  const kind = payload.length > 0 ? payload[0] : -1;
  if (kind === DATA) {
    count++;
    bytes += payload.length;
    inbox.release();
    continue;
  }
  inbox.release();
  if (kind === PING) {
    outbox.send(pong);
  } else if (kind === END) {
    outbox.send(summary(count, bytes));
    count = bytes = 0;
  } else {
    break;
  }
}
