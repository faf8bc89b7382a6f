// Worker of tests/lanes-redteam.test.ts: one role per worker, bounded in time.
// ctl (Int32Array): [0] stop flag, [1] ready count, [2..] per-role counters.
import { workerData, parentPort } from "node:worker_threads";
import { Bus } from "bus1-wasm";

const { handle, role, ref, dest, ctl, ms = 5000, size = 8, extra } = workerData;
const bus = await Bus.attach(handle);
const peer = ref ? bus.adopt(ref) : null;
const c = new Int32Array(ctl);
const deadline = Date.now() + ms;
const stop = () => Atomics.load(c, 0) !== 0 || Date.now() > deadline;
Atomics.add(c, 1, 1);
const out = { role, n: 0, codes: {} };
try {
  if (role === "flood") {
    // plain unicasts of `size` bytes to `dest`, numbered; counts successes in ctl[2 + extra.slot]
    const p = new Uint8Array(Math.max(size, 4));
    const v = new DataView(p.buffer);
    const max = extra?.max ?? Infinity;
    const window = extra?.window ?? Infinity;
    while (!stop() && out.n < max) {
      // at most `window` messages not yet received (the receiver counts in ctl[10 + slot])
      if (out.n - Atomics.load(c, 10 + (extra?.slot ?? 0)) >= window) continue;
      v.setUint32(0, out.n, true);
      try {
        peer.send(dest, size >= 4 ? p : p.subarray(0, size));
        out.n++;
        if (extra?.slot !== undefined) Atomics.store(c, 2 + extra.slot, out.n);
      } catch (e) {
        out.codes[e.code] = (out.codes[e.code] ?? 0) + 1;
        if (extra?.stopOn?.includes(e.code)) break;
        if (e.code === "EDQUOT") { Atomics.wait(c, 31, 0, 0.05); continue; }
        if (e.code === "ESHUTDOWN" || e.code === "EHOSTUNREACH" || e.code === "ENXIO") break;
        throw e;
      }
    }
  } else if (role === "drain") {
    // receives and releases; checks per-sender FIFO of numbered 8+ byte payloads by size class
    const last = new Map();
    out.bad = [];
    while (!stop()) {
      const m = peer.recv();
      if (!m) { peer.wait(1); continue; }
      if (m.type === "data") {
        if (m.payload.length >= 4) {
          const n = new DataView(m.payload.buffer, m.payload.byteOffset, 4).getUint32(0, true);
          const k = m.destination;
          if (last.has(k) && n <= last.get(k) && out.bad.length < 5) out.bad.push(`dest ${k}: ${n} after ${last.get(k)}`);
          last.set(k, n);
        }
        Atomics.add(c, 10 + (extra?.slots?.[m.destination] ?? extra?.slot ?? 0), 1);
        m.release();
      }
      out.n++;
    }
  } else if (role === "count") {
    // counts data to extra.node before and after its node-destroy; ends a moment after that
    out.before = 0; out.after = 0; out.destroyed = false;
    let endAt = Infinity;
    while (!stop() && Date.now() < endAt) {
      const m = peer.recv();
      if (!m) { peer.wait(1); continue; }
      if (m.type === "node-destroy") { if (m.destination === extra.node) { out.destroyed = true; endAt = Date.now() + 200; } continue; }
      if (m.type !== "data") continue;
      if (m.destination === extra.node) { if (out.destroyed) out.after++; else out.before++; }
      Atomics.add(c, 10, 1);
      (out.offs ??= new Set()).add(m.offset);
      m.release();
    }
  } else if (role === "pingpong") {
    // extra.first sends first; every message is answered; a wait of 2 s without one is a lost wake-up
    const buf = new Uint8Array(16);
    if (extra.first) peer.send(dest, buf);
    out.hangs = 0;
    while (out.n < extra.rounds && !stop()) {
      const m = peer.recv();
      if (!m) { if (!peer.wait(2000)) { out.hangs++; if (out.hangs > 2) break; } continue; }
      m.release();
      out.n++;
      if (!(extra.first && out.n === extra.rounds)) peer.send(dest, buf);
    }
  } else if (role === "revoke") {
    // reset limits on a peer of the user: every lane of the user gives its credit back
    while (!stop()) {
      peer.reset({ limits: { maxSlices: extra?.maxSlices ?? 16384 } });
      out.n++;
      if (extra?.pauseMs) Atomics.wait(c, 31, 0, extra.pauseMs);
    }
  } else if (role === "inspect") {
    const { snapshotProblems } = await import("../inspect-check.ts").catch(() => ({ snapshotProblems: null }));
    out.bad = [];
    while (!stop()) {
      const s = bus.inspect();
      out.n++;
      if (snapshotProblems) {
        const b = snapshotProblems(s);
        if (b.length) { out.bad.push(...b.slice(0, 5)); break; }
      }
    }
  }
} catch (e) {
  out.error = String(e?.stack ?? e);
}
out.codes = JSON.stringify(out.codes);
if (out.offs) out.offs = out.offs.size;
parentPort.postMessage(out);
bus.close();
