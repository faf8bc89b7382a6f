// Case 7 — memory.
//
// Bytes per idle peer: on a fresh bus, 10,000 peers are connected; the
// growth of the bus heap (the core's bus_heap_bytes(), the span of memory the
// core has handed out) and of the WebAssembly memory, divided by 10,000. The
// peers are then closed and 10,000 more connected: the heap must not grow
// again (freed peers are reused).
//
// Fragmentation: a sender and a receiver of one user, default limits. A
// seeded random walk sends messages of random sizes (0 B–64 KiB, uniform),
// receives them at random moments (a queue is received in order) and
// releases the received slices in random order, until 1 million messages
// (100,000 with --quick) have gone through; whenever a send would exceed the
// receiver's quota (EDQUOT) a random live slice is released instead, so the
// receiver runs near its 16 MiB quota most of the time. Every 64 steps the
// receiver's stats() are read: `bytes` (charged: queued and received, not
// yet released) and `poolBytes` (memory its pool holds). Fragmentation is
// peak poolBytes ÷ peak bytes. At the end everything is received and
// released, and the receiver must be back where it started: no slices, no
// bytes, its pool at its baseline size (one chunk). The heap does not shrink
// (bus_heap_bytes is a high-water mark), so that what the pool gave back is
// really free is checked by running a tenth of the walk again into a new
// receiver: the heap must not grow.

import { Bus, Bus1Error } from "bus1-wasm";
import { now, random } from "./harness.js";

const IDLE_PEERS = 10_000;
const MAX_SIZE = 65536;

function heapBytes(bus) {
  return bus.stats().heapBytes;
}

async function idlePeers() {
  const bus = await Bus.create();
  const memory = bus.handle.memory;
  const heap0 = heapBytes(bus), mem0 = memory.buffer.byteLength;
  let peers = Array.from({ length: IDLE_PEERS }, () => bus.connect());
  const heap1 = heapBytes(bus), mem1 = memory.buffer.byteLength;
  for (const p of peers) p.close();
  peers = Array.from({ length: IDLE_PEERS }, () => bus.connect());
  const heap2 = heapBytes(bus);
  for (const p of peers) p.close();
  bus.close();
  return [
    { name: "bus heap per idle peer", value: (heap1 - heap0) / IDLE_PEERS, unit: "B" },
    { name: "wasm memory growth per idle peer", value: (mem1 - mem0) / IDLE_PEERS, unit: "B" },
    {
      name: `heap growth when ${IDLE_PEERS} peers are closed and ${IDLE_PEERS} more connected`, value: heap2 - heap1, unit: "B",
      target: ["<=", 0],
    },
  ];
}

/**
 * The random walk: `messages` sends of random sizes from `sender` to `dst`
 * (a node of `receiver`), received and released at random, then drained.
 * Returns the peaks seen and how it went.
 */
function walk(bus, sender, receiver, dst, messages, rand) {
  const source = new Uint8Array(MAX_SIZE).fill(0x5a);
  const live = []; // offsets of received, unreleased slices
  const releaseRandom = () => {
    const i = Math.floor(rand() * live.length);
    receiver.releaseSlice(live[i]);
    live[i] = live[live.length - 1];
    live.pop();
  };
  let sent = 0, queued = 0, refused = 0, steps = 0;
  let peakBytes = 0, peakPool = 0;
  const start = now();
  while (sent < messages || queued > 0 || live.length > 0) {
    const r = rand();
    if (sent < messages && r < 0.5) {
      const size = Math.floor(rand() * (MAX_SIZE + 1));
      try {
        sender.send(dst, source.subarray(0, size));
        sent++;
        queued++;
      } catch (e) {
        if (!(e instanceof Bus1Error) || e.code !== "EDQUOT") throw e;
        refused++;
        if (live.length > 0) releaseRandom();
      }
    } else if (queued > 0 && (r < 0.75 || live.length === 0)) {
      live.push(receiver.recv().offset);
      queued--;
    } else if (live.length > 0) {
      releaseRandom();
    }
    if ((++steps & 63) === 0) {
      const s = receiver.stats();
      if (s.bytes > peakBytes) peakBytes = s.bytes;
      if (s.poolBytes > peakPool) peakPool = s.poolBytes;
    }
  }
  return { sent, refused, steps, peakBytes, peakPool, heap: heapBytes(bus), seconds: (now() - start) / 1000 };
}

async function fragmentation(messages) {
  const bus = await Bus.create();
  const sender = bus.connect();
  let receiver = bus.connect();
  let dst = receiver.transfer(4, sender);
  // the baseline: one message through, so the pool has its first chunk
  sender.send(dst, new Uint8Array(8));
  receiver.recv().release();
  const base = receiver.stats();
  const heapBase = heapBytes(bus);
  const rand = random(0x5eed);

  const first = walk(bus, sender, receiver, dst, messages, rand);
  const end = receiver.stats();
  // What the pool gave back must be usable again: a tenth of the walk
  // again, into a new receiver, must fit in the heap the first one left.
  receiver.disconnect();
  receiver = bus.connect();
  dst = receiver.transfer(8, sender);
  const again = walk(bus, sender, receiver, dst, Math.ceil(messages / 10), rand);
  bus.close();

  const emptied = end.slices === 0 && end.bytes === 0 && end.liveSlices === 0 && end.poolBytes <= base.poolBytes;
  const reused = again.heap <= first.heap;
  return {
    figures: [
      {
        name: `fragmentation: peak pool ÷ peak live bytes, ${messages.toLocaleString("en-US")} messages`,
        short: "fragmentation, peak pool ÷ peak live",
        value: first.peakPool / first.peakBytes, unit: "×", target: ["<=", 1.3],
      },
      { name: "peak live bytes (charged to the receiver)", value: first.peakBytes, unit: "B" },
      { name: "peak pool bytes", value: first.peakPool, unit: "B" },
      {
        name: "back to baseline: no slices or bytes left, pool back to one chunk, freed memory reused",
        value: emptied && reused ? 1 : 0, unit: "yes/no", target: ["==", 1],
      },
    ],
    run: { base, end, heapBase, first, again, emptied, reused },
  };
}

export async function run({ quick, log }) {
  log(`  ${IDLE_PEERS.toLocaleString("en-US")} idle peers`);
  const idle = await idlePeers();
  const messages = quick ? 100_000 : 1_000_000;
  log(`  ${messages.toLocaleString("en-US")} messages of random sizes`);
  const frag = await fragmentation(messages);
  return {
    figures: [...idle, ...frag.figures].map((f) => ({ group: "memory", ...f })),
    memoryRun: frag.run,
  };
}
