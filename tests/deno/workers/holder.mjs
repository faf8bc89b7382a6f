// A Deno Web Worker of tests/deno/threads.test.ts that attaches to a bus,
// takes over a peer reference and holds it until it is terminated; it
// answers "held" once it does, and sends "alive" on request.
import { Bus } from "bus1-wasm";

let peer = null;
self.onmessage = async (e) => {
  const m = e.data;
  if (m.attach) {
    const bus = await Bus.attach(m.attach.handle);
    peer = bus.adopt(m.attach.ref);
    self.postMessage("held");
  } else if (m.send !== undefined) {
    peer.send(m.send, new TextEncoder().encode("alive"));
    self.postMessage("sent");
  }
};
