// Worker of tests/lanes-redteam2.test.ts: a locked send (raw send_begin) that holds its
// receiver's lock for `holdMs` before send_commit. ctl: [0] 1 once send_begin returned,
// [1] 1 once committed; t[0] commit time (ms since epoch, Float64Array over tbuf).
import { workerData, parentPort } from "node:worker_threads";
import { Bus } from "bus1-wasm";
import { coreOf } from "../../dist/host-common/bus.js";

const { handle, ref, dest, ctl, tbuf, holdMs, size = 8 } = workerData;
const bus = await Bus.attach(handle);
const peer = bus.adopt(ref);
const c = new Int32Array(ctl);
const t = new Float64Array(tbuf);
const core = coreOf(bus);
const base = core.scratchFor(16);
core.f64[base >>> 3] = dest;
const rc = core.ex.send_begin(core.ctx, ref.slot, ref.gen, 0, base, 1, 1, size, base + 8, 0, base + 8, 0, base + 8);
core.views();
const addr = core.u32[(base + 12) >>> 2];
Atomics.store(c, 0, 1);
Atomics.notify(c, 0);
Atomics.wait(c, 7, 0, holdMs);
if (rc > 0) new Uint8Array(core.buffer, addr, size).fill(0x77);
t[0] = Date.now();
if (rc > 0) core.ex.send_commit(core.ctx);
Atomics.store(c, 1, 1);
parentPort.postMessage({ rc });
peer.close();
bus.close();
