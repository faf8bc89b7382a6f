// The WASI build of the core (build/bus1.wasi.wasm), driven through its raw
// exports as docs/ABI.md describes them: no host-common, nothing but the ABI,
// so that what these steps do is what a host in another language would do.
// Shared by tests/wasi.test.ts (Node, node:wasi, worker_threads) and
// tests/deno/wasi.test.ts (Deno, its node:wasi, Deno Workers).
//
// Two threads, A and B, each a worker with its own WASI instance and its own
// instance of the module on one shared WebAssembly.Memory (tests/wasi/worker.mjs).
// The main thread runs the script: it asks a thread to run a step (below) and
// checks the answer. A step that blocks (a wait on a wake word, a lock) is
// answered once it returns, so the main thread can let the other thread act
// meanwhile.

// ---- the ABI (docs/ABI.md) ------------------------------------------------------------

export const ABI_VERSION = 7;
/** The imports of build/bus1.wasi.wasm, as module.name, sorted (ABI.md). */
export const WASI_BUILD_IMPORTS = [
  "bus1.objects_drop",
  "env.memory",
  "wasi_snapshot_preview1.clock_time_get",
  "wasi_snapshot_preview1.fd_write",
  "wasi_snapshot_preview1.proc_exit",
];

const EAGAIN = 11, EHOSTUNREACH = 113, EBADF = 9, ESHUTDOWN = 108, EINVAL = 22;
const ARG_DESTINATIONS = 1, ARG_PEER = 11, ARG_BROKEN = 12;
const MSG_DATA = 1, MSG_NODE_DESTROY = 2, MSG_NODE_RELEASE = 3, MSG_FLAG_CONTINUE = 1, MSG_FLAG_DRAINED = 2;
const RESET_FLUSH = 1;
const ID_MANAGED = 1, ID_REMOTE = 2;
const CTX_ERR_ARG = 28, CTX_ERR_INDEX = 32, CTX_OUT = 64, CTX_TID = 96, CTX_SERIAL = 176;
const REC_OWNER = 0, REC_PENDING = 8, REC_LENGTH = 12, REC_BYTES = 24;
const RECORD_ORPHAN = 0xFFFFFFFF;
const ROOT_HEAP_END = 16;
const pad8 = (n) => (n + 7) & ~7;

/** The bus's bound on the memory: the memory's maximum and bus_init's maxPages. */
export const MAX_PAGES = 256;
const SCRATCH = 4096;

const enc = new TextEncoder();
const dec = new TextDecoder();

/**
 * One thread's host state over the raw exports: its ctx, its scratch for
 * call arguments, views on the memory, and what objects_drop handed it.
 */
