// A worker of tests/threads.test.ts: takes a place among the threads that
// spin in wait(), exactly as Peer.spin does (the count in the root raised,
// then its context's spinning flag set), and stops there, outside any bus
// call, as if it were terminated in the middle of a spin.
import { workerData, parentPort } from "node:worker_threads";
import { Bus } from "bus1-wasm";
import { coreOf } from "../../dist/host-common/bus.js";

const { handle, ref } = workerData;
const bus = await Bus.attach(handle);
bus.adopt(ref);
const core = coreOf(bus);
const i32 = new Int32Array(core.memory.buffer);
const spinners = (core.ex.bus_root() + 76) >>> 2;
const flag = (core.ctx + 172) >>> 2;
Atomics.add(i32, spinners, 1);
Atomics.store(i32, flag, 1);
parentPort.postMessage({ step: "spinning" });
Atomics.wait(new Int32Array(new SharedArrayBuffer(4)), 0, 0); // until terminated
