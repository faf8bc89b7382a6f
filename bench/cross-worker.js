// Cases 2 and 3 — across worker threads: one-way throughput and ping-pong.
//
// One worker per transport, started once and kept for every round; each runs
// bench/workers/*-sink.js and sleeps when it has nothing to do, so the idle
// ones take no CPU from the one being measured.
//
//   bus1-wasm       main sends to a node of the worker's peer (same user);
//                   the worker blocks in peer.wait(), then recv() and
//                   release(). When the worker's quota is full, send throws
//                   EDQUOT and main sleeps 0.1 ms before it tries again
//                   (protocol.js, sendPatiently).
//   MessageChannel  main posts on a port; the worker handles each message
//                   as an event (its own structured clone); no back-pressure.
//   SAB ring        bench/ring.js, 1 MiB: main copies into the ring (it
//                   blocks while the ring is full), the worker reads each
//                   message in place and releases it. Both sides wait the
//                   way bus1-wasm's peer.wait() does at its best: they spin
//                   for up to 50 µs watching the ring's word, then sleep in
//                   Atomics.wait (every side spins: peer.wait() lets only
//                   processors − 1 threads spin at once). The targets are
//                   against this ring: the best a skilled user would write.
//   SAB ring, sleeps at once   the same ring, sleeping in Atomics.wait as
//                   soon as it finds nothing (no target: for comparison).
//
// One-way: main sends `size`-byte messages for the window, then an end
// marker; the clock stops when the worker's count comes back, so a backlog
// the worker has not drained yet is timed too. The figure is time per
// message (lower is better); the count is checked.
//
// Ping-pong: main sends an 8-byte ping and blocks until the worker's pong
// comes back (MessageChannel: the next ping leaves from the pong's event
// handler), as many times as the window allows, each trip timed alone; the
// figure of a window is its median trip, so that a trip on which the
// scheduler parked a thread does not weigh on the others.

import { MessageChannel } from "node:worker_threads";
import { Bus } from "bus1-wasm";
import { compare, now, warmUp } from "./harness.js";
import {
  DATA, END, PING, QUIT, message, checkCount, flood, recvBlocking, sendPatiently, startWorker, exited, closeAll, Trips,
  portPingPong,
} from "./protocol.js";
import { Ring } from "./ring.js";

const SIZES = [
  ["64 B", 64],
  ["1 KiB", 1024],
];

// baseline ÷ bus1: ≥ 0.7 means bus1's throughput is at least 0.7× the ring's.
const ONE_WAY_TARGETS = { MessageChannel: [">=", 8], "SAB ring": [">=", 0.7, "≥ 0.7× throughput"] };
// ring ÷ bus1 ≥ 1/1.3 means bus1's round trip is at most 1.3× the ring's.
const PING_PONG_TARGETS = { MessageChannel: [">=", 5], "SAB ring": [">=", 1 / 1.3, "≤ 1.3× round trip"] };

const end = message(END);
const ping = message(PING);
const quit = message(QUIT);

// ---- bus1-wasm -------------------------------------------------------------

async function bus1Transport(bus) {
  const main = bus.connect();
  const sink = bus.connect();
  const to = sink.transfer(4, main);
  const back = main.transfer(4, sink);
  const worker = await startWorker("bus1-sink.js", { handle: bus.handle, ref: sink.ref, back }, { bus });
  sink.close(); // the worker's reference is now the only one

  return {
    name: "bus1-wasm",
    workers: [worker],
    oneWay(payload, ms) {
      const { sent, start } = flood(ms, 64, () => sendPatiently(main, to, payload));
      sendPatiently(main, to, end);
      const reply = recvBlocking(main);
      const elapsed = now() - start;
      checkCount(reply.payload, sent, "bus1-wasm");
      reply.release();
      return (elapsed * 1e6) / sent;
    },
    pingPong(ms) {
      const trips = new Trips();
      do {
        const t = now();
        main.send(to, ping);
        recvBlocking(main).release();
        trips.add(now() - t);
      } while (trips.elapsed() < ms);
      return trips.median();
    },
    async close() {
      sendPatiently(main, to, quit);
      await exited(worker);
      main.close();
    },
  };
}

