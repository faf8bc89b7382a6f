// Case 8 — the floor: what the primitives a message is made of cost on this
// machine, measured in the same run as the cases they bound.
//
// docs/PERFORMANCE.md adds these up into the least a bus1 message can cost
// here, and compares that with the targets the cases above miss. Nothing in
// this group is bus1 semantics; it is JS, wasm and the machine:
//
//   empty wasm call          a JS → wasm call of an export that reads one word
//   slot lookup              wake_addr: a call that finds a peer, no lock
//   call with one lock       query: find the peer, take and drop its lock,
//                            check it: the frame of every bus1 call
//   recv, empty queue        the core's recv finding nothing, and the API's
//                            recv() once the core has said so: it answers
//                            from the wake word (ABI.md §5.5)
//   atomic add (JS)          Atomics.add on shared memory
//   view on shared memory    new Uint8Array(buffer, offset, 64)
//   core round trip          send_begin, send_commit, recv, slice_release
//                            called directly (64 B, no copy, no JS objects)
//   ... on a private bus     the call with one lock and the core round trip
//                            again, in the build of a bus made with
//                            shared: false, which has no atomics
//                            (assembly/sync.ts): what they cost the frame
//   hand-off by spinning     two threads pass a turn back and forth on one
//                            shared word, both spinning: the cost of moving
//                            a cache line between the cores, one way
//   hand-off by futex        the same with Atomics.wait / Atomics.notify:
//                            the kernel's wake-up, one way
//   CPU while idle           a worker blocked in peer.wait() with nothing to
//                            receive (workers/idle-waiter.js): once its spin
//                            window is long over, the main thread reads the
//                            worker thread's CPU time (Linux: its
//                            /proc/self/task/<tid>/schedstat, exact for a
//                            thread that sleeps), sleeps 1 s and reads it
//                            again (target: none measurable, ≤ 100 µs per
//                            second)

import { readFileSync } from "node:fs";
import { Worker } from "node:worker_threads";
import { Bus } from "bus1-wasm";
// internals: the core's exports, called directly to measure the core alone
import { coreOf } from "../dist/host-common/bus.js";
import { now, summarize, timeLoop } from "./harness.js";
import { coreRoundTrip } from "./same-thread.js";
import { QUIT, message, recvBlocking, startWorker, exited } from "./protocol.js";

/** ns per operation of `run(n)`, as the median over `rounds` windows. */
function measure(run, rounds, windowMs) {
  timeLoop(run, windowMs); // warm-up
  const samples = [];
  for (let r = 0; r < rounds; r++) samples.push(timeLoop(run, windowMs));
  return summarize(samples);
}

// The other thread of a hand-off: waits for its turn (odd values of word 0),
// hands it back by adding 1, until told to stop (word 1). `futex` sleeps in
// Atomics.wait instead of spinning.
const PARTNER = `
const { parentPort, workerData } = require("node:worker_threads");
const w = new Int32Array(workerData.buffer);
const futex = workerData.futex;
parentPort.postMessage("up");
for (;;) {
  let v = Atomics.load(w, 0);
  while ((v & 1) === 0) {
    if (Atomics.load(w, 1)) process.exit(0);
    if (futex) Atomics.wait(w, 0, v, 50);
    v = Atomics.load(w, 0);
  }
  Atomics.add(w, 0, 1);
  if (futex) Atomics.notify(w, 0);
}
`;

/**
 * CPU time (ns) per second of a worker blocked in wait(), after its spin
 * window: the most of `tries` seconds, each begun 50 ms after the worker
 * was woken and answered (its spin window is 50 µs). A sleeping thread's
 * schedstat is exact (it is brought up to date when the thread is switched
 * out), so the reads need no correction.
 */
async function idleCpu(tries) {
  const bus = await Bus.create();
  const main = bus.connect(), waiter = bus.connect();
  const to = waiter.transfer(4, main), back = main.transfer(4, waiter);
  const worker = await startWorker("idle-waiter.js", { handle: bus.handle, ref: waiter.ref, back }, { bus });
  waiter.close();
  const task = await new Promise((resolve) => worker.once("message", resolve));
  const cpuNs = () => Number(readFileSync(`/proc/${task}/schedstat`, "utf8").split(" ")[0]);
  const sleep = (ms) => new Promise((resolve) => setTimeout(resolve, ms));
  const wake = new Uint8Array(8);
  try {
    let most = 0;
    for (let r = 0; r < tries; r++) {
      main.send(to, wake);
      recvBlocking(main).release();
      await sleep(50);
      const before = cpuNs(), t = now();
      await sleep(1000);
      most = Math.max(most, (cpuNs() - before) / ((now() - t) / 1000));
    }
    return most;
  } finally {
    main.send(to, message(QUIT));
    await exited(worker);
    bus.close();
  }
}

