// A worker of tests/threads.test.ts: one of several threads that use
// references to the same peer at once. Each sends `perWorker` numbered
// messages to the peer's own node and receives from the same queue until
// all threads together have received every message. Then, on request, it
// closes its reference (and stays alive, so the close is explicit).
// ctl: Int32 [0] threads ready, [1] messages received by all threads.
import { workerData, parentPort } from "node:worker_threads";
import { Bus } from "bus1-wasm";

const { handle, ref, index, node, perWorker, nWorkers, ctl } = workerData;
const bus = await Bus.attach(handle);
const peer = bus.adopt(ref);
const c = new Int32Array(ctl);
const READY = 0, GOT = 1;
const total = perWorker * nWorkers;
const deadline = Date.now() + 10_000;

// start together
Atomics.add(c, READY, 1);
while (Atomics.load(c, READY) < nWorkers) {
  if (Date.now() > deadline) throw new Error(`worker ${index}: others did not start`);
  Atomics.wait(c, 2, 0, 1);
}

const got = [];     // [sender, seq, payloadOk]
const errors = [];
let sent = 0;
for (;;) {
  if (Date.now() > deadline) { errors.push(`timed out: sent ${sent}, all got ${Atomics.load(c, GOT)}`); break; }
  try {
    if (sent < perWorker) {
      const p = new Uint8Array(8 + (sent % 24)).fill(index * 7 + sent & 255);
      p[0] = index; p[1] = sent & 255; p[2] = sent >> 8;
      peer.send(node, p);
      sent++;
    }
    const m = peer.recv();
    if (m) {
      if (m.type !== "data" || m.destination !== node) errors.push(`unexpected ${m.type} to ${m.destination}`);
      const p = m.payload, s = p[0], q = p[1] | (p[2] << 8);
      let ok = p.length === 8 + (q % 24);
      for (let i = 3; i < p.length; i++) if (p[i] !== (s * 7 + q & 255)) ok = false;
      got.push([s, q, ok ? 1 : 0]);
      m.release();
      Atomics.add(c, GOT, 1);
    } else if (sent === perWorker) {
      if (Atomics.load(c, GOT) >= total) break;
      peer.wait(5);
    }
  } catch (e) {
    errors.push(`${e.code ?? ""} ${e.message}`);
    if (errors.length > 10) break;
  }
}
parentPort.postMessage({ index, got, errors });

parentPort.on("message", (msg) => {
  if (msg === "close") {
    peer.close();
    parentPort.postMessage("closed");
  }
});
