// The worker of tests/lanes.test.ts: one role per worker, chosen by
// workerData.role. It attaches to the bus, adopts the peer reference it is
// given, plays its role and posts what the test checks; it closes the bus
// (this thread lets go) before it ends.
//
// agent   answers requests one at a time, like threads-agent.mjs:
//         { id, op: "adopt", ref, as } | { id, op: "call", peer, method, args }
//         | { id, op: "sendMany", peer, target, tag, from, sizes, raw }
//         | { id, op: "exit" }; replies { id, value } or { id, error }.
// kinds   runs a planned list of sends (with or without handles, unicast or
//         multicast) and destroys of its own nodes, in order.
// logger  receives `count` messages and logs each of them.
// relay   one side of a hand-off through a SharedArrayBuffer: A sends, then
//         lets B go; B sends, then lets A go; `rounds` times.
// flood   sends numbered messages to one target until told to stop, and
//         records what each send returned.
import { workerData, parentPort } from "node:worker_threads";
import { Bus, Bus1Error } from "bus1-wasm";
import { makePayload, readPayload } from "./lanes-payload.mjs";
import { xorshift32 } from "./xorshift.mjs";

const bus = await Bus.attach(workerData.handle);
const nap = new Int32Array(new SharedArrayBuffer(4));
const sleep = (ms) => Atomics.wait(nap, 0, 0, ms);

function describe(e) {
  return { bus1: e instanceof Bus1Error, code: e?.code ?? null, message: String(e?.message ?? e) };
}

// ---------------------------------------------------------------------------

function agent() {
  const peers = new Map();
  const peerOf = (name) => {
    const p = peers.get(name);
    if (!p) throw new Error(`agent: no peer named ${name}`);
    return p;
  };
  const arg = (a) => (a && typeof a === "object" && typeof a.$peer === "string" ? peerOf(a.$peer) : a);
  parentPort.on("message", (req) => {
    try {
      let value = null;
      if (req.op === "adopt") {
        peers.set(req.as, bus.adopt(req.ref));
      } else if (req.op === "call") {
        let v = peerOf(req.peer)[req.method](...(req.args ?? []).map(arg));
        if (v && typeof v === "object" && "payload" in v && typeof v.release === "function") {
          const copy = { type: v.type, destination: v.destination, continue: v.continue, offset: v.offset, bytes: Array.from(v.payload), handles: Array.from(v.handles) };
          v.release();
          v = copy;
        }
        value = v === undefined ? null : v;
      } else if (req.op === "sendMany") {
        // one send per size; every result is reported, a failure does not stop the others
        const p = peerOf(req.peer);
        value = req.sizes.map((size, k) => {
          try {
            const payload = req.raw ? new Uint8Array(size).fill((req.from + k) & 255) : makePayload(req.tag, req.from + k, size);
            p.send(req.target, payload);
            return null;
          } catch (e) {
            return e?.code ?? String(e);
          }
        });
      } else if (req.op === "exit") {
        bus.close();
        parentPort.postMessage({ id: req.id, value: null });
        parentPort.close();
        return;
      } else {
        throw new Error(`agent: unknown op ${req.op}`);
      }
      parentPort.postMessage({ id: req.id, value });
    } catch (e) {
      parentPort.postMessage({ id: req.id, error: describe(e) });
    }
  });
  parentPort.postMessage({ id: 0, value: "ready" });
}

// ---------------------------------------------------------------------------

function kinds({ ref, tag, ops }) {
  const peer = bus.adopt(ref);
  const errors = [];
  for (const op of ops) {
    try {
      if (op.destroy !== undefined) peer.destroy([op.destroy], { releaseHandles: op.release });
      else peer.send(op.dsts.length === 1 ? op.dsts[0] : op.dsts, makePayload(tag, op.seq, op.size), op.handles ? { handles: op.handles } : undefined);
    } catch (e) {
      errors.push({ op, ...describe(e) });
    }
  }
  // its own node-destroy notifications (destroys without releaseHandles)
  const own = [];
  for (let m = peer.recv(); m; m = peer.recv()) {
    own.push([m.type, m.destination]);
    m.release();
  }
  return { errors, own };
}

/** Type codes of a log entry. */
const TYPE = { data: 0, "node-destroy": 1, "node-release": 2 };