/** One-way hand-off time between two threads, in ns (median over rounds). */
async function handOff(futex, rounds, windowMs) {
  const buffer = new SharedArrayBuffer(8);
  const w = new Int32Array(buffer);
  const worker = new Worker(PARTNER, { eval: true, workerData: { buffer, futex } });
  await new Promise((resolve) => worker.once("message", resolve));
  const trip = (n) => {
    for (let i = 0; i < n; i++) {
      const v = Atomics.add(w, 0, 1) + 1; // odd: the partner's turn
      if (futex) Atomics.notify(w, 0);
      while (Atomics.load(w, 0) === v) if (futex) Atomics.wait(w, 0, v, 50);
    }
  };
  try {
    const s = measure(trip, rounds, windowMs * 2);
    // a trip is two hand-offs
    return summarize(s.samples.map((x) => x / 2));
  } finally {
    Atomics.store(w, 1, 1);
    Atomics.add(w, 0, 1);
    Atomics.notify(w, 0);
    await new Promise((resolve) => worker.once("exit", resolve));
  }
}

export async function run({ rounds, windowMs, log }) {
  const bus = await Bus.create();
  const a = bus.connect(), b = bus.connect();
  const to = b.transfer(4, a);
  const core = coreOf(bus), ex = core.ex, ctx = core.ctx;
  const roundTrip = coreRoundTrip(bus, a, b, to, 64);
  const i32 = core.views().i32;
  const scratch = (core.scratchFor(64) + 48) >>> 2; // clear of the round trip's arguments
  const buffer = core.buffer;
  let sink = 0;
  const figures = [];
  const add = (name, s, unit = "ns") => figures.push({ group: "floor", name, value: s.median, unit, spread: s });

  log("  calls, locks, atomics, views");
  add("empty wasm call (bus_version)", measure((n) => { for (let i = 0; i < n; i++) sink += ex.bus_version(); }, rounds, windowMs));
  const ra = a.ref;
  add("slot lookup, no lock (wake_addr)", measure((n) => { for (let i = 0; i < n; i++) sink += ex.wake_addr(ra.slot, ra.gen); }, rounds, windowMs));
  add("call with one uncontended lock (query)", measure((n) => { for (let i = 0; i < n; i++) sink += ex.query(ctx, ra.slot, ra.gen); }, rounds, windowMs));
  // a has nothing queued: the core's answer, and the API's once the core has said so
  add("recv on an empty queue, the core's call (recv)", measure((n) => { for (let i = 0; i < n; i++) sink += ex.recv(ctx, ra.slot, ra.gen, 0); }, rounds, windowMs));
  add("recv() on an empty queue, through the API (its wake word unmoved)", measure((n) => {
    for (let i = 0; i < n; i++) sink += a.recv() === null ? 1 : 0;
  }, rounds, windowMs));
  add("atomic add on shared memory, in JS", measure((n) => { for (let i = 0; i < n; i++) sink += Atomics.add(i32, scratch, 1); }, rounds, windowMs));
  add("view on shared memory (new Uint8Array, 64 B)", measure((n) => {
    for (let i = 0; i < n; i++) sink += new Uint8Array(buffer, 8 * (i & 1023), 64).length;
  }, rounds, windowMs));
  log("  the core alone");
  add("core round trip, 64 B: send_begin, send_commit, recv, slice_release", measure(roundTrip, rounds, windowMs));
  bus.close();
  // the same calls in the build of a private bus, which has no atomics (assembly/sync.ts)
  const privateBus = await Bus.create({ shared: false });
  const pa = privateBus.connect(), pb = privateBus.connect();
  const pCore = coreOf(privateBus), pr = pa.ref;
  add("call with one uncontended lock, private bus (query)", measure((n) => {
    for (let i = 0; i < n; i++) sink += pCore.ex.query(pCore.ctx, pr.slot, pr.gen);
  }, rounds, windowMs));
  add("core round trip, 64 B, private bus", measure(coreRoundTrip(privateBus, pa, pb, pb.transfer(4, pa), 64), rounds, windowMs));
  privateBus.close();
  log("  hand-offs between two threads");
  add("hand-off between threads by spinning (one way)", await handOff(false, rounds, windowMs));
  add("hand-off between threads by futex wait/notify (one way)", await handOff(true, rounds, windowMs));
  log("  CPU of a worker blocked in wait()");
  figures.push({
    group: "floor", name: "CPU per second of a worker blocked in wait(), after its spin window", short: "CPU per second blocked in wait()",
    value: await idleCpu(rounds >= 5 ? 3 : 2), unit: "ns", target: ["<=", 100_000],
  });
  if (sink === 0.5) log("");
  return { figures };
}
