// Where a served peer's round trip goes (issue 9's ping-pong target), run
// alone: `node bench/probes/served-latency.js [trips]`. Not part of
// `npm run bench`: it times the segments of one 8-byte ping-pong with clocks
// read in both threads (performance.timeOrigin + now(), one clock for the
// process) and written to a shared array, for a bare MessageChannel and for a
// served peer (bus.serve + RemotePeer, the app and the serving side on the
// main thread), alternating, and prints the mean of each segment:
//
//   app: send → post        main thread, from the app's send (or the bare
//                           postMessage) until the port's postMessage is
//                           called (served: the serving side's readable()
//                           settles, it receives, copies and releases)
//   post → plugin's event   postMessage itself and the port carrying the
//                           message to the worker's thread
//   plugin: event → post    from the worker's message event until it calls
//                           postMessage with its answer (served: RemotePeer
//                           reads the batch, readable() and recv() settle,
//                           send())
//   post → app's event      the answer's postMessage and its way back
//   app: event → has it     main thread, from the port's message event until
//                           the app holds the answer (served: the serving side
//                           performs the send, readable() settles, recv())
import { MessageChannel, MessagePort, Worker, isMainThread, parentPort, workerData } from "node:worker_threads";

const abs = () => performance.timeOrigin + performance.now();
// slots of the shared clock array
const POSTED = 0, WORKER_EVENT = 1, ANSWERED = 2, MAIN_EVENT = 3;

/**
 * The time the first postMessage of this thread after slot `at` was cleared
 * is called, into slot `at` (a trip may post more than once: credit, answers).
 */
function stampPosts(T, at) {
  const post = MessagePort.prototype.postMessage;
  MessagePort.prototype.postMessage = function (...args) {
    if (T[at] === 0) T[at] = abs();
    return post.apply(this, args);
  };
}

/** Stamps slot `at` with the time of the first event after it was cleared. */
const stampEvent = (T, at) => () => { if (T[at] === 0) T[at] = abs(); };

if (!isMainThread) {
  const { port, T, served, back } = workerData;
  stampPosts(T, ANSWERED);
  port.on("message", () => {
    // before RemotePeer's listener: it runs first
    if (T[WORKER_EVENT] === 0) {
      T[WORKER_EVENT] = abs();
      T[ANSWERED] = 0;
    }
  });
  if (served) {
    const { RemotePeer } = await import("bus1-wasm");
    const remote = await RemotePeer.connect(port);
    parentPort.postMessage("up");
    for (;;) {
      await remote.readable();
      const m = await remote.recv();
      if (m === null) continue;
      if (m.payload[0] === 1) break;
      remote.send(back, m.payload).catch(() => {});
    }
    await remote.close();
  } else {
    port.on("message", (m) => {
      if (m[0] === 1) port.close();
      else port.postMessage(m);
    });
    parentPort.postMessage("up");
  }
} else {
  const { Bus } = await import("bus1-wasm");
  const trips = Number(process.argv[2] ?? 20000);
  const T = new Float64Array(new SharedArrayBuffer(64));
  stampPosts(T, POSTED);
  const names = ["app: send → post", "post → plugin's event", "plugin: event → post", "post → app's event", "app: event → has it"];

  async function variant(served) {
    const { port1, port2 } = new MessageChannel();
    port1.on("message", stampEvent(T, MAIN_EVENT)); // before the serving side's listener
    let bus = null, roundTrip;
    const workerData = { port: port2, T, served, back: 0 };
    if (served) {
      bus = await Bus.create({ shared: false });
      const app = bus.connect(), plugin = bus.connect();
      const to = plugin.transfer(4, app);
      workerData.back = app.transfer(4, plugin);
      bus.serve(plugin, port1);
      const recv = async () => { for (;;) { const m = app.recv(); if (m) return m; await app.readable(); } };
      roundTrip = async (ping) => { app.send(to, ping); (await recv()).release(); };
    } else {
      let answered = null;
      port1.on("message", () => answered());
      roundTrip = (ping) => new Promise((resolve) => { answered = resolve; port1.postMessage(ping); });
    }
    const worker = new Worker(new URL(import.meta.url), { workerData, transferList: [port2] });
    await new Promise((resolve) => worker.once("message", resolve));
    const ping = new Uint8Array(8);
    return {
      async run(n) {
        const sum = [0, 0, 0, 0, 0];
        const t = abs();
        for (let i = 0; i < n; i++) {
          T[POSTED] = T[WORKER_EVENT] = T[MAIN_EVENT] = 0;
          const t0 = abs();
          await roundTrip(ping);
          const t4 = abs();
          sum[0] += T[POSTED] - t0;
          sum[1] += T[WORKER_EVENT] - T[POSTED];
          sum[2] += T[ANSWERED] - T[WORKER_EVENT];
          sum[3] += T[MAIN_EVENT] - T[ANSWERED];
          sum[4] += t4 - T[MAIN_EVENT];
        }
        return { trip: ((abs() - t) * 1000) / n, parts: sum.map((s) => (s * 1000) / n) };
      },
      async close() {
        const quit = new Uint8Array(8);
        quit[0] = 1;
        if (served) await roundTrip(quit).catch(() => {});
        else port1.postMessage(quit);
        await new Promise((resolve) => worker.once("exit", resolve));
        port1.close();
        bus?.close();
      },
    };
  }

  const bare = await variant(false), served = await variant(true);
  await bare.run(2000);
  await served.run(2000);
  const rows = { bare: [], served: [] };
  for (let r = 0; r < 3; r++) {
    rows.bare.push(await bare.run(trips));
    rows.served.push(await served.run(trips));
  }
  const mean = (list, f) => list.reduce((a, x) => a + f(x), 0) / list.length;
  const fmt = (us) => `${us.toFixed(2)} µs`.padStart(10);
  console.log(`${"segment".padEnd(26)}${"bare".padStart(10)}${"served".padStart(10)}  (means of 3 × ${trips} trips, µs)`);
  console.log(`${"round trip".padEnd(26)}${fmt(mean(rows.bare, (x) => x.trip))}${fmt(mean(rows.served, (x) => x.trip))}`);
  names.forEach((name, i) => {
    console.log(`${name.padEnd(26)}${fmt(mean(rows.bare, (x) => x.parts[i]))}${fmt(mean(rows.served, (x) => x.parts[i]))}`);
  });
  await bare.close();
  await served.close();
}
