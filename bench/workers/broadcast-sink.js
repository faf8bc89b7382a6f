// A receiver of BroadcastChannel messages: worker `index` listens on the
// channel of every fan-out K it belongs to (index < K), so that a message
// posted on channel K reaches exactly K workers. Counts go back to the main
// thread on parentPort.
import { BroadcastChannel, parentPort, workerData } from "node:worker_threads";
import { sink } from "../protocol.js";

const { index, prefix, fanouts } = workerData;
const take = sink((bytes) => parentPort.postMessage(bytes));

const channels = fanouts.filter((k) => index < k).map((k) => new BroadcastChannel(`${prefix}${k}`));
for (const channel of channels) {
  channel.onmessage = ({ data }) => {
    if (!take(data)) for (const c of channels) c.close();
  };
}
parentPort.postMessage("up");
