// A plugin of tests/remote-peer.test.ts: it has a MessagePort and nothing of
// the bus (it does not even load the core). workerData.script says what it does;
// it reports to the parent with postMessage.
import { workerData, parentPort } from "node:worker_threads";
import { RemotePeer } from "bus1-wasm";

const { port, script, handle } = workerData;
const peer = await RemotePeer.connect(port);

async function outcome(p) {
  try {
    return { ok: await p };
  } catch (e) {
    return { code: e.code, message: e.message, name: e.name };
  }
}

if (script === "basic") {
  // every method once, and what a plugin sees of a message
  const report = {};
  report.send = await outcome(peer.send(handle, new TextEncoder().encode("from the plugin")));
  const msg = await (async () => { for (;;) { const m = await peer.recv(); if (m) return m; await peer.readable(); } })();
  report.message = {
    type: msg.type, destination: msg.destination, text: new TextDecoder().decode(msg.payload),
    shared: typeof SharedArrayBuffer === "function" && msg.payload.buffer instanceof SharedArrayBuffer,
    ownBuffer: msg.payload.byteOffset === 0 && msg.payload.buffer.byteLength === msg.payload.byteLength,
    handles: msg.handles,
  };
  msg.release();
  report.own = await outcome(peer.transfer(0x400));
  report.badTransfer = await outcome(peer.transfer(report.own.ok, {}));
  report.release = await outcome(peer.release(report.own.ok));
  report.destroy = await outcome(peer.destroy(0x400));
  report.releaseSlice = await outcome(peer.releaseSlice(16));
  report.reset = await outcome(peer.reset({ limits: { maxSlices: 77 } }));
  report.query = await outcome(peer.query());
  report.stats = await outcome(peer.stats());
  report.badSend = await outcome(peer.send("x"));
  report.sync = (() => { try { peer.send(Symbol("s")).catch(() => {}); return "no throw"; } catch { return "threw"; } })();
  report.disconnect = await outcome(peer.disconnect());
  report.after = await outcome(peer.send(handle));
  parentPort.postMessage(report);
} else if (script === "stream") {
  // reads forever, reporting every 100 messages; the parent terminates it mid-stream
  let n = 0;
  for await (const m of peer) {
    if (++n % 100 === 0) parentPort.postMessage({ received: n, byteLength: m.payload.byteLength });
  }
} else if (script === "mid-call") {
  // starts calls and never waits: the parent terminates it
  for (let i = 0; i < 100; i++) peer.send(handle, new Uint8Array(64)).catch(() => {});
  parentPort.postMessage({ started: true });
  setInterval(() => peer.stats().catch(() => {}), 1);
}
