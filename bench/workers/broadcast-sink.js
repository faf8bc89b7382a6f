// A receiver of BroadcastChannel messages: worker `index` listens on the
// channel of every fan-out K it belongs to (index < K), so that a message
// posted on channel K reaches exactly K workers. Counts go back to the main
// thread on parentPort.
import { BroadcastChannel, parentPort, workerData } from "node:worker_threads";
import { DATA, END, summary } from "../protocol.js";

const { index, prefix, fanouts } = workerData;
let count = 0, bytes = 0;

const channels = fanouts.filter((k) => index < k).map((k) => new BroadcastChannel(`${prefix}${k}`));
for (const channel of channels) {
  channel.onmessage = ({ data: payload }) => {
    const kind = payload.length > 0 ? payload[0] : -1;
    if (kind === DATA) {
      count++;
      bytes += payload.length;
    } else if (kind === END) {
      parentPort.postMessage(summary(count, bytes));
      count = bytes = 0;
    } else {
      for (const c of channels) c.close();
    }
  };
}
parentPort.postMessage("up");
