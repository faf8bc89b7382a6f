// A Web Worker of a page that is not cross-origin isolated
// (tests/browser/not-isolated/served.test.ts): no shared memory, so it gets a
// served peer over a MessagePort. It sends `count` numbered messages to the
// app's node and expects each back, in order; it reports what this thread has.
import { Bus, Bus1Error, RemotePeer } from "bus1-wasm";
import { onTask } from "./task.js";

onTask(async ({ port, app, count, index }, post) => {
  // what a worker of such a page has: a private bus of its own, and no blocking
  const own = await Bus.create();
  let waitCode: string | null = null;
  try {
    own.connect().wait(5);
  } catch (e) {
    waitCode = e instanceof Bus1Error ? e.code : String(e);
  }
  const facts = { isolated: crossOriginIsolated, sharedArrayBuffer: typeof SharedArrayBuffer, shared: own.shared, waitCode };
  own.close();

  const peer = await RemotePeer.connect(port);
  post({ ready: true, facts });
  const payload = new Uint8Array(8);
  const v = new DataView(payload.buffer);
  for (let i = 0; i < count; i++) {
    v.setUint32(0, index, true);
    v.setUint32(4, i, true);
    await peer.send(app, payload);
  }
  const echoes: number[] = [];
  for await (const m of peer) {
    const d = new DataView(m.payload.buffer, m.payload.byteOffset, m.payload.byteLength);
    if (d.getUint32(0, true) !== index) throw new Error(`worker ${index} got worker ${d.getUint32(0, true)}'s echo`);
    echoes.push(d.getUint32(4, true));
    m.release();
    if (echoes.length === count) break;
  }
  post({ echoes });
});
