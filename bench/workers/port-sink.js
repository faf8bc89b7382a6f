// A sink on a MessagePort, used the way MessageChannel is meant to be used:
// each message arrives as an event on this worker's event loop, as its own
// structured clone.
import { parentPort, workerData } from "node:worker_threads";
import { DATA, END, PING, message, summary } from "../protocol.js";

const { port } = workerData;
const pong = message(PING);
let count = 0, bytes = 0;

port.on("message", (payload) => {
  const kind = payload.length > 0 ? payload[0] : -1;
  if (kind === DATA) {
    count++;
    bytes += payload.length;
  } else if (kind === PING) {
    port.postMessage(pong);
  } else if (kind === END) {
    port.postMessage(summary(count, bytes));
    count = bytes = 0;
  } else {
    port.close();
  }
});
parentPort.postMessage("up");
