// A sink on a MessagePort, used the way MessageChannel is meant to be used:
// each message arrives as an event on this worker's event loop, as its own
// structured clone.
import { parentPort, workerData } from "node:worker_threads";
import { sink } from "../protocol.js";

const { port } = workerData;
const take = sink((bytes) => port.postMessage(bytes));

port.on("message", (payload) => {
  if (!take(payload)) port.close();
});
parentPort.postMessage("up");
