// Case 9 — a served peer (bus.serve / RemotePeer, docs/PLUGINS.md) against
// the bare MessageChannel it rides on, between the same two threads.
//
//   served peer     the app (main thread) holds the bus (Bus.create({ shared:
//                   false }): nothing attaches to it, a plugin needs no shared
//                   memory) and serves one peer over a MessageChannel to a
//                   plugin in a worker (workers/plugin-sink.js), which has
//                   nothing but a RemotePeer. The app sends to a node of that
//                   peer; the serving side (same main thread: it is part of
//                   the app) receives each message, copies its payload once
//                   into an ArrayBuffer of its own, releases the slice and
//                   posts it, transferred; the plugin waits with readable()
//                   and takes each message with recv(). Replies go back with
//                   remote.send() to a node of the app, which waits with
//                   readable() and recv().
//   MessageChannel, cloned       the main thread posts the payload Uint8Array
//                   (a structured clone: two copies, the cheaper way for 64 B
//                   and 1 KiB here);
//                   the worker (workers/channel-sink.js) takes each message as
//                   an event and replies the same way.
//   MessageChannel, transferred  the main thread copies the payload into a
//                   fresh ArrayBuffer and posts it in the transfer list: the
//                   same one copy + transfer the serving side does, meant to
//                   win for large messages (at 64 KiB either may win: see
//                   bench/README.md).
//   MessageChannel, buffers returned  (one-way) as transferred, but the
//                   worker gives the buffers back once read, 16 in one post,
//                   and the main thread fills those instead of making new
//                   ones: what the served peer does with the buffers the
//                   plugin gives back (host-common/batch.ts), so the served
//                   peer is not the only side that skips making buffers.
//
// Every baseline carries a target, so the verdict is against whichever is
// the fastest way to post these bytes.
//
// One-way: the main thread sends `size`-byte messages for the window in
// batches of 64, yielding to its event loop after each batch (the serving
// side runs there, and its credits arrive there; the baselines yield the
// same way, so the loops are the same), then an end marker; the clock stops
// when the worker's count (checked) is back. On EDQUOT (the served peer's
// queue is full because the plugin has not given credit yet) the app yields
// and tries again. Ping-pong: an 8-byte ping, the main thread waits
// (without blocking: the serving side needs its event loop) for the pong;
// each trip timed alone, a window's figure its median trip.
//
// What bounds the ratio, measured in the same run (table only):
// - each thread's CPU time per message (protocol.js threadCpuMs: on Linux
//   the thread's own on-CPU nanoseconds), for every variant: the worker's
//   from the sink's END reply, the main thread's around the window;
// - the serving side's own work per message, timed alone: with the plugin
//   idle and its credit back, the app sends a burst of messages (timed: the
//   app's send), then lets the microtasks run, in which the serving side
//   receives, copies, releases and posts the whole burst (timed: the serving
//   side); checked by the served peer's stats (nothing left charged to it).

import { MessageChannel } from "node:worker_threads";
import { Bus, Bus1Error } from "bus1-wasm";
import { compare, now, summarize, warmUp } from "./harness.js";
import {
  DATA, END, PING, QUIT, message, checkCount, readBusy, threadCpuMs, startWorker, exited, closeAll, Trips, portPingPong,
} from "./protocol.js";

const GROUP = "served peer";
const SIZES = [
  ["64 B", 64],
  ["1 KiB", 1024],
  ["64 KiB", 65536],
];
const BATCH = 64;

// MessageChannel ÷ served ≥ 1/1.3: a served-peer message costs at most 1.3× the bare MessageChannel message.
const TARGET = [">=", 1 / 1.3, "≤ 1.3× the channel"];
const RETURNED = "MessageChannel, buffers returned";
const TARGETS = { "MessageChannel, cloned": TARGET, "MessageChannel, transferred": TARGET, [RETURNED]: TARGET };

const end = message(END);
const ping = message(PING);
const quit = message(QUIT);

const tick = () => new Promise((resolve) => setImmediate(resolve));

/** The next message of `peer`, waiting with readable() (the serving side needs this thread's event loop). */
async function recvAsync(peer) {
  for (;;) {
    const m = peer.recv();
    if (m) return m;
    await peer.readable();
  }
}