// ---- MessageChannel --------------------------------------------------------

async function portTransport() {
  const { port1: port, port2 } = new MessageChannel();
  const worker = await startWorker("port-sink.js", { port: port2 }, { transferList: [port2] });
  const reply = () => new Promise((resolve) => port.once("message", resolve));

  return {
    name: "MessageChannel",
    workers: [worker],
    async oneWay(payload, ms) {
      const { sent, start } = flood(ms, 64, () => port.postMessage(payload));
      port.postMessage(end);
      const summary = await reply();
      const elapsed = now() - start;
      checkCount(summary, sent, "MessageChannel");
      return (elapsed * 1e6) / sent;
    },
    async pingPong(ms) {
      return (await portPingPong(port, (m) => port.postMessage(m), ping, ms)).median();
    },
    async close() {
      port.postMessage(quit);
      await exited(worker);
      port.close();
    },
  };
}

// ---- SAB ring --------------------------------------------------------------

/** The ring, spinning up to 50 µs before it sleeps as peer.wait() does (WAIT_SPIN_MS), or sleeping at once. */
async function ringTransport(spins) {
  const spinMs = spins ? 0.05 : 0;
  const name = spins ? "SAB ring" : "SAB ring, sleeps at once";
  const out = Ring.create(1 << 20, spinMs);
  const back = Ring.create(1 << 16, spinMs);
  const worker = await startWorker("ring-sink.js", { inbox: out.buffer, outbox: back.buffer, spinMs });
  const recvBlocking = () => {
    if (!back.wait(30_000)) throw new Error("the ring worker did not answer");
    return back.recv();
  };

  return {
    name,
    workers: [worker],
    oneWay(payload, ms) {
      const { sent, start } = flood(ms, 64, () => out.send(payload));
      out.send(end);
      checkCount(recvBlocking(), sent, name);
      back.release();
      return ((now() - start) * 1e6) / sent;
    },
    pingPong(ms) {
      const trips = new Trips();
      do {
        const t = now();
        out.send(ping);
        recvBlocking();
        back.release();
        trips.add(now() - t);
      } while (trips.elapsed() < ms);
      return trips.median();
    },
    async close() {
      out.send(quit);
      await exited(worker);
    },
  };
}

// ---- the cases -------------------------------------------------------------

export async function run({ rounds, windowMs, log }) {
  const bus = await Bus.create();
  const transports = [await bus1Transport(bus), await portTransport(), await ringTransport(true), await ringTransport(false)];
  const rows = [];
  const window = windowMs * 2; // a cross-thread window includes the drain: give it room
  try {
    for (const [label, size] of SIZES) {
      const payload = message(DATA, size);
      const variants = transports.map((t) => ({ name: t.name, measure: () => t.oneWay(payload, window) }));
      log(`  one-way ${label}`);
      await warmUp(variants);
      const { result, rerun } = await compare(variants, rounds, log);
      rows.push(row("cross-worker one-way", label, "message", result, ONE_WAY_TARGETS, rerun));
    }
    const variants = transports.map((t) => ({ name: t.name, measure: () => t.pingPong(window) }));
    log("  ping-pong");
    await warmUp(variants);
    const { result, rerun } = await compare(variants, rounds, log);
    rows.push(row("cross-worker ping-pong", "8 B", "round trip", result, PING_PONG_TARGETS, rerun));
  } finally {
    await closeAll(transports, log);
    bus.close();
  }
  return { rows };
}

function row(group, label, per, result, targets, rerun) {
  return {
    group, case: label, unit: "ns", per,
    bus1: result["bus1-wasm"],
    baselines: {
      MessageChannel: result.MessageChannel, "SAB ring": result["SAB ring"],
      "SAB ring, sleeps at once": result["SAB ring, sleeps at once"],
    },
    targets, rerun,
  };
}
