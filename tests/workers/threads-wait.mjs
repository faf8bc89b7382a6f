// A worker of tests/threads.test.ts: blocks in peer.wait() until the main
// thread sends, then checks that wait(50) times out when nothing comes.
// ctl: Int32 [0] = 1 once the main thread is about to send; Float64 [1] =
// the wall-clock time (timeOrigin + now) just before that send.
import { workerData, parentPort } from "node:worker_threads";
import { Bus } from "bus1-wasm";

const { handle, ref, ctl } = workerData;
const bus = await Bus.attach(handle);
const peer = bus.adopt(ref);
const flag = new Int32Array(ctl, 0, 1);
const when = new Float64Array(ctl, 8, 1);
const now = () => performance.timeOrigin + performance.now();

parentPort.postMessage({ step: "waiting" });
const t0 = performance.now();
const woke = peer.wait(10_000);
const t1 = performance.now();
const sentBeforeWake = Atomics.load(flag, 0) === 1;
const latency = now() - when[0];
const m = peer.recv();
const text = m ? String.fromCharCode(...m.payload) : null;
m?.release();

const t2 = performance.now();
const timedOut = peer.wait(50);
const t3 = performance.now();
parentPort.postMessage({
  step: "done", woke, blocked: t1 - t0, sentBeforeWake, latency, text,
  timedOut, timeoutElapsed: t3 - t2,
});
bus.close();
