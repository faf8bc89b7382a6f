// The measuring worker: blocks in peer.wait(), receives with recv() and
// releases every slice. The first payload byte says what a message is:
// data is counted, a ping is answered with a pong, an end marker is answered
// with the count since the last one, quit ends the loop.
import { workerData } from "node:worker_threads";
import { Bus } from "bus1-wasm";
import { DATA, END, PING, say } from "./shared.mjs";

const { handle, ref, back } = workerData;
const bus = await Bus.attach(handle);
const peer = bus.adopt(ref);
say("sink", "attached; loops peer.wait() → recv() → release()");

const pong = new Uint8Array([PING]);
const summary = new Float64Array(2); // messages, payload bytes
let count = 0;
let bytes = 0;

peer.send(back, pong); // up
for (;;) {
  const message = peer.recv();
  if (message === null) {
    if (!peer.wait(20_000)) {
      say("sink", "nothing for 20 s: giving up");
      break;
    }
    continue;
  }
  const payload = message.payload;
  const kind = message.type === "data" && payload.length > 0 ? payload[0] : -1;
  if (kind === DATA) {
    count++;
    bytes += payload.length;
    message.release();
    continue;
  }
  message.release();
  if (kind === PING) {
    peer.send(back, pong);
  } else if (kind === END) {
    summary[0] = count;
    summary[1] = bytes;
    peer.send(back, new Uint8Array(summary.buffer));
    count = 0;
    bytes = 0;
  } else {
    break; // quit, or anything else
  }
}
bus.close();
