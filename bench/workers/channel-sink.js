// The bare MessageChannel next to a served peer: each message is an event on
// this worker's port. workerData.transfer says how replies go back: as
// structured clones (false) or copied into a fresh ArrayBuffer that is
// transferred (true), the way the main thread posts to it in that variant.
// workerData.returns: the main thread transfers each payload's buffer and
// this worker gives the buffers back once read, RETURN at a time in one
// post (an array of them), so the main thread fills old buffers instead of
// making new ones (served peers do the same: host-common/batch.ts, "Buffers
// go back").
// END also carries this thread's CPU time (bench/protocol.js).
import { parentPort, workerData } from "node:worker_threads";
import { busySink } from "../protocol.js";

const { port, transfer, returns = false } = workerData;
const RETURN = 16;
let back = [];
const take = busySink(transfer
  ? (bytes) => {
    const copy = new Uint8Array(bytes.length);
    copy.set(bytes);
    port.postMessage(copy, [copy.buffer]);
  }
  : (bytes) => port.postMessage(bytes));

port.on("message", (payload) => {
  if (!take(payload)) return port.close();
  if (!returns) return;
  back.push(payload.buffer);
  if (back.length < RETURN) return;
  port.postMessage(back, back);
  back = [];
});
parentPort.postMessage("up");
