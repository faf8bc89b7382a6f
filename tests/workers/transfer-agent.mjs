// The worker of tests/transfer-agent.ts (transfer-threads.test.ts,
// transfer-hostile.test.ts): attaches to the bus and does what the main
// thread asks, one request at a time, keeping the host objects it receives
// (ports, streams, buffers) under numbers; and, for the attacks: blocking,
// forging on its channels, patching builtins around a recv, ports whose
// other end is watched here.
// Requests: { id, op, ... }; replies { id, value } or { id, error: { code, message } }.
import { workerData, parentPort, MessageChannel } from "node:worker_threads";
import { Bus, Bus1Error } from "bus1-wasm";
// internals: not part of the API (a hostile thread has them all the same: it has the memory)
import { coreOf } from "../../dist/host-common/bus.js";

const t0 = Date.now();
const bus = await Bus.attach(workerData.handle);
const attachMs = Date.now() - t0;
const peers = new Map();
const kept = [];
const numbers = new Map();
const closedPorts = new Set();

function keep(v) {
  if (!numbers.has(v)) {
    numbers.set(v, kept.length);
    kept.push(v);
  }
  return numbers.get(v);
}

function describe(v) {
  if (v instanceof Bus1Error) return { kind: "error", code: v.code, message: v.message };
  if (v instanceof ArrayBuffer) return { kind: "buffer", n: keep(v), bytes: Array.from(new Uint8Array(v)) };
  if (v instanceof ReadableStream) return { kind: "readable", n: keep(v) };
  if (v instanceof WritableStream) return { kind: "writable", n: keep(v) };
  if (v && typeof v.postMessage === "function" && typeof v.close === "function") return { kind: "port", n: keep(v) };
  return { kind: "other", value: v };
}

function recvOne(p) {
  const m = p.recv();
  if (!m) return null;
  const out = { type: m.type, text: new TextDecoder().decode(m.payload.slice()), objects: m.objects.map(describe) };
  m.release();
  return out;
}

const sleep = (ms) => Atomics.wait(new Int32Array(new SharedArrayBuffer(4)), 0, 0, ms);
const within = (p, ms, what) => Promise.race([p, new Promise((_, reject) => setTimeout(() => reject(new Error(`${what}: not within ${ms} ms`)), ms))]);

const ops = {
  attachMs() {
    return attachMs;
  },
  serial() {
    return coreOf(bus).serial;
  },
  adopt({ ref, as }) {
    peers.set(as, bus.adopt(ref));
  },
  recv({ peer, wait = 5_000 }) {
    const p = peers.get(peer);
    if (!p.wait(wait)) return null;
    return recvOne(p);
  },
  /** Blocks this thread (no event loop) for `ms`, then receives what is there. */
  blockThenRecv({ peer, ms }) {
    sleep(ms);
    return recvOne(peers.get(peer));
  },
  /** A receive loop that never yields to the event loop: `count` messages, each waited for up to `wait` ms. */
  syncLoop({ peer, count, wait = 5_000 }) {
    const p = peers.get(peer);
    const got = [];
    for (let i = 0; i < count; i++) {
      if (!p.wait(wait)) break;
      got.push(recvOne(p));
    }
    return got;
  },
  /** Receives with Array.isArray replaced (a builtin replaced by the caller's own code), all without yielding. */
  recvPatched({ peer, wait = 5_000 }) {
    const isArray = Array.isArray;
    Array.isArray = () => false;
    try {
      const p = peers.get(peer);
      if (!p.wait(wait)) return null;
      return recvOne(p);
    } finally {
      Array.isArray = isArray;
    }
  },
  /** Waits without blocking (readable()), then receives. */
  async recvAsync({ peer }) {
    const p = peers.get(peer);
    await within(p.readable(), 8_000, "readable");
    return recvOne(p);
  },
  ready({ peer }) {
    return peers.get(peer).ready();
  },
  call({ peer, method, args }) {
    const v = peers.get(peer)[method](...(args ?? []));
    return v === undefined ? null : v;
  },
  /** Sends a port of a channel made here; its other end stays here under a number, watched for "close". */
  sendPort({ peer, to, text }) {
    const { port1, port2 } = new MessageChannel();
    const n = keep(port1);
    port1.on("close", () => closedPorts.add(n));
    port1.on("message", () => {});
    port1.unref();
    peers.get(peer).send(to, new TextEncoder().encode(text), { objects: [port2] });
    return n;
  },
  isClosed({ n }) {
    return closedPorts.has(n);
  },
  async portRecv({ n }) {
    const port = kept[n];
    return within(new Promise((resolve) => port.once("message", resolve)), 5_000, "a message on the port");
  },
  portPost({ n, data }) {
    kept[n].postMessage(data);
  },
  async read({ n }) {
    const chunks = [];
    for await (const c of kept[n]) chunks.push(c);
    return chunks;
  },
  async write({ n, chunks }) {
    const w = kept[n].getWriter();
    for (const c of chunks) await w.write(c);
    await w.close();
  },
  inTransit() {
    return coreOf(bus).objects.inTransit();
  },
  /** The serials this thread has a channel to. */
  links() {
    return Object.keys(coreOf(bus).objects.links).map(Number).sort((x, y) => x - y);
  },
  /** A hostile thread: posts `message` on its channel to thread `serial`. */
  forge({ serial, message }) {
    const port = coreOf(bus).objects.links[serial];
    if (!port) throw new Error(`no channel to ${serial}`);
    port.postMessage(message);
  },
  stats() {
    return bus.stats();
  },
  /** Listeners on process's workerMessage event (the courier's, while a bus of this thread has links). */
  workerMessageListeners() {
    return process.listenerCount("workerMessage");
  },
  close() {
    bus.close();
  },
};

parentPort.on("message", async (req) => {
  try {
    const value = await ops[req.op](req);
    parentPort.postMessage({ id: req.id, value: value ?? null });
  } catch (e) {
    parentPort.postMessage({ id: req.id, error: { code: e?.code ?? null, message: String(e?.message ?? e) } });
  }
});
parentPort.postMessage({ id: 0, value: "ready" });
