// A worker that blocks in peer.wait() with nothing to receive (the floor
// group's idle-CPU figure). It first says which Linux thread it is
// (/proc/thread-self names it), then answers each message of the main
// thread with an empty one and waits again. A message whose first byte is
// QUIT ends it.
import { readlinkSync } from "node:fs";
import { parentPort, workerData } from "node:worker_threads";
import { Bus } from "bus1-wasm";
import { QUIT, recvBlocking } from "../protocol.js";

const { handle, ref, back } = workerData;
const bus = await Bus.attach(handle);
const peer = bus.adopt(ref);
const answer = new Uint8Array(8);

parentPort.postMessage("up");
parentPort.postMessage(readlinkSync("/proc/thread-self")); // "<pid>/task/<tid>"
for (;;) {
  const m = recvBlocking(peer, 60_000);
  const quit = m.payload[0] === QUIT;
  m.release();
  if (quit) break;
  peer.send(back, answer);
}
bus.close();
