// A Web Worker that sends `count` numbered messages to one target as fast as
// it can (tests/browser/main-thread.test.ts): the receiver's lock is
// contended by every send. The loop is tests/workers/hammer-loop.mjs.
import { Bus } from "bus1-wasm";
import { hammer } from "../../workers/hammer-loop.mjs";
import { onTask } from "./task.js";

// the receiver is behind: a short sleep before the send is tried again
const backOff = () => Atomics.wait(new Int32Array(new SharedArrayBuffer(4)), 0, 0, 0.2);

onTask(async (data, post) => {
  const bus = await Bus.attach(data.handle);
  hammer(bus.adopt(data.ref), data, backOff);
  post("done");
  bus.close();
});
