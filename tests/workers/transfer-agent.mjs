// A worker of tests/transfer-threads.test.ts: attaches to the bus and does
// what the main thread asks, one request at a time, keeping the host objects
// it receives (ports, streams, buffers) under numbers.
// Requests: { id, op, ... }; replies { id, value } or { id, error: { code, message } }.
import { workerData, parentPort, MessageChannel } from "node:worker_threads";
import { Bus, Bus1Error } from "bus1-wasm";
// internals, for the tests of leaks: not part of the API
import { coreOf } from "../../dist/host-common/bus.js";

const bus = await Bus.attach(workerData.handle);
const peers = new Map();
const kept = [];
const numbers = new Map();

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

const within = (p, ms, what) => Promise.race([p, new Promise((_, reject) => setTimeout(() => reject(new Error(`${what}: not within ${ms} ms`)), ms))]);

const ops = {
  adopt({ ref, as }) {
    peers.set(as, bus.adopt(ref));
  },
  recv({ peer, wait = 5_000 }) {
    const p = peers.get(peer);
    if (!p.wait(wait)) return null;
    const m = p.recv();
    const out = { type: m.type, text: new TextDecoder().decode(m.payload.slice()), objects: m.objects.map(describe) };
    m.release();
    return out;
  },
  ready({ peer }) {
    return peers.get(peer).ready();
  },
  async portRecv({ n }) {
    const port = kept[n];
    const got = await within(new Promise((resolve) => port.once("message", resolve)), 5_000, "a message on the port");
    return got;
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
  call({ peer, method, args }) {
    const v = peers.get(peer)[method](...(args ?? []));
    return v === undefined ? null : v;
  },
  /** Sends a port of a channel made here; its other end stays here under a number. */
  sendPort({ peer, to, text }) {
    const { port1, port2 } = new MessageChannel();
    const n = keep(port1);
    port1.start();
    peers.get(peer).send(to, new TextEncoder().encode(text), { objects: [port2] });
    return n;
  },
  inTransit() {
    return coreOf(bus).objects.inTransit();
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
