// Worker of tests/lanes-redteam*.test.ts: one send (raw send_begin and send_commit, as
// Peer.#sendOne makes them) whose two calls are `holdMs` apart, so that another thread's
// call runs in between: a lane send, or a locked send that holds its receiver's lock all
// that time. ctl: [0] 1 once send_begin returned, [1] 1 once committed; [waitAt] is the
// word it sleeps on (never written). With tbuf, t[0] is the commit time (ms since epoch).
import { workerData, parentPort } from "node:worker_threads";
import { Bus } from "bus1-wasm";
import { coreOf } from "../../dist/host-common/bus.js";

const { handle, ref, dest, ctl, tbuf, holdMs, size = 8, waitAt = 2 } = workerData;
const bus = await Bus.attach(handle);
const peer = bus.adopt(ref);
const c = new Int32Array(ctl);
const t = tbuf ? new Float64Array(tbuf) : null;
const core = coreOf(bus);
const base = core.scratchFor(16);
core.f64[base >>> 3] = dest;
const rc = core.ex.send_begin(core.ctx, ref.slot, ref.gen, 0, base, 1, 1, size, base + 8, 0, base + 8, 0, base + 8);
core.views();
const addr = core.u32[(base + 12) >>> 2];
Atomics.store(c, 0, 1);
Atomics.notify(c, 0);
Atomics.wait(c, waitAt, 0, holdMs);
if (rc > 0) new Uint8Array(core.buffer, addr, size).fill(0x77);
if (t) t[0] = Date.now();
if (rc > 0) core.ex.send_commit(core.ctx);
Atomics.store(c, 1, 1);
parentPort.postMessage({ rc });
peer.close();
bus.close();
