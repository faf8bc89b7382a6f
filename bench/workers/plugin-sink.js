// A sandboxed plugin: it has nothing of the bus but a served peer, reached
// through RemotePeer over the MessagePort it was given. It waits with
// readable() and takes each pushed message with recv() (a recv() with a
// pushed message waiting answers at once, with no round trip), and answers
// through remote.send() to the app's node `back` (bench/protocol.js says
// what it answers; END also carries this thread's CPU time).
import { parentPort, workerData } from "node:worker_threads";
import { RemotePeer } from "bus1-wasm";
import { busySink } from "../protocol.js";

const { port, back } = workerData;
const remote = await RemotePeer.connect(port);
const failed = (e) => {
  process.stderr.write(`bench: plugin-sink: ${e?.stack ?? e}\n`);
  process.exit(1);
};
const take = busySink((bytes) => { remote.send(back, bytes).catch(failed); });

parentPort.postMessage("up");
for (;;) {
  await remote.readable();
  const m = await remote.recv();
  if (m === null) continue;
  const more = take(m.payload); // a notification has no payload: the app is gone
  m.release(); // the slice was released when it was pushed; a payload buffer of its own goes back to the serving side
  if (!more) break;
}
await remote.close();
