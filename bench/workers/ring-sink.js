// A sink on two SharedArrayBuffer rings (bench/ring.js): waits in
// inbox.wait() (spinning first when the main thread's rings do: `spinMs`),
// reads each message in place and releases it; replies on the outbox ring.
import { parentPort, workerData } from "node:worker_threads";
import { Ring } from "../ring.js";
import { sink } from "../protocol.js";

const { spinMs } = workerData;
const inbox = new Ring(workerData.inbox, spinMs);
const outbox = new Ring(workerData.outbox, spinMs);
const take = sink((bytes) => outbox.send(bytes));

parentPort.postMessage("up");
for (;;) {
  const payload = inbox.recv();
  if (payload === null) {
    inbox.wait();
    continue;
  }
  const more = take(payload);
  inbox.release();
  if (!more) break;
}
