// A worker of tests/churn.test.ts: one attach/detach cycle of a thread.
// It attaches to the bus and gets a peer, either by adopting the one the main
// thread made and wired to its `home` peer (mode "adopt": ref, toHome), or by
// connecting its own and wiring it through an adopted reference to `home`
// (mode "connect": homeRef). It sends `home` a message with host objects,
// receives the reply with its host object and releases it. Then it lets go:
// exit "close" calls bus.close() and ends; exit "terminate" stays, outside
// any bus call, until the main thread terminates it.
// Posts { step: "sent", toPeer } (home's handle to the peer's node 4, when it
// made it), then { step: "done", reply: { type, text, objects } }.
import { workerData, parentPort } from "node:worker_threads";
import { Bus } from "bus1-wasm";

const { handle, cycle, mode, exit, ref, toHome: given, homeRef } = workerData;
const bus = await Bus.attach(handle);
let peer, toHome, toPeer = null;
if (mode === "adopt") {
  peer = bus.adopt(ref);
  toHome = given;
} else {
  peer = bus.connect({ user: 1 + (cycle % 7) });
  const home = bus.adopt(homeRef);
  toHome = home.transfer(4, peer);
  toPeer = peer.transfer(4, home);
}
peer.send(toHome, new TextEncoder().encode(`from worker ${cycle}`), {
  objects: [{ cycle, from: "worker", list: [1, 2, 3] }, new ArrayBuffer(32)],
});
parentPort.postMessage({ step: "sent", toPeer });
if (!peer.wait(10_000)) throw new Error(`worker ${cycle}: no reply within 10 s`);
const m = peer.recv();
const reply = { type: m.type, text: new TextDecoder().decode(m.payload.slice()), objects: m.objects };
m.release();
if (exit === "close") {
  bus.close();
  parentPort.postMessage({ step: "done", reply });
} else {
  parentPort.postMessage({ step: "done", reply });
  Atomics.wait(new Int32Array(new SharedArrayBuffer(4)), 0, 0); // until terminated
}