export function makeThread(name, ex, memory, wasiCalls, ctl) {
  const t = {
    name, ex, memory, wasiCalls, ctl: new Int32Array(ctl), ctx: 0, serial: 0, tid: 0, scratch: 0, root: ex.bus_root(),
    drops: [],
    u8: null, u32: null, i32: null, f64: null, u64: null,
    /** Re-makes the views if some thread grew the memory (ABI §4.7). */
    views() {
      if (t.u32 && t.u32[(t.root + ROOT_HEAP_END) >>> 2] <= t.u8.length) return t;
      const b = memory.buffer;
      t.u8 = new Uint8Array(b); t.u32 = new Uint32Array(b); t.i32 = new Int32Array(b);
      t.f64 = new Float64Array(b); t.u64 = new BigUint64Array(b);
      return t;
    },
    errArg() { return t.views().u32[(t.ctx + CTX_ERR_ARG) >>> 2]; },
    errIndex() { return t.views().u32[(t.ctx + CTX_ERR_INDEX) >>> 2]; },
    out(i) { return t.views().u32[(t.ctx + CTX_OUT + 4 * i) >>> 2]; },
    outF64(at) { return t.views().f64[(t.ctx + CTX_OUT + at) >>> 3]; },
    attach(hostThread) {
      t.ctx = ex.ctx_new(1, hostThread);
      if (!t.ctx) throw new Error("ctx_new returned 0");
      t.views();
      t.tid = t.u32[(t.ctx + CTX_TID) >>> 2];
      t.serial = t.u32[(t.ctx + CTX_SERIAL) >>> 2];
      t.scratch = ex.ctx_scratch(t.ctx, SCRATCH);
      if (!t.scratch) throw new Error("ctx_scratch returned 0");
    },
    connect(user) {
      const rc = ex.peer_connect(t.ctx, user);
      if (rc < 0) throw new Error(`peer_connect: ${rc}`);
      return { slot: t.out(0), gen: t.out(1) };
    },
    /**
     * send_begin, copy, send_commit (or only send_begin with hold). Scratch
     * layout: dsts at +0, handle IDs (and the core's room after them) at
     * +1024, object slots at +2048, the out array at +3072.
     */
    send(p, { dsts = [], handles = [], objects = [], text = "", hold = false, seed = false }) {
      const v = t.views();
      const s = t.scratch;
      const dstAt = s, hsAt = s + 1024, objAt = s + 2048, outAt = s + 3072;
      dsts.forEach((d, i) => { v.f64[(dstAt >>> 3) + i] = d; });
      handles.forEach((h, i) => { v.f64[(hsAt >>> 3) + i] = h; });
      objects.forEach((o, i) => { v.u32[(objAt >>> 2) + i] = o; });
      const payload = enc.encode(text);
      const rc = ex.send_begin(t.ctx, p.slot, p.gen, seed ? 2 : 0, dstAt, dsts.length, 1, payload.length,
        hsAt, handles.length, objAt, objects.length, outAt);
      if (rc < 0) return { rc, errArg: t.errArg(), errIndex: t.errIndex() };
      // every record rides on rc messages: the sender sets pending before the commit (ABI §7.12)
      for (const o of objects) Atomics.store(t.views().i32, (o + REC_PENDING) >>> 2, rc);
      const w = t.views();
      const n = seed ? 1 : dsts.length;
      for (let i = 0; i < n; i++) {
        const err = w.i32[(outAt >>> 2) + 2 * i], at = w.u32[(outAt >>> 2) + 2 * i + 1];
        if (err === 0 && at !== 0) w.u8.set(payload, at);
      }
      if (!hold) ex.send_commit(t.ctx);
      return { rc };
    },
    /** One recv: the receive record (ABI §5.5), the payload, handle IDs and object slots; the slice is released. */
    recv(p) {
      const rc = ex.recv(t.ctx, p.slot, p.gen, 0);
      if (rc < 0) return { rc, errArg: t.errArg() };
      const v = t.views();
      const m = {
        rc, type: t.out(0), flags: t.out(1), dest: t.outF64(8), offset: t.out(4), size: t.out(5),
        nHandles: t.out(6), nObjects: t.out(7), text: null, handles: [], objects: [],
      };
      if (m.type === MSG_DATA) {
        m.text = dec.decode(v.u8.slice(m.offset, m.offset + m.size));
        const hAt = m.offset + pad8(m.size);
        for (let i = 0; i < m.nHandles; i++) {
          const id = v.u64[(hAt >>> 3) + i];
          m.handles.push(id === 0xFFFFFFFFFFFFFFFFn ? -1 : Number(id));
        }
        const oAt = hAt + 8 * m.nHandles;
        for (let i = 0; i < m.nObjects; i++) m.objects.push(v.u32[(oAt >>> 2) + i]);
        // a received message takes one off each record's pending (ABI §7.12)
        for (const rec of m.objects) t.recordDone(rec);
        const rel = ex.slice_release(t.ctx, p.slot, p.gen, m.offset);
        if (rel !== 0) throw new Error(`slice_release: ${rel}`);
      }
      return m;
    },
    /**
     * The wake-word protocol of ABI §5.5: wait until recv has something, at
     * most `ms` ms. Returns ready()'s 1 or a negative errno, or 0 on timeout.
     */
    waitReady(p, ms) {
      const w = ex.wake_addr(p.slot, p.gen);
      if (w < 0) return w;
      const end = performance.now() + ms;
      for (;;) {
        const v = t.views();
        const seq = Atomics.load(v.i32, w >>> 2);
        Atomics.add(v.i32, (w + 4) >>> 2, 1);
        Atomics.or(v.i32, (w + 4) >>> 2, 1 << 31); // armed: the next send notifies
        const r = ex.ready(t.ctx, p.slot, p.gen);
        if (r !== 0) {
          Atomics.sub(t.views().i32, (w + 4) >>> 2, 1);
          return r;
        }
        const left = end - performance.now();
        if (left <= 0) {
          Atomics.sub(v.i32, (w + 4) >>> 2, 1);
          return 0;
        }
        Atomics.wait(v.i32, w >>> 2, seq, left);
        Atomics.sub(t.views().i32, (w + 4) >>> 2, 1);
      }
    },
    /** A record loses one message (received, or dropped by the core): the host's part of ABI §7.12. */
    recordDone(rec) {
      const v = t.views();
      if (Atomics.sub(v.i32, (rec + REC_PENDING) >>> 2, 1) !== 1) return;
      const owner = v.u32[(rec + REC_OWNER) >>> 2];
      if (owner !== t.serial && owner !== RECORD_ORPHAN) return; // its owner sweeps it
      if (Atomics.compareExchange(v.i32, (rec + REC_PENDING) >>> 2, 0, -1) === 0) ex.object_record_free(t.ctx, rec);
    },
    /** bus1.objects_drop: called inside a core call, so it only does what ABI §2 allows. */
    objectsDrop(slots, count) {
      const v = t.views();
      const recs = Array.from(v.u32.subarray(slots >>> 2, (slots >>> 2) + count));
      t.drops.push({ count, records: recs, inCall: v.u32[(t.ctx + 100) >>> 2] !== 0 });
      for (const rec of recs) t.recordDone(rec);
    },
    busStats() {
      const rc = ex.bus_stats(t.ctx);
      if (rc < 0) return { rc };
      return { heapBytes: t.out(0), heapUsed: t.out(1), peers: t.out(2), users: t.out(3), threads: t.out(4), records: t.out(5) };
    },
  };
  return t;
}