/** Round trips of one window: `main` sends a ping to `to` and waits for the answer, again. */
async function busTrips(main, to, ms) {
  const trips = new Trips();
  do {
    const t = now();
    main.send(to, ping);
    (await recvAsync(main)).release();
    trips.add(now() - t);
  } while (trips.elapsed() < ms);
  return trips;
}

/**
 * The sender side of an asynchronous throughput window: `sendOne()` returns
 * false when it could not send yet (then the event loop runs once and it is
 * tried again); after each batch the event loop runs once.
 */
async function floodAsync(ms, sendOne) {
  let sent = 0;
  const start = now();
  do {
    for (let i = 0; i < BATCH;) {
      if (sendOne()) i++;
      else await tick();
    }
    sent += BATCH;
    await tick();
  } while (now() - start < ms);
  return { sent, start };
}

/**
 * `body()`, or a rejection if it has not settled within 30 s (a worker is
 * stuck): one timer per window, nothing in the loop being measured.
 */
function within(what, body) {
  let timer;
  const late = new Promise((_, reject) => {
    timer = setTimeout(() => reject(new Error(`${what}: no answer within 30 s: a worker is stuck`)), 30_000);
  });
  return Promise.race([body(), late]).finally(() => clearTimeout(timer));
}

/** CPU time of this thread (ms) since `from` (a threadCpuMs()). */
const busySince = (from) => threadCpuMs() - from;

// ---- the served peer --------------------------------------------------------

async function servedTransport(bus) {
  const main = bus.connect();
  const served = bus.connect();
  const to = served.transfer(4, main);
  const back = main.transfer(4, served);
  const { port1, port2 } = new MessageChannel();
  const serving = bus.serve(served, port1);
  const worker = await startWorker("plugin-sink.js", { port: port2, back }, { transferList: [port2] });

  const trySend = (payload) => {
    try {
      main.send(to, payload);
      return true;
    } catch (e) {
      if (e instanceof Bus1Error && e.code === "EDQUOT") return false;
      throw e;
    }
  };
  const sendAsync = async (payload) => {
    while (!trySend(payload)) await tick();
  };
  const endWindow = async () => {
    await sendAsync(end);
    const reply = await recvAsync(main);
    const bytes = reply.payload.slice();
    reply.release();
    return bytes;
  };

  return {
    name: "served peer",
    workers: [worker],
    async oneWay(payload, ms) {
      const cpu = threadCpuMs();
      const { sent, start } = await floodAsync(ms, () => trySend(payload));
      const reply = await endWindow();
      const elapsed = now() - start;
      checkCount(reply, sent, "served peer");
      return { ns: (elapsed * 1e6) / sent, main: (busySince(cpu) * 1e6) / sent, worker: (readBusy(reply) * 1e6) / sent };
    },
    async pingPong(ms) {
      const cpu = threadCpuMs();
      const trips = await busTrips(main, to, ms);
      const reply = await endWindow();
      const n = trips.count();
      return { ns: trips.median(), main: (busySince(cpu) * 1e6) / n, worker: (readBusy(reply) * 1e6) / n };
    },
    /**
     * The app's send and the serving side's work per message, each timed
     * alone: `n` sends, then the microtasks in which the serving side pushes
     * them all (the plugin has given its credit back: at most n − 1 are owed
     * before a burst, and a burst of n fits the rest of the window).
     */
    async burst(payload, n) {
      const t0 = now();
      for (let i = 0; i < n; i++) main.send(to, payload);
      const t1 = now();
      await null; // the serving side's readable() settled on the first send: its pump runs first
      await null;
      const t2 = now();
      const left = served.stats().slices;
      if (left !== 0) throw new Error(`served peer: ${left} of a burst of ${n} were not pushed in one go`);
      checkCount(await endWindow(), n, "served peer (burst)");
      return { send: ((t1 - t0) * 1e6) / n, serve: ((t2 - t1) * 1e6) / n };
    },
    async close() {
      await sendAsync(quit);
      await exited(worker);
      await serving.closed;
      main.close();
    },
  };
}

// ---- the bare MessageChannel ------------------------------------------------

