// A worker of tests/threads.test.ts that does what the main thread asks:
// adopt peer references and call methods on them, one request at a time.
// Requests: { id, op: "adopt", ref, as } | { id, op: "call", peer, method, args }.
// An argument { $peer: name } stands for the Peer adopted under that name.
// Replies: { id, value } or { id, error: { bus1, code, name, message } }.
// Messages come back as plain copies; data slices are released after copying.
import { workerData, parentPort } from "node:worker_threads";
import { Bus, Bus1Error } from "bus1-wasm";

const bus = await Bus.attach(workerData.handle);
const peers = new Map();

function plain(v) {
  if (v === undefined) return null;
  if (v && typeof v === "object" && "payload" in v && "handles" in v && typeof v.release === "function") {
    const copy = {
      type: v.type, destination: v.destination, continue: v.continue, offset: v.offset,
      bytes: Array.from(v.payload), handles: Array.from(v.handles),
    };
    v.release();
    return copy;
  }
  return v;
}

function arg(a) {
  if (a && typeof a === "object" && typeof a.$peer === "string") {
    const p = peers.get(a.$peer);
    if (!p) throw new Error(`agent: no peer named ${a.$peer}`);
    return p;
  }
  return a;
}

parentPort.on("message", async (req) => {
  try {
    let value = null;
    if (req.op === "adopt") {
      peers.set(req.as, bus.adopt(req.ref));
    } else if (req.op === "call") {
      const p = peers.get(req.peer);
      if (!p) throw new Error(`agent: no peer named ${req.peer}`);
      let v = p[req.method](...(req.args ?? []).map(arg));
      if (v instanceof Promise) v = await v;
      value = plain(v);
    } else {
      throw new Error(`agent: unknown op ${req.op}`);
    }
    parentPort.postMessage({ id: req.id, value });
  } catch (e) {
    parentPort.postMessage({
      id: req.id,
      error: { bus1: e instanceof Bus1Error, code: e?.code ?? null, name: e?.name ?? null, message: String(e?.message ?? e) },
    });
  }
});
parentPort.postMessage({ id: 0, value: "ready" });
