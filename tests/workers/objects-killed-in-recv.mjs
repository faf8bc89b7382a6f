// A worker of tests/objects-killed-in-recv.test.ts: receives one message that
// carries host objects and stops (spins) while its host is still turning the
// records into values, i.e. after the core's recv returned and before the
// last record was taken: the main thread terminates it there.
import { workerData, parentPort } from "node:worker_threads";
import { Bus } from "bus1-wasm";
import { coreOf } from "../../dist/host-common/bus.js";

const { handle, ref } = workerData;
const bus = await Bus.attach(handle);
const peer = bus.adopt(ref);
const table = coreOf(bus).objects;
const take = table.take.bind(table);
let n = 0;
// the second record of the message: the first is taken, the others are not
table.take = (rec) => {
  if (++n === 2) {
    parentPort.postMessage("in-take");
    for (;;);
  }
  return take(rec);
};
parentPort.postMessage("ready");
peer.wait(10_000);
peer.recv();