/** `transfer`: false (cloned), true (a fresh buffer transferred), or "returns" (a buffer given back, if one is). */
async function channelTransport(transfer) {
  const { port1: port, port2 } = new MessageChannel();
  const returns = transfer === "returns";
  const worker = await startWorker("channel-sink.js", { port: port2, transfer: transfer !== false, returns },
    { transferList: [port2] });
  // buffers given back (arrays of them), by size; anything else is a reply. Only this variant listens
  // for them: the others keep the one listener a plain channel has (portPingPong adds its own)
  const spares = new Map();
  let replied = null;
  if (returns) {
    port.on("message", (m) => {
      if (!Array.isArray(m)) {
        const r = replied;
        replied = null;
        return r?.(m);
      }
      for (const b of m) {
        const list = spares.get(b.byteLength) ?? [];
        if (list.length < 256) list.push(b);
        spares.set(b.byteLength, list);
      }
    });
  }
  const reply = returns ? () => new Promise((resolve) => { replied = resolve; })
    : () => new Promise((resolve) => port.once("message", resolve));
  const post = transfer
    ? (payload) => {
      const copy = new Uint8Array((returns && spares.get(payload.length)?.pop()) || payload.length);
      copy.set(payload);
      port.postMessage(copy, [copy.buffer]);
    }
    : (payload) => port.postMessage(payload);
  const name = returns ? RETURNED : transfer ? "MessageChannel, transferred" : "MessageChannel, cloned";

  return {
    name,
    workers: [worker],
    async oneWay(payload, ms) {
      const cpu = threadCpuMs();
      const { sent, start } = await floodAsync(ms, () => {
        post(payload);
        return true;
      });
      const answer = reply();
      post(end);
      const summary = await answer;
      const elapsed = now() - start;
      checkCount(summary, sent, name);
      return { ns: (elapsed * 1e6) / sent, main: (busySince(cpu) * 1e6) / sent, worker: (readBusy(summary) * 1e6) / sent };
    },
    async pingPong(ms) {
      const cpu = threadCpuMs();
      const median = await portPingPong(port, post, ping, ms);
      const answer = reply();
      post(end);
      const summary = await answer;
      const n = median.count();
      return { ns: median.median(), main: (busySince(cpu) * 1e6) / n, worker: (readBusy(summary) * 1e6) / n };
    },
    async close() {
      post(quit);
      await exited(worker);
      port.close();
    },
  };
}

// ---- what bounds the ping-pong: the bus calls alone --------------------------

/**
 * The bus calls a served-peer round trip makes, with no protocol: the app
 * sends to a node of a second peer of its bus and waits for the answer with
 * readable() and recv(), as in the served case; a hand-written serving side
 * (readable(), recv(), one copy, release(), a bare post of the bytes) and
 * a worker that answers on the bare port (workers/channel-sink.js), whose
 * answer the main thread sends to the app's node. Ping-pong only, no target:
 * it says how much of the served round trip the bus's own calls take.
 */
async function busCallsTransport(bus) {
  const main = bus.connect();
  const served = bus.connect();
  const to = served.transfer(4, main);
  const back = main.transfer(4, served);
  const { port1: port, port2 } = new MessageChannel();
  const worker = await startWorker("channel-sink.js", { port: port2, transfer: false }, { transferList: [port2] });
  let replies = null;
  port.on("message", (bytes) => {
    if (replies) {
      const r = replies;
      replies = null;
      r(bytes);
    } else {
      served.send(back, bytes);
    }
  });
  let open = true;
  const pump = () => served.readable().then(() => {
    if (!open) return; // closed while the readable() settled
    const m = served.recv();
    const copy = new Uint8Array(m.payload.byteLength);
    copy.set(m.payload);
    m.release();
    port.postMessage(copy);
    pump();
  }, () => {}); // the reference was closed
  pump();
  return {
    name: "the same bus calls, no protocol",
    workers: [worker],
    async pingPong(ms) {
      const cpu = threadCpuMs();
      const trips = await busTrips(main, to, ms);
      // the END reply comes on the port (its CPU time), not through the bus
      const answer = new Promise((resolve) => { replies = resolve; });
      port.postMessage(end);
      const reply = await answer;
      const n = trips.count();
      return { ns: trips.median(), main: (busySince(cpu) * 1e6) / n, worker: (readBusy(reply) * 1e6) / n };
    },
    async close() {
      open = false;
      port.postMessage(quit);
      await exited(worker);
      port.close();
      main.close();
      served.close();
    },
  };
}

