// A worker of tests/transfer-hostile.test.ts: waits at a gate (so that several
// attach at the same moment), attaches, and says its serial and channels.
// mode "exit": closes the bus at once and lets its thread end by itself.
import { workerData, parentPort } from "node:worker_threads";
import { Bus } from "bus1-wasm";
import { coreOf } from "../../dist/host-common/bus.js";

const gate = new Int32Array(workerData.gate);
Atomics.add(gate, 1, 1);
Atomics.wait(gate, 0, 0, 5_000);
const bus = await Bus.attach(workerData.handle);
const core = coreOf(bus);
if (workerData.mode === "exit") {
  bus.close();
  parentPort.postMessage({ serial: core.serial, closedAt: Date.now() });
} else {
  parentPort.on("message", (m) => {
    if (m === "links") parentPort.postMessage({ serial: core.serial, links: Object.keys(core.objects.links).map(Number) });
  });
  parentPort.postMessage({ serial: core.serial });
}