/** What a list of received entries was: the text of a data message, else #type. */
function texts(list) { return list.map((m) => (m.type === MSG_DATA ? m.text : `#${m.type}`)); }

// ---- steps (run in a worker: t is that thread's makeThread) -----------------------------

export const steps = {
  /** A: lays out the bus, attaches, makes the server peer S. */
  init(t, { hostThread }) {
    const rc = t.ex.bus_init(MAX_PAGES, 1024, 1024, 1 << 20, 64);
    const version = t.ex.bus_version();
    t.attach(hostThread);
    const S = t.connect(1);
    return { rc, version, tid: t.tid, serial: t.serial, S };
  },
  /** B: attaches to the bus A made, makes the client peer C. */
  attach(t, { hostThread }) {
    const version = t.ex.bus_version();
    t.attach(hostThread);
    const C = t.connect(2);
    return { version, tid: t.tid, serial: t.serial, C };
  },
  /** A: gives C a handle to S's node 8 (a caller-chosen ID makes the node). */
  offer(t, { S, C }) {
    const rc = t.ex.transfer(t.ctx, S.slot, S.gen, 8, C.slot, C.gen);
    return { rc, id: t.outF64(0) };
  },
  /** Waits (wake word) and receives until `n` entries came or `ms` passed. */
  waitRecv(t, { p, n, ms = 5000 }) {
    const got = [];
    const t0 = performance.now();
    while (got.length < n) {
      const r = t.waitReady(p, Math.max(0, ms - (performance.now() - t0)));
      if (r <= 0) return { got, ready: r, elapsed: performance.now() - t0 };
      for (;;) {
        const m = t.recv(p);
        if (m.rc < 0) break;
        got.push(m);
      }
    }
    return { got, ready: 1, elapsed: performance.now() - t0 };
  },
  /** Sends each text as its own message (its own commit) to one destination. */
  sendEach(t, { p, dst, list }) {
    return list.map((text) => t.send(p, { dsts: [dst], text }).rc);
  },
  send(t, { p, ...a }) {
    return t.send(p, a);
  },
  recv(t, { p }) {
    return t.recv(p);
  },
  /** Drains the queue without waiting. */
  recvAll(t, { p }) {
    const got = [];
    for (;;) {
      const m = t.recv(p);
      if (m.rc < 0) return { got, last: m.rc };
      got.push(m);
    }
  },
  /** Once the other thread is in recvTimed, `ms` more, then send_commit. */
  commitAfter(t, { ms }) {
    if (Atomics.wait(t.ctl, 0, 0, 10_000) === "timed-out") throw new Error("the other thread never called recv");
    Atomics.store(t.ctl, 0, 0);
    Atomics.wait(new Int32Array(new SharedArrayBuffer(4)), 0, 0, ms);
    t.ex.send_commit(t.ctx);
    return {};
  },
  cancel(t) {
    t.ex.send_cancel(t.ctx);
    return {};
  },
  /**
   * recv that may block on a peer lock held by the other thread (the WASI
   * clock times the wait). It raises the control flag first, for commitAfter.
   */
  recvTimed(t, { p }) {
    const clock0 = t.wasiCalls.clock_time_get ?? 0;
    Atomics.store(t.ctl, 0, 1);
    Atomics.notify(t.ctl, 0);
    const t0 = performance.now();
    const m = t.recv(p);
    return {
      m, elapsed: performance.now() - t0, clockCalls: (t.wasiCalls.clock_time_get ?? 0) - clock0,
      errArg: m.rc < 0 ? t.errArg() : 0, broken: t.ex.bus_broken_reason(),
    };
  },
  /** B: a host object record with `bytes` as its serialized form. */
  record(t, { bytes }) {
    const rec = t.ex.object_record(t.ctx, 7, bytes.length);
    t.views().u8.set(bytes, rec + REC_BYTES);
    return { rec };
  },
  /** Reads a record's header and bytes. */
  readRecord(t, { rec }) {
    const v = t.views();
    const length = v.u32[(rec + REC_LENGTH) >>> 2];
    return {
      owner: v.u32[(rec + REC_OWNER) >>> 2], pending: Atomics.load(v.i32, (rec + REC_PENDING) >>> 2), length,
      bytes: Array.from(v.u8.slice(rec + REC_BYTES, rec + REC_BYTES + length)),
    };
  },
  /** The owner's sweep (ABI §7.12): frees its records that no message carries any more. */
  sweep(t, { recs }) {
    const v = t.views();
    return recs.map((rec) => {
      if (Atomics.compareExchange(v.i32, (rec + REC_PENDING) >>> 2, 0, -1) !== 0) return false;
      t.ex.object_record_free(t.ctx, rec);
      return true;
    });
  },
  drops(t) {
    const d = t.drops;
    t.drops = [];
    return d;
  },
  flush(t, { p }) {
    return { rc: t.ex.reset(t.ctx, p.slot, p.gen, RESET_FLUSH, t.scratch) };
  },
  release(t, { p, id }) {
    return { rc: t.ex.release(t.ctx, p.slot, p.gen, id) };
  },
  /** destroy of one node; the core writes a handle address after the ID, so 12 bytes. */
  destroy(t, { p, id }) {
    t.views().f64[t.scratch >>> 3] = id;
    return { rc: t.ex.destroy(t.ctx, p.slot, p.gen, 0, t.scratch, 1) };
  },
  transfer(t, { p, id, to }) {
    const rc = t.ex.transfer(t.ctx, p.slot, p.gen, id, to.slot, to.gen);
    return { rc, errArg: rc < 0 ? t.errArg() : 0, id: rc === 0 ? t.outF64(0) : null };
  },
  busStats(t) {
    return t.busStats();
  },
  /** Closes one reference twice: 0, then EBADF (the slot's generation moved on). */
  unref(t, { p }) {
    return [t.ex.peer_unref(t.ctx, p.slot, p.gen), t.ex.peer_unref(t.ctx, p.slot, p.gen)];
  },
  detach(t) {
    t.ex.ctx_free(t.ctx);
    t.ctx = 0;
    return { wasi: { ...t.wasiCalls } };
  },
};

