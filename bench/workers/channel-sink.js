// The bare MessageChannel next to a served peer: each message is an event on
// this worker's port. workerData.transfer says how replies go back: as
// structured clones (false) or copied into a fresh ArrayBuffer that is
// transferred (true), the way the main thread posts to it in that variant.
// END also carries this thread's CPU time (bench/protocol.js).
import { parentPort, workerData } from "node:worker_threads";
import { busySink } from "../protocol.js";

const { port, transfer } = workerData;
const take = busySink(transfer
  ? (bytes) => {
    const copy = new Uint8Array(bytes.length);
    copy.set(bytes);
    port.postMessage(copy, [copy.buffer]);
  }
  : (bytes) => port.postMessage(bytes));

port.on("message", (payload) => {
  if (!take(payload)) port.close();
});
parentPort.postMessage("up");
