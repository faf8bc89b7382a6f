// A worker of the notification-ordering test (tests/concurrency.test.ts).
// owner: receives messages to its node 8, destroys it after `destroyAfter`.
// holder: sends to node 8, and to the other holder messages that carry a
// handle to node 8, until node 8 is unreachable; logs what it receives.
import { workerData, parentPort } from "node:worker_threads";
import { Bus } from "bus1-wasm";

const { handle, role, ref, ctl, destroyAfter, hN, other, index } = workerData;
const bus = await Bus.attach(handle);
const peer = bus.adopt(ref);
const c = new Int32Array(ctl);
const HOLDERS_DONE = 0, DESTROYED = 1;
const deadline = Date.now() + 30_000;
const log = [];

function take() {
  const m = peer.recv();
  if (!m) return null;
  log.push([m.type, m.destination, m.handles.length ? m.handles[0] : null]);
  m.release();
  return m;
}

if (role === "owner") {
  let got = 0;
  for (;;) {
    if (Date.now() > deadline) throw new Error("owner timed out");
    const m = take();
    if (m && m.type === "data" && ++got === destroyAfter) {
      peer.destroy(8);
      Atomics.store(c, DESTROYED, 1);
    }
    if (!m) {
      if (Atomics.load(c, HOLDERS_DONE) === 2) break;
      peer.wait(10);
    }
  }
} else {
  let sending = true, sent = 0;
  for (;;) {
    if (Date.now() > deadline) throw new Error(`holder ${index} timed out`);
    if (sending) {
      try {
        peer.send(hN, new Uint8Array([index, sent & 255]));
        peer.send(other, new Uint8Array([index]), { handles: [hN] });
        sent++;
      } catch (e) {
        // EDQUOT: a receiver is behind; receive below, then try again
        if (e.code === "EHOSTUNREACH") sending = false;
        else if (e.code !== "EDQUOT") throw e;
      }
      if (!sending) {
        // one more message carrying the handle, surely after the destruction
        for (;;) {
          try {
            peer.send(other, new Uint8Array([index]), { handles: [hN] });
            break;
          } catch (e) {
            if (e.code !== "EDQUOT") throw e;
            take();
          }
        }
        Atomics.add(c, HOLDERS_DONE, 1);
      }
    }
    const m = take();
    if (!m && !sending && Atomics.load(c, HOLDERS_DONE) === 2 && log.some((e) => e[0] === "node-destroy")) {
      if (!peer.wait(20)) break;
    }
  }
}
parentPort.postMessage({ role, index, log });
bus.close();