// ---- the driver (main thread) ----------------------------------------------------------

const isDeno = typeof globalThis.Deno !== "undefined";
const STEP_MS = 20_000;
const sleep = (ms) => new Promise((r) => setTimeout(r, ms));

/** Starts a worker running tests/wasi/worker.mjs; `call(op, args)` runs one step there. */
async function spawn() {
  const url = new URL("./worker.mjs", import.meta.url);
  let w;
  const queue = [];
  let failure = null;
  const deliver = (m) => { const q = queue.shift(); if (q) q.resolve(m); };
  const fail = (e) => { failure = e; for (const q of queue.splice(0)) q.reject(e); };
  if (isDeno) {
    w = new Worker(url, { type: "module" });
    w.onmessage = (e) => deliver(e.data);
    w.onerror = (e) => { e.preventDefault?.(); fail(new Error(`worker error: ${e.message}`)); };
  } else {
    const { Worker } = await import("node:worker_threads");
    w = new Worker(url);
    w.on("message", deliver);
    w.on("error", (e) => fail(e));
    w.on("exit", (code) => fail(new Error(`worker exited (${code})`)));
  }
  const post = (m) => (isDeno ? w.postMessage(m) : w.postMessage(m));
  return {
    call(op, args) {
      if (failure) return Promise.reject(failure);
      return new Promise((resolve, reject) => {
        const timer = setTimeout(() => reject(new Error(`step ${op} took more than ${STEP_MS} ms`)), STEP_MS);
        queue.push({
          resolve: (m) => { clearTimeout(timer); m.ok ? resolve(m.result) : reject(new Error(`step ${op}: ${m.error}`)); },
          reject: (e) => { clearTimeout(timer); reject(e); },
        });
        post({ op, ...args });
      });
    },
    start(module, memory, ctl, name) {
      return this.call("start", { module, memory, ctl, name });
    },
    async stop() {
      failure = failure ?? new Error("stopped");
      if (isDeno) w.terminate();
      else await w.terminate();
    },
  };
}