// ---- the cases -------------------------------------------------------------

/**
 * Variants of one case for compare(): each measurement's time is the figure;
 * the threads' CPU times are kept aside, per variant, for the table.
 */
function variantsOf(transports, measure) {
  const busy = new Map(transports.map((t) => [t.name, { main: [], worker: [] }]));
  const variants = transports.map((t) => ({
    name: t.name,
    async measure() {
      const r = await within(t.name, () => measure(t));
      busy.get(t.name).main.push(r.main);
      busy.get(t.name).worker.push(r.worker);
      return r.ns;
    },
  }));
  return { variants, busy };
}

function busyFigures(label, per, busy) {
  const out = [];
  for (const [name, { main, worker }] of busy) {
    const m = summarize(main), w = summarize(worker);
    out.push({ group: GROUP, name: `${label}, ${name}: main thread CPU per ${per}`, value: m.median, unit: "ns", spread: m });
    out.push({ group: GROUP, name: `${label}, ${name}: worker CPU per ${per}`, value: w.median, unit: "ns", spread: w });
  }
  return out;
}

export async function run({ rounds, windowMs, log }) {
  const bus = await Bus.create({ shared: false });
  const servedT = await servedTransport(bus);
  const transports = [servedT, await channelTransport(false), await channelTransport(true)];
  const returned = await channelTransport("returns");
  transports.push(returned);
  const rows = [], figures = [];
  const window = windowMs * 2; // across threads: the window includes the drain
  try {
    for (const [label, size] of SIZES) {
      const payload = message(DATA, size);
      const { variants, busy } = variantsOf(transports, (t) => t.oneWay(payload, window));
      log(`  one-way ${label}`);
      await warmUp(variants);
      for (const b of busy.values()) b.main.length = b.worker.length = 0;
      const { result, rerun } = await compare(variants, rounds, log);
      rows.push(row(`${GROUP} one-way`, label, "message", result, rerun));
      figures.push(...busyFigures(`one-way ${label}`, "message", busy));

      // the serving side's own work, timed alone (a burst fits the window and one post: see burst())
      const n = Math.min(128, Math.max(1, Math.floor((64 << 10) / size)));
      const send = [], serve = [];
      for (let r = 0; r < rounds; r++) {
        const start = now();
        do {
          const b = await within("served peer (burst)", () => servedT.burst(payload, n));
          send.push(b.send);
          serve.push(b.serve);
        } while (now() - start < windowMs);
      }
      const s = summarize(send), v = summarize(serve);
      figures.push({ group: GROUP, name: `one-way ${label}: the app's send, per message (alone)`, value: s.median, unit: "ns", spread: s });
      figures.push({ group: GROUP, name: `one-way ${label}: the serving side's push: recv, copy, release, post (alone)`, value: v.median, unit: "ns", spread: v });
    }
    const pingPongs = [...transports.filter((t) => t !== returned), await busCallsTransport(bus)];
    transports.push(pingPongs[pingPongs.length - 1]); // closed with the others
    const { variants, busy } = variantsOf(pingPongs, (t) => t.pingPong(window));
    log("  ping-pong");
    await warmUp(variants);
    for (const b of busy.values()) b.main.length = b.worker.length = 0;
    const { result, rerun } = await compare(variants, rounds, log);
    rows.push(row(`${GROUP} ping-pong`, "8 B", "round trip", result, rerun));
    figures.push(...busyFigures("ping-pong 8 B", "round trip", busy));
  } finally {
    await closeAll(transports, log);
    bus.close();
  }
  return { rows, figures };
}

function row(group, label, per, result, rerun) {
  return {
    group, case: label, unit: "ns", per,
    bus1: result["served peer"],
    baselines: {
      "MessageChannel, cloned": result["MessageChannel, cloned"], "MessageChannel, transferred": result["MessageChannel, transferred"],
      ...(result[RETURNED] ? { [RETURNED]: result[RETURNED] } : {}),
      ...(result["the same bus calls, no protocol"] ? { "the same bus calls, no protocol": result["the same bus calls, no protocol"] } : {}),
    },
    targets: TARGETS, rerun,
  };
}
