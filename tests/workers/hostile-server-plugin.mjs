// A plugin process for tests/served-hostile.test.ts: a RemotePeer talks to a hostile serving side
// (played here, on the other end of a MessageChannel), makes one send, and prints what became of it.
// A plugin whose thread freezes or whose process dies prints nothing.
import { MessageChannel } from "node:worker_threads";
import { RemotePeer } from "../../dist/host-common/remote.js";
import { WIRE_VERSION } from "../../dist/host-common/wire.js";

const SENT = 5;
const { port1: server, port2 } = new MessageChannel();
server.on("message", (m) => {
  if (m?.t === "hello") server.postMessage({ t: "welcome", version: WIRE_VERSION, window: m.window, liveness: 0 });
  // the answer to the send: "sent, with no error", for 2^31 − 1 destinations (a send has at most 65536)
  else if (Array.isArray(m)) server.postMessage([[SENT, m[0][1], 0x7fffffff], null, null]);
});
const remote = await RemotePeer.connect(port2);
const t0 = Date.now();
try {
  const v = await remote.send(1, new Uint8Array(1));
  console.log(JSON.stringify({ ok: true, n: v?.errors?.length ?? null, ms: Date.now() - t0 }));
} catch (e) {
  console.log(JSON.stringify({ ok: false, code: e?.code, message: String(e?.message), ms: Date.now() - t0 }));
}
server.close();
await remote.close();
