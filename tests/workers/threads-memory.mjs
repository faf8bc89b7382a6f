// A worker of tests/threads.test.ts, about payload views while the shared
// memory grows.
// holder: receives one message, keeps it unreleased, and checks its bytes
//   through the original view until every sender is done; then once more.
// sender: sends `count` payloads of `size` bytes to `target`.
// ctl: Int32 [0] senders done, [1] holder holding.
import { workerData, parentPort } from "node:worker_threads";
import { Bus } from "bus1-wasm";

const { handle, ref, role, ctl, nSenders } = workerData;
const bus = await Bus.attach(handle);
const peer = bus.adopt(ref);
const c = new Int32Array(ctl);
const pattern = (seed, i) => (seed * 131 + i * 7 + (i >> 9)) & 255;

if (role === "holder") {
  if (!peer.wait(10_000)) throw new Error("holder: nothing arrived");
  const m = peer.recv();
  const view = m.payload;
  const seed = view[0];
  const check = () => {
    let bad = 0;
    for (let i = 1; i < view.length; i++) if (view[i] !== pattern(seed, i)) bad++;
    return bad;
  };
  const startLength = bus.handle.memory.buffer.byteLength;
  const initialBad = check();
  Atomics.store(c, 1, 1);
  parentPort.postMessage({ step: "holding", length: view.length, offset: m.offset, startLength });
  const deadline = Date.now() + 10_000;
  let checks = 0, badDuring = 0;
  while (Atomics.load(c, 0) < nSenders && Date.now() < deadline) {
    badDuring += check();
    checks++;
  }
  // the old view, and a fresh one on the grown memory, still show the bytes
  const fresh = new Uint8Array(bus.handle.memory.buffer, m.offset, view.length);
  let freshBad = 0;
  for (let i = 1; i < fresh.length; i++) if (fresh[i] !== pattern(seed, i)) freshBad++;
  const endLength = bus.handle.memory.buffer.byteLength;
  const finalBad = check();
  m.release();
  parentPort.postMessage({
    step: "verified", initialBad, badDuring, finalBad, freshBad, checks, startLength, endLength,
    viewLength: view.length, sendersDone: Atomics.load(c, 0),
  });
} else {
  const { target, count, size, index } = workerData;
  const deadline = Date.now() + 10_000;
  while (Atomics.load(c, 1) === 0 && Date.now() < deadline) Atomics.wait(c, 1, 0, 5);
  let sent = 0;
  for (let k = 0; k < count; k++) {
    const seed = (index * 16 + k + 1) & 255;
    const p = new Uint8Array(size);
    p[0] = seed;
    for (let i = 1; i < size; i++) p[i] = pattern(seed, i);
    peer.send(target, p);
    sent++;
  }
  Atomics.add(c, 0, 1);
  parentPort.postMessage({ sent });
}
bus.close();