function check(cond, what, detail) {
  if (!cond) throw new Error(`WASI scenario: ${what}${detail === undefined ? "" : `: ${JSON.stringify(detail)}`}`);
}

/** Compiles the build (with Liftoff off on Node 20, TOOLCHAIN.md) and lists its imports. */
export async function loadBuild(bytes) {
  if (!isDeno && Number(process.versions.v8.split(".")[0]) < 12) {
    const { setFlagsFromString } = await import("node:v8");
    setFlagsFromString("--no-liftoff");
  }
  const module = await WebAssembly.compile(bytes);
  const imports = WebAssembly.Module.imports(module).map((i) => `${i.module}.${i.name}`).sort();
  return { module, imports };
}

/** Two threads, one memory, the module, started. */
async function setUp(module) {
  const memory = new WebAssembly.Memory({ initial: 2, maximum: MAX_PAGES, shared: true });
  // a flag outside the bus, for commitAfter: [0] = 1 once a thread is in recvTimed
  const ctl = new SharedArrayBuffer(4);
  const A = await spawn();
  const B = await spawn();
  try {
    await A.start(module, memory, ctl, "A");
    await B.start(module, memory, ctl, "B");
  } catch (e) {
    await A.stop();
    await B.stop();
    throw e;
  }
  return { A, B, memory };
}

/**
 * The scenario. Returns its transcript (the order in which things were seen);
 * every check in it has already passed.
 */