function logger({ ref, count, pauseEvery = 0, pauseMs = 1, timeoutMs = 12_000 }) {
  const peer = bus.adopt(ref);
  // [type, destination, tag, seq, continue, first handle or null, intact, number of handles]
  const log = [];
  const deadline = Date.now() + timeoutMs;
  while (log.length < count) {
    if (Date.now() > deadline) return { log, timedOut: true };
    const m = peer.recv();
    if (!m) {
      peer.wait(20);
      continue;
    }
    const h = m.type === "data" ? readPayload(m.payload) : { tag: -1, seq: -1, intact: m.payload.length === 0 };
    log.push([TYPE[m.type], m.destination, h.tag, h.seq, m.continue ? 1 : 0, m.handles.length ? m.handles[0] : null, h.intact ? 1 : 0, m.handles.length]);
    m.release();
    // let messages pile up now and then, so that a receive finds many waiting
    if (pauseEvery && log.length % pauseEvery === 0) sleep(pauseMs);
  }
  return { log, timedOut: false };
}

function relay({ ref, side, ctl, rounds, tag, dsts, handles, burst }) {
  const peer = bus.adopt(ref);
  // ctl [0]: 2i + 1 once A has sent round i, 2i + 2 once B has; [1]: abort
  const c = new Int32Array(ctl);
  const deadline = Date.now() + 15_000;
  const awaitTurn = (want) => {
    for (let cur = Atomics.load(c, 0); cur !== want; cur = Atomics.load(c, 0)) {
      if (Atomics.load(c, 1) || Date.now() > deadline) throw new Error(`relay ${side}: no turn ${want} (at ${cur})`);
      Atomics.wait(c, 0, cur, 5);
    }
  };
  let seq = 0;
  try {
    for (let i = 0; i < rounds; i++) {
      awaitTurn(side === "A" ? 2 * i : 2 * i + 1);
      const n = side === "A" ? 1 + (i % burst) : 1;
      for (let k = 0; k < n; k++, seq++) {
        // mostly small; now and then one large enough to fill a lane's arena
        const size = seq % 41 === 40 ? 9000 + (seq % 7) * 1000 : 12 + ((seq * 37) % 300);
        peer.send(dsts.length === 1 ? dsts[0] : dsts, makePayload(tag, seq, size), handles ? { handles } : undefined);
      }
      Atomics.store(c, 0, side === "A" ? 2 * i + 1 : 2 * i + 2);
      Atomics.notify(c, 0);
    }
  } catch (e) {
    Atomics.store(c, 1, 1);
    Atomics.notify(c, 0);
    return { sent: seq, error: describe(e) };
  }
  return { sent: seq, error: null };
}

/** The errors a flood may meet, by what the test does to it; anything else is reported as unexpected. */
function flood({ ref, target, ctl, seed, tag }) {
  const peer = bus.adopt(ref);
  // ctl [0]: the main thread's action has completed; [1]: stop; [2]: successful sends so far;
  // [3]: the main thread is about to start its action
  const c = new Int32Array(ctl);
  const rand = xorshift32(seed);
  const ok = [], okAfterAction = [], codes = {};
  let firstRefusal = -1, okAfterRefusal = 0, failures = 0, lastOkBeforeAction = -1;
  const deadline = Date.now() + 15_000;
  for (let seq = 0; !Atomics.load(c, 1) && Date.now() < deadline; seq++) {
    const after = Atomics.load(c, 0);
    const x = rand();
    const size = x < 0.03 ? 4096 + Math.floor(rand() * 16384) : 12 + Math.floor(rand() * 200);
    try {
      peer.send(target, makePayload(tag, seq, size));
      ok.push(seq);
      if (after) okAfterAction.push(seq);
      // completed before the action started: it must be delivered if the receiver is still there
      if (!Atomics.load(c, 3)) lastOkBeforeAction = seq;
      if (firstRefusal >= 0) okAfterRefusal++;
      Atomics.add(c, 2, 1);
    } catch (e) {
      const code = e instanceof Bus1Error ? e.code : `not a Bus1Error: ${e?.name}: ${e?.message}`;
      codes[code] = (codes[code] ?? 0) + 1;
      failures++;
      if (code === "EDQUOT") {
        sleep(0.2); // the receiver is behind
      } else {
        if (firstRefusal < 0) firstRefusal = seq;
        sleep(1); // it will not get better: keep trying, slowly
      }
    }
  }
  return { ok, okAfterAction, codes, firstRefusal, okAfterRefusal, failures, lastOkBeforeAction, stoppedByDeadline: !Atomics.load(c, 1) };
}

// ---------------------------------------------------------------------------

const roles = { kinds, logger, relay, flood };
if (workerData.role === "agent") {
  agent();
} else {
  const run = roles[workerData.role];
  if (!run) throw new Error(`lanes-agent: unknown role ${workerData.role}`);
  const result = run(workerData);
  parentPort.postMessage(result);
  bus.close();
}
