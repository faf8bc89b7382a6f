// A worker of the lock-contention test: many sends to one receiver at once,
// so that locks are contended and taken through the sleeping path (the loop:
// tests/workers/hammer-loop.mjs; a refused send is tried again at once).
import { workerData, parentPort } from "node:worker_threads";
import { Bus } from "bus1-wasm";
import { hammer } from "./hammer-loop.mjs";

const bus = await Bus.attach(workerData.handle);
hammer(bus.adopt(workerData.ref), workerData);
parentPort.postMessage("done");
bus.close();
