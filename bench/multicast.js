// Case 4 — multicast to K = 1, 2, 4, 8 workers in one send, 1 KiB.
//
// Eight workers are started once for each transport and kept for every
// round; a send for fan-out K goes to the first K of them.
//
//   bus1-wasm         one send() to K destinations: K nodes, one in each
//                     worker's peer (all peers of one user). On EDQUOT main
//                     sleeps 0.1 ms and tries again. Workers:
//                     bench/workers/bus1-sink.js.
//   BroadcastChannel  one postMessage() on a channel that exactly K workers
//                     listen on (bench/workers/broadcast-sink.js).
//
// Main sends for the window, then an end marker; the clock stops when all K
// workers have reported their counts (each is checked). The figure is time
// per send (lower is better). For bus1-wasm the same windows also give two
// figures that say what bounds it: the sending thread's CPU time per send
// (threadCpuMs), and the share of the sending window in which that thread
// was on a core at all (the rest of the time the 2 cores ran the K workers).

import { BroadcastChannel } from "node:worker_threads";
import { Bus } from "bus1-wasm";
import { compare, now, summarize, warmUp } from "./harness.js";
import {
  DATA, END, QUIT, message, checkCount, flood, recvBlocking, sendPatiently, startWorker, exited, closeAll, threadCpuMs,
} from "./protocol.js";

export const FANOUTS = [1, 2, 4, 8];
const SIZE = 1024;
// issue 11: ≥ 5× BroadcastChannel per send at K = 8, and at least as fast at every K below
const TARGETS = {
  1: { BroadcastChannel: [">=", 1] }, 2: { BroadcastChannel: [">=", 1] }, 4: { BroadcastChannel: [">=", 1] },
  8: { BroadcastChannel: [">=", 5] },
};

const end = message(END);
const quit = message(QUIT);

async function bus1Fanout(bus, workers) {
  const main = bus.connect();
  const sinks = [];
  const to = [];
  const threads = [];
  for (let i = 0; i < workers; i++) {
    const sink = bus.connect();
    to.push(sink.transfer(4, main));
    const back = main.transfer(4, sink);
    threads.push(await startWorker("bus1-sink.js", { handle: bus.handle, ref: sink.ref, back }, { bus }));
    sinks.push(sink);
  }
  for (const sink of sinks) sink.close();

  return {
    name: "bus1-wasm",
    workers: threads,
    /** Per window: the sending thread's CPU per send (ns) and its share of the window on a core. */
    cpu: [],
    send(k, payload, ms) {
      const dsts = to.slice(0, k);
      const cpu = threadCpuMs();
      const { sent, start } = flood(ms, 16, () => sendPatiently(main, dsts, payload));
      const used = threadCpuMs() - cpu, window = now() - start;
      this.cpu.push({ perSend: (used * 1e6) / sent, share: used / window });
      sendPatiently(main, dsts, end);
      for (let i = 0; i < k; i++) {
        const reply = recvBlocking(main);
        checkCount(reply.payload, sent, "bus1-wasm");
        reply.release();
      }
      return ((now() - start) * 1e6) / sent;
    },
    async close() {
      sendPatiently(main, to, quit);
      await Promise.all(threads.map(exited));
      main.close();
    },
  };
}

async function broadcastFanout(workers) {
  const prefix = `bus1-bench-${process.pid}-`;
  const channels = new Map(FANOUTS.map((k) => [k, new BroadcastChannel(`${prefix}${k}`)]));
  const threads = [];
  for (let i = 0; i < workers; i++) {
    threads.push(await startWorker("broadcast-sink.js", { index: i, prefix, fanouts: FANOUTS }));
  }
  const replies = (k) => Promise.all(threads.slice(0, k).map((w) => new Promise((resolve) => w.once("message", resolve))));

  return {
    name: "BroadcastChannel",
    workers: threads,
    async send(k, payload, ms) {
      const channel = channels.get(k);
      const { sent, start } = flood(ms, 16, () => channel.postMessage(payload));
      const counted = replies(k);
      channel.postMessage(end);
      for (const summary of await counted) checkCount(summary, sent, "BroadcastChannel");
      return ((now() - start) * 1e6) / sent;
    },
    async close() {
      channels.get(workers).postMessage(quit); // every worker listens on the largest fan-out
      await Promise.all(threads.map(exited));
      for (const channel of channels.values()) channel.close();
    },
  };
}

export async function run({ rounds, windowMs, log }) {
  const bus = await Bus.create();
  const workers = Math.max(...FANOUTS);
  const fanouts = [await bus1Fanout(bus, workers), await broadcastFanout(workers)];
  const payload = message(DATA, SIZE);
  const rows = [], figures = [];
  try {
    for (const k of FANOUTS) {
      const variants = fanouts.map((f) => ({ name: f.name, measure: () => f.send(k, payload, windowMs * 2) }));
      log(`  K = ${k}`);
      await warmUp(variants);
      const bus1 = fanouts[0];
      bus1.cpu = [];
      const { result, rerun } = await compare(variants, rounds, log);
      const perSend = summarize(bus1.cpu.map((c) => c.perSend));
      const share = summarize(bus1.cpu.map((c) => c.share));
      figures.push(
        { group: "multicast 1 KiB", name: `K = ${k}: CPU of bus1-wasm's sending thread per send`, value: perSend.median, unit: "ns", spread: perSend },
        { group: "multicast 1 KiB", name: `K = ${k}: share of the window bus1-wasm's sending thread was on a core`,
          value: Math.round(share.median * 100), unit: "%", spread: share },
      );
      rows.push({
        group: "multicast 1 KiB", case: `K = ${k}`, unit: "ns", per: "send",
        bus1: result["bus1-wasm"], baselines: { BroadcastChannel: result.BroadcastChannel },
        targets: TARGETS[k] ?? {}, rerun,
      });
    }
  } finally {
    await closeAll(fanouts, log);
    bus.close();
  }
  return { rows, figures };
}
