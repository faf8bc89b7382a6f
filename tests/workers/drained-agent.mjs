// Worker of tests/drained.test.ts. cmd "break": marks the bus broken, as a
// core trap in this thread would (bus_fail). cmd "flood": sends `n` messages
// of `size` bytes to `dest` (bytes 0–3: the number, little-endian; byte 4:
// `tag`), each time again after a short sleep on EDQUOT.
import { workerData, parentPort } from "node:worker_threads";
import { Bus, Bus1Error } from "bus1-wasm";
import { coreOf } from "../../dist/host-common/bus.js";

const { handle, ref, cmd, dest, n, size, tag } = workerData;
const bus = await Bus.attach(handle);
if (cmd === "break") {
  coreOf(bus).ex.bus_fail();
} else {
  const peer = bus.adopt(ref);
  const bytes = new Uint8Array(size);
  const view = new DataView(bytes.buffer);
  bytes[4] = tag;
  const nap = new Int32Array(new SharedArrayBuffer(4));
  for (let i = 0; i < n; i++) {
    view.setUint32(0, i, true);
    for (;;) {
      try {
        peer.send(dest, bytes);
        break;
      } catch (e) {
        if (!(e instanceof Bus1Error) || e.code !== "EDQUOT") throw e;
        Atomics.wait(nap, 0, 0, 0.05);
      }
    }
  }
  peer.close();
}
parentPort.postMessage(cmd);
bus.close();
