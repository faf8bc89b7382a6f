// The ordering stress test's worker side, for any host (tests/workers/stress.mjs
// under node:worker_threads, tests/deno/workers/stress.mjs in a Deno Web Worker,
// tests/browser/workers/stress.ts in a page's Web Worker;
// the checks are tests/ordering.ts). Senders multicast numbered messages;
// receivers log what they get, in order, and answer some messages with
// replies to the other receivers.
import { xorshift32 } from "./xorshift.mjs";

/**
 * Runs one role on the bus `handle` (attached with `Bus`, closed at the end)
 * and returns what the test checks: a sender's completion indexes, or a
 * receiver's log. Throws if a receiver has not got everything in 45 s.
 */
export async function runStress(Bus, data) {
  const { handle, role, index, ref, targets, ctl, plan, replyRate, seed } = data;
  const bus = await Bus.attach(handle);
  const peer = bus.adopt(ref);
  try {
    return run(peer, { role, index, targets, ctl, plan, replyRate, seed, nSenders: data.nSenders, nReceivers: data.nReceivers });
  } finally {
    bus.close();
  }
}

function run(peer, { role, index, targets, ctl, plan, replyRate, seed, nSenders, nReceivers }) {
  const c = new Int32Array(ctl);
  // control words
  const G = 0, SENDERS_DONE = 1, KIND0_DONE = 2, EXPECT0 = 8, EXPECTR = 16;

  const rand = xorshift32(seed);

  /** Header: kind, sender, seq, stamp, replyToSender, replyToSeq, size; then a pattern. */
  function makePayload(kind, sender, seq, stamp, rs, rq, size) {
    const p = new Uint8Array(Math.max(size, 28));
    const v = new DataView(p.buffer);
    v.setUint32(0, kind, true); v.setUint32(4, sender, true); v.setUint32(8, seq, true);
    v.setUint32(12, stamp, true); v.setUint32(16, rs, true); v.setUint32(20, rq, true);
    v.setUint32(24, p.length, true);
    for (let i = 28; i < p.length; i++) p[i] = (sender * 31 + seq * 7 + i) & 255;
    return p;
  }

  function checkPayload(p) {
    const v = new DataView(p.buffer, p.byteOffset, p.byteLength);
    const sender = v.getUint32(4, true), seq = v.getUint32(8, true);
    if (v.getUint32(24, true) !== p.length) return false;
    for (let i = 28; i < p.length; i++) if (p[i] !== ((sender * 31 + seq * 7 + i) & 255)) return false;
    return true;
  }

  if (role === "sender") {
    const completed = [];
    for (let seq = 0; seq < plan.length; seq++) {
      const { dsts, size } = plan[seq];
      // every send that completed before this one started has an index < stamp
      const stamp = Atomics.load(c, G);
      const payload = makePayload(0, index, seq, stamp, 0, 0, size);
      for (const d of dsts) Atomics.add(c, EXPECT0 + d, 1);
      peer.send(dsts.map((d) => targets[d]), payload);
      completed.push(Atomics.add(c, G, 1));
    }
    Atomics.add(c, SENDERS_DONE, 1);
    return { role, index, completed };
  } else {
    const log = [];
    let got0 = 0, gotR = 0, replies = 0, seqR = 0, kind0Done = false;
    const deadline = Date.now() + 45_000;
    for (;;) {
      if (Date.now() > deadline) throw new Error(`receiver ${index} timed out: got0 ${got0} gotR ${gotR}`);
      const m = peer.recv();
      if (!m) {
        if (!kind0Done && Atomics.load(c, SENDERS_DONE) === nSenders && got0 === Atomics.load(c, EXPECT0 + index)) {
          kind0Done = true;
          Atomics.add(c, KIND0_DONE, 1);
        }
        if (kind0Done && Atomics.load(c, KIND0_DONE) === nReceivers && gotR === Atomics.load(c, EXPECTR + index)) break;
        peer.wait(20);
        continue;
      }
      if (m.type !== "data") throw new Error(`receiver ${index}: unexpected ${m.type}`);
      const v = new DataView(m.payload.buffer, m.payload.byteOffset, m.payload.byteLength);
      const kind = v.getUint32(0, true), sender = v.getUint32(4, true), seq = v.getUint32(8, true);
      const entry = [kind, sender, seq, v.getUint32(12, true), v.getUint32(16, true), v.getUint32(20, true),
        m.continue ? 1 : 0, checkPayload(m.payload) ? 1 : 0];
      log.push(entry);
      m.release();
      if (kind === 0) {
        got0++;
        if (rand() < replyRate) {
          // answer to every other receiver, as one multicast
          const others = [];
          for (let r = 0; r < nReceivers; r++) if (r !== index) others.push(r);
          for (const r of others) Atomics.add(c, EXPECTR + r, 1);
          peer.send(others.map((r) => targets[r]), makePayload(1, 100 + index, seqR++, 0, sender, seq, 40));
          replies++;
        }
      } else {
        gotR++;
      }
    }
    return { role, index, log, replies };
  }
}
