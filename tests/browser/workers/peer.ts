// A Web Worker with a peer of its own on a shared bus (tests/browser/shared-bus.test.ts,
// watch.test.ts). It attaches, adopts the main thread's peer, connects its own
// and gives the main peer a handle to its node 4, then answers each message
// with what it got: the payload's text and what each object became.
import { Bus, Bus1Error } from "bus1-wasm";
import { onTask } from "./task.js";

onTask(async ({ handle, ref }, post) => {
  const bus = await Bus.attach(handle);
  const main = bus.adopt(ref);
  const own = bus.connect();
  const id = own.transfer(4, main);
  post({ id, canBlock: (() => { try { return own.wait(1) === false; } catch { return false; } })() });
  for (;;) {
    own.wait(); // a dedicated worker may block
    const m = own.recv()!;
    const text = new TextDecoder().decode(m.payload.slice());
    const objects = m.objects.map((o) => (o instanceof Bus1Error ? o.code : o));
    m.release();
    if (text === "bye") break;
    // the reply carries an object that cannot reach another thread
    own.send(m.handles[0], new TextEncoder().encode(`re: ${text}`), { objects: [{ from: "worker" }] });
    post({ text, objects });
  }
  bus.close();
  post("closed");
});