export async function runScenario(module) {
  const { A, B } = await setUp(module);
  const log = [];
  try {
    // -- set-up: A lays out the bus, B attaches; A gives B's peer a handle to its node
    const a = await A.call("init", { args: { hostThread: 1 } });
    check(a.rc === 0 && a.version === ABI_VERSION, "bus_init / bus_version", a);
    const b = await B.call("attach", { args: { hostThread: 2 } });
    check(b.version === ABI_VERSION && b.tid !== a.tid && b.serial !== a.serial, "second thread attached", b);
    const { S } = a, { C } = b;
    const offer = await A.call("offer", { args: { S, C } });
    const hC = offer.id;
    check(offer.rc === 0 && (hC & 3) === (ID_MANAGED | ID_REMOTE), "transfer gives C a managed remote ID", offer);
    log.push("setup");

    // -- order and wake-up: A sleeps on S's wake word, B sends three messages
    const waitA = A.call("waitRecv", { args: { p: S, n: 3 } });
    await sleep(30);
    const sent = await B.call("sendEach", { args: { p: C, dst: hC, list: ["one", "two", "three"] } });
    check(sent.every((rc) => rc === 1), "three sends staged one slice each", sent);
    const r1 = await waitA;
    check(r1.ready === 1 && r1.got.length === 3, "A woke and received three messages", r1);
    check(texts(r1.got).join() === "one,two,three", "in the order sent", texts(r1.got));
    check(r1.got.every((m) => m.type === MSG_DATA && m.dest === 8), "to node 8", r1.got);
    log.push(...texts(r1.got));

    // -- handles: B attaches two new nodes (caller-chosen 16 and 24); A gets IDs for them
    const keys = await B.call("send", { args: { p: C, dsts: [hC], handles: [16, 24], text: "keys" } });
    check(keys.rc === 1, "send with two handles", keys);
    const mk = await A.call("recv", { args: { p: S } });
    check(mk.type === MSG_DATA && mk.text === "keys" && mk.nHandles === 2, "A received the handles", mk);
    const [h16, h24] = mk.handles;
    check(h16 !== h24 && (h16 & 3) === 3 && (h24 & 3) === 3, "A's IDs are managed and remote", mk.handles);
    log.push("keys");

    // -- one transaction to two nodes of C: both arrive, the first says "continue"
    const waitB = B.call("waitRecv", { args: { p: C, n: 2 } });
    await sleep(30);
    const both = await A.call("send", { args: { p: S, dsts: [h16, h24], text: "both" } });
    check(both.rc === 2, "multicast staged two slices", both);
    const r2 = await waitB;
    check(r2.ready === 1 && r2.got.length === 2, "B woke and received two", r2);
    check(r2.got.every((m) => m.text === "both") && r2.got.map((m) => m.dest).sort().join() === "16,24",
      "one copy per node, with C's own IDs", r2.got);
    // the second is the last: nothing else is ready after it
    check(r2.got[0].flags === MSG_FLAG_CONTINUE && r2.got[1].flags === MSG_FLAG_DRAINED,
      "MSG_FLAG_CONTINUE within the transaction, MSG_FLAG_DRAINED after it", r2.got);
    log.push("both", "both");

    // -- a lock held by B (send_begin keeps it until send_commit): A's recv waits
    //    in wasm (memory.atomic.wait32) and times the holder with the WASI clock
    const held = await B.call("send", { args: { p: C, dsts: [hC], text: "held", hold: true } });
    check(held.rc === 1, "send_begin with the receiver locked", held);
    const recvA = A.call("recvTimed", { args: { p: S } });
    await B.call("commitAfter", { args: { ms: 200 } });
    const r3 = await recvA;
    check(r3.m.type === MSG_DATA && r3.m.text === "held", "A got the message once B committed", r3);
    check(r3.elapsed >= 150 && r3.clockCalls > 0, "A waited on the lock, timed by clock_time_get", r3);
    log.push("held");

    // -- B destroys node 24 (A holds a handle), A releases its handle to 16
    const d24 = await B.call("destroy", { args: { p: C, id: 24 } });
    check(d24.rc === 0, "destroy", d24);
    const rel = await A.call("release", { args: { p: S, id: h16 } });
    check(rel.rc === 0, "release", rel);
    const sq = await A.call("recvAll", { args: { p: S } });
    check(sq.last === -EAGAIN && sq.got.length === 1 && sq.got[0].type === MSG_NODE_DESTROY && sq.got[0].dest === h24,
      "S saw node 24 destroyed, under its own ID for it", sq);
    log.push("destroy 24");

    // -- host objects: one received; one flushed, which hands its record to
    //    bus1.objects_drop in A's thread
    const rec1 = (await B.call("record", { args: { bytes: [1, 2, 3, 4] } })).rec;
    const rec2 = (await B.call("record", { args: { bytes: [5, 6] } })).rec;
    const o1 = await B.call("send", { args: { p: C, dsts: [hC], objects: [rec1], text: "obj1" } });
    check(o1.rc === 1, "send with an object", o1);
    const mo = await A.call("recv", { args: { p: S } });
    check(mo.text === "obj1" && mo.nObjects === 1 && mo.objects[0] === rec1, "A received the record's address", mo);
    const r1h = await A.call("readRecord", { args: { rec: rec1 } });
    check(r1h.owner === b.serial && r1h.pending === 0 && r1h.bytes.join() === "1,2,3,4",
      "record owned by B, its bytes, no message left on it", r1h);
    log.push("obj1");
    const o2 = await B.call("send", { args: { p: C, dsts: [hC], objects: [rec2], text: "obj2" } });
    check(o2.rc === 1, "send with an object", o2);
    // A flushes S: node 8 is destroyed, the queued obj2 dropped
    const fl = await A.call("flush", { args: { p: S } });
    check(fl.rc === 0, "reset(RESET_FLUSH)", fl);
    const drops = await A.call("drops");
    check(drops.length === 1 && drops[0].count === 1 && drops[0].records[0] === rec2 && drops[0].inCall,
      "objects_drop called once, in A, inside the call, with obj2's record", drops);
    log.push("objects_drop");
    const r2h = await B.call("readRecord", { args: { rec: rec2 } });
    check(r2h.pending === 0, "A took obj2 off the record's pending", r2h);
    const swept = await B.call("sweep", { args: { recs: [rec1, rec2] } });
    check(swept.join() === "true,true", "B, the owner, freed both records", swept);

    // -- what C saw, in order: destroy of its node 24 (owner included), the
    //    release of 16 by A, then (the flush) destroy of node 8
    const cq = await B.call("recvAll", { args: { p: C } });
    check(cq.last === -EAGAIN, "C drained", cq);
    const seen = cq.got.map((m) => `${m.type}:${m.dest}`).join();
    check(seen === `${MSG_NODE_DESTROY}:24,${MSG_NODE_RELEASE}:16,${MSG_NODE_DESTROY}:${hC}`,
      "C saw destroy(24), release(16), destroy(hC)", cq.got);
    log.push("release 16", "destroy 8");
    const late = await B.call("send", { args: { p: C, dsts: [hC], text: "late" } });
    check(late.rc === -EHOSTUNREACH && late.errArg === ARG_DESTINATIONS && late.errIndex === 0,
      "a send to the destroyed node", late);

    // -- teardown: B leaves, A checks what is left, then leaves too
    const bu = await B.call("unref", { args: { p: C } });
    check(bu[0] === 0 && bu[1] === -EBADF, "peer_unref, then EBADF", bu);
    const bw = await B.call("detach");
    const gone = await A.call("transfer", { args: { p: S, id: 40, to: C } });
    check(gone.rc === -EINVAL && gone.errArg === ARG_PEER, "C is gone", gone);
    const st = await A.call("busStats");
    check(st.threads === 1 && st.peers === 1 && st.users === 1 && st.records === 0, "bus_stats after B left", st);
    const au = await A.call("unref", { args: { p: S } });
    check(au[0] === 0 && au[1] === -EBADF, "A's peer closed", au);
    const st2 = await A.call("busStats");
    check(st2.peers === 0 && st2.users === 0 && st2.records === 0, "nothing left", st2);
    const aw = await A.call("detach");
    check(!aw.wasi.proc_exit && !aw.wasi.fd_write && !bw.wasi.proc_exit && !bw.wasi.fd_write, "no abort", [aw, bw]);
    log.push("teardown");
    return { log, wasiCalls: { A: aw.wasi, B: bw.wasi } };
  } finally {
    await A.stop();
    await B.stop();
  }
}

