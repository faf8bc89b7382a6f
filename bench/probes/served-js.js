// The JavaScript of each side of a served round trip, alone (issue 9's
// ping-pong target): `node bench/probes/served-js.js [trips] [app|plugin]`.
// Not part of `npm run bench`. Each side runs in this one thread against a
// port-like object that hands its posts to this script and takes the other
// side's batches from it, so nothing is posted, cloned or woken: what is
// timed is the side's own work per 8-byte round trip.
//
//   app      the app sends a ping to a served peer and waits for the answer
//            with recv()/readable() (as bench/served-peer.js does); the
//            serving side (bus.serve) pushes the ping, then takes the
//            plugin's answer (a SEND item, as a RemotePeer writes it, with
//            credit as it gives it) and sends it to the app
//   plugin   a RemotePeer takes a pushed ping (a PUSH item, with the SENT
//            answer to its last send, as the serving side writes them),
//            waits with readable(), recv()s it and sends it back
//
// Every 64 trips the event loop runs once, so the serving side's turns end
// as they do between real posts. A CPU profile of it names what each side
// spends: node --cpu-prof --cpu-prof-interval 20 bench/probes/served-js.js 100000 app
import { Bus, RemotePeer } from "bus1-wasm";
import { WIRE_VERSION } from "../../dist/host-common/wire.js";
import { CREDIT, PUSH, SEND, SENT } from "../../dist/host-common/batch.js";

const INLINE_8 = "\0".repeat(8); // an 8-byte payload as a batch carries it inline
const trips = Number(process.argv[2] ?? 100000);
const only = process.argv[3];
const rounds = 5;

/** A port-like end whose posts go to `onPost`; `deliver(m)` is a message from the other side. */
function fakePort(onPost) {
  const listeners = new Map();
  return {
    postMessage: (m) => onPost(m),
    addEventListener: (type, f) => listeners.set(type, f),
    removeEventListener: () => {},
    start() {},
    close() {},
    deliver: (m) => listeners.get("message")({ data: m }),
  };
}

const turn = () => new Promise((resolve) => setImmediate(resolve));

async function appSide() {
  const bus = await Bus.create({ shared: false });
  const app = bus.connect(), plugin = bus.connect();
  const to = plugin.transfer(4, app);
  const back = app.transfer(4, plugin);
  let pushed = false;
  const port = fakePort((m) => { if (Array.isArray(m) && m[0].includes(PUSH)) pushed = true; });
  const serving = bus.serve(plugin, port, { livenessMs: 0 });
  let done = false;
  serving.closed.then((reason) => { if (!done) throw new Error(`the serving ended: ${reason}`); });
  port.deliver({ t: "hello", version: WIRE_VERSION, window: null });
  const recv = async () => {
    for (;;) {
      const m = app.recv();
      if (m) return m;
      await app.readable();
    }
  };
  const ping = new Uint8Array(8);
  let id = 1, owed = 0;
  for (let r = 0; r < rounds; r++) {
    const t0 = performance.now();
    for (let i = 0; i < trips; i++) {
      app.send(to, ping);
      const answer = recv();
      for (let k = 0; k < 10 && !pushed; k++) await null; // the serving side pushes in a microtask
      if (!pushed) throw new Error("the serving side pushed nothing");
      pushed = false;
      // the plugin's answer, with credit every half window as a RemotePeer gives it
      const words = [SEND, id++, back, 0, 8];
      if (++owed === 128) {
        words.push(CREDIT, owed, 8 * owed, 0);
        owed = 0;
      }
      port.deliver([words, INLINE_8, null]);
      (await answer).release();
      if ((i & 63) === 63) await turn();
    }
    console.log(`app side: ${(((performance.now() - t0) * 1000) / trips).toFixed(2)} µs per round trip`);
  }
  done = true;
  serving.close();
  bus.close();
}

async function pluginSide() {
  let lastSend = -1;
  const port = fakePort((m) => {
    if (m?.t === "hello") {
      queueMicrotask(() => port.deliver({
        t: "welcome", version: WIRE_VERSION, window: { messages: 256, bytes: 4 << 20, objects: 1024 }, liveness: 0,
      }));
    } else if (Array.isArray(m)) {
      const i = m[0].indexOf(SEND);
      if (i >= 0) lastSend = m[0][i + 1];
    }
  });
  const remote = await RemotePeer.connect(port);
  let closing = false;
  for (let r = 0; r < rounds; r++) {
    const t0 = performance.now();
    for (let i = 0; i < trips; i++) {
      // the answer to its last send goes with the next push, as the serving side posts them
      const words = lastSend >= 0 ? [SENT, lastSend, 1] : [];
      words.push(PUSH, 0, 512, 0, 0, 8, 0, -1);
      port.deliver([words, INLINE_8, null]);
      await remote.readable();
      const m = await remote.recv();
      remote.send(4, m.payload).catch((e) => { if (!closing) throw e; }); // the last is answered by close()
      m.release();
      if ((i & 63) === 63) await turn();
    }
    console.log(`plugin side: ${(((performance.now() - t0) * 1000) / trips).toFixed(2)} µs per round trip`);
  }
  closing = true;
  await remote.close();
}

if (only !== "plugin") await appSide();
if (only !== "app") await pluginSide();
