// A Web Worker that sends `count` numbered messages to one target as fast as
// it can (tests/browser/main-thread.test.ts): the receiver's lock is
// contended by every send.
import { Bus } from "bus1-wasm";
import { onTask } from "./task.js";

onTask(async ({ handle, ref, target, count, index }, post) => {
  const bus = await Bus.attach(handle);
  const peer = bus.adopt(ref);
  const payload = new Uint8Array(8);
  const v = new DataView(payload.buffer);
  for (let i = 0; i < count; i++) {
    v.setUint32(0, index, true);
    v.setUint32(4, i, true);
    for (;;) {
      try {
        peer.send(target, payload);
        break;
      } catch (e) {
        if ((e as { code?: string }).code !== "EDQUOT") throw e;
        Atomics.wait(new Int32Array(new SharedArrayBuffer(4)), 0, 0, 0.2); // the receiver is behind
      }
    }
  }
  post("done");
  bus.close();
});