/**
 * A lock that stays with one holder: B keeps S locked (send_begin without a
 * commit) and A's recv waits on it. After LOCK_STALE_MS = 5000 ms, measured
 * with WASI's clock_time_get, A marks the bus broken (reason 1).
 */
export async function runStaleLock(module) {
  const { A, B } = await setUp(module);
  try {
    const a = await A.call("init", { args: { hostThread: 1 } });
    const b = await B.call("attach", { args: { hostThread: 2 } });
    const offer = await A.call("offer", { args: { S: a.S, C: b.C } });
    check(a.rc === 0 && offer.rc === 0, "set-up", [a, offer]);
    const held = await B.call("send", { args: { p: b.C, dsts: [offer.id], text: "never", hold: true } });
    check(held.rc === 1, "send_begin holds S", held);
    const r = await A.call("recvTimed", { args: { p: a.S } });
    check(r.m.rc === -ESHUTDOWN && r.errArg === ARG_BROKEN && r.broken === 1, "stale lock breaks the bus", r);
    check(r.elapsed >= 5000 && r.elapsed < 9000, "after 5 s", r.elapsed);
    await B.call("cancel");
    const after = await B.call("recv", { args: { p: b.C } });
    check(after.rc === -ESHUTDOWN && after.errArg === ARG_BROKEN, "every thread sees it", after);
    return { elapsed: r.elapsed, clockCalls: r.clockCalls };
  } finally {
    await A.stop();
    await B.stop();
  }
}
