// Churn: what is made and let go of again and again leaves nothing behind.
// Peers connected and closed by the hundred thousand, each of a new user or
// exchanging a message and a handle; as many peers at once as the bus holds;
// host objects received, flushed and dropped by a disconnect; threads that
// attach, work and detach (closing the bus or terminated); and the smallest
// bus carrying messages. Each test takes `bus.stats()` as a baseline, after a
// short warm-up of the same shape as the churn (so that what is made once per
// bus, or once per peer slot, exists already), and checks that the churn
// brings the bus back to it. (API.md "Bus": disconnected peers' memory is
// reclaimed; docs/SPEC.md §2 memory, §8 users, §9 host objects.)
//
// bus.stats(): { heapBytes, usedBytes, peers, users, threads, records }.

import { afterEach, describe, expect, it } from "vitest";
import { once } from "node:events";
import { Worker } from "node:worker_threads";
import { Bus, Bus1Error } from "bus1-wasm";
import { HANDLE_INVALID, dec, enc, makeBus, newSharedBus, takeOne } from "./helpers.js";
import type { BusKind, Peer } from "./helpers.js";

const KINDS: BusKind[] = ["private", "shared"];
/** A small bus: a leak of a few dozen bytes per cycle runs out of it within 100,000 cycles. */
const SMALL = { maxMemoryBytes: 1 << 20 };
/** The smallest bus there is. */
const MINIMUM = { maxMemoryBytes: 131072 };
const CYCLES = 100_000;
const WARM_UP = 64;


/** The memory counters that must come back: used bytes, peers, users, threads, records. */
function footprint(bus: Bus) {
  const { usedBytes, peers, users, threads, records } = bus.stats();
  return { usedBytes, peers, users, threads, records };
}

/** Runs `fn(1)` … `fn(n)`; a failure names its cycle. */
function cycles(n: number, fn: (i: number) => void, from = 1): void {
  for (let i = from; i < from + n; i++) {
    try {
      fn(i);
    } catch (e) {
      const code = e instanceof Bus1Error ? ` ${e.code}` : "";
      throw new Error(`cycle ${i - from + 1} of ${n}:${code} ${(e as Error).message}`, { cause: e });
    }
  }
}

/**
 * Warms `bus` up with WARM_UP rounds of `round`, then runs `n` more: what the
 * bus holds comes back to where the warm-up left it. Returns that footprint.
 */
function expectChurnLeavesNothing(bus: Bus, n: number, round: (i: number) => void) {
  cycles(WARM_UP, round);
  const before = footprint(bus);
  cycles(n, round, WARM_UP + 1);
  expect(footprint(bus)).toEqual(before);
  return before;
}

/** `peer` was told that the node behind its handle is gone; it lets go of the handle. */
function releaseDestroyed(peer: Peer, handle: number): void {
  const note = takeOne(peer);
  if (note.type !== "node-destroy" || note.destination !== handle) throw new Error(`got ${note.type} for ${note.destination}`);
  peer.release(handle);
}

// ---------------------------------------------------------------------------
// the cycles

/** One peer of user `user`, connected and closed. */
function connectClose(bus: Bus, user: number): void {
  bus.connect({ user }).close();
}

/**
 * A sender and a receiver: the receiver transfers its node 4 to the sender,
 * which sends a payload with a handle to its own node 8 attached; the
 * receiver receives it, releases the handle and the slice; both close.
 */
function exchange(bus: Bus, i: number): void {
  const s = bus.connect();
  const r = bus.connect();
  const toR = r.transfer(4, s);
  s.send(toR, enc(`message ${i}`), { handles: [8] });
  const m = r.recv();
  if (m === null) throw new Error("nothing received");
  if (m.type !== "data" || m.handles.length !== 1 || dec(m.payload) !== `message ${i}`) {
    throw new Error(`received ${m.type} with ${m.handles.length} handles: ${dec(m.payload)}`);
  }
  r.release(m.handles[0]);
  m.release();
  s.close();
  r.close();
}

// ---------------------------------------------------------------------------

describe.each(KINDS)("connect/close churn on a %s bus", (kind) => {
  it("connects and closes 100,000 peers of 100,000 new users on a 1 MiB bus; used bytes and user records come back", async () => {
    const bus = await makeBus(kind, SMALL);
    // users 1 … 100,000; the warm-up's lie above them, so that each is new
    expectChurnLeavesNothing(bus, CYCLES, (i) => connectClose(bus, i > WARM_UP ? i - WARM_UP : CYCLES + i));
  });

  it("connects 100,000 pairs that exchange a message carrying a handle and close, on a 1 MiB bus; used bytes come back", async () => {
    const bus = await makeBus(kind, SMALL);
    expectChurnLeavesNothing(bus, CYCLES, (i) => exchange(bus, i));
  });
});

// ---------------------------------------------------------------------------

/** Most peers a peak connects: enough to fill a 1 MiB bus many times over at 1 KiB a peer. */
const PEAK_CAP = 20_000;

/** Connects peers until ENOMEM (or PEAK_CAP); returns them. */
function peak(bus: Bus): Peer[] {
  const held: Peer[] = [];
  while (held.length < PEAK_CAP) {
    try {
      held.push(bus.connect());
    } catch (e) {
      expect(e, `connect number ${held.length + 1} failed`).toBeInstanceOf(Bus1Error);
      expect((e as Bus1Error).code, (e as Error).message).toBe("ENOMEM");
      break;
    }
  }
  return held;
}

describe.each(KINDS)("a peak of peers on a %s bus", (kind) => {
  it("after as many peers as a 1 MiB bus holds are connected and closed, a new pair exchanges a message, and used bytes are back within 16 bytes a peer slot", async () => {
    // What may stay: the peer-slot directory. Slots are never freed (a peer
    // is found by its slot without a lock), 8 to 16 bytes each, in pages of a
    // few hundred slots, each a heap block with its header. So the allowance
    // is 16 bytes for each slot the peak made, plus 16 KiB for the rounding
    // of the last page and block headers. Everything else — Peer records,
    // pools, queues, maps, users — comes back.
    const bus = await makeBus(kind, SMALL);
    exchange(bus, 0);
    const before = footprint(bus);
    const held = peak(bus);
    // a 1 MiB bus holds at least a thousand idle peers
    expect(held.length).toBeGreaterThanOrEqual(1000);
    expect(bus.stats().peers).toBeGreaterThanOrEqual(held.length);
    for (const p of held) p.close();
    exchange(bus, 1);
    const after = footprint(bus);
    expect({ ...after, usedBytes: 0 }).toEqual({ ...before, usedBytes: 0 });
    const allowance = 16 * held.length + 16 * 1024;
    expect(after.usedBytes - before.usedBytes, `${held.length} peers at the peak`).toBeLessThanOrEqual(allowance);
  });

  it("after a peak of peers is closed, a second peak holds as many peers as the first, give or take 1%", async () => {
    const bus = await makeBus(kind, SMALL);
    const first = peak(bus);
    for (const p of first) p.close();
    const second = peak(bus);
    // the slot directory and the thread's tables of the first peak stay where they were: a
    // little fragmentation may cost a few records out of thousands, never more than 1%
    expect(second.length).toBeGreaterThanOrEqual(Math.floor(first.length * 0.99));
    for (const p of second) p.close();
  });
});

// ---------------------------------------------------------------------------

/** Two host objects of a message: a plain object and an ArrayBuffer. */
function objectsOf(i: number): unknown[] {
  return [{ i, name: `object ${i}`, list: [i, i + 1] }, new ArrayBuffer(64 + (i % 8) * 8)];
}

describe.each(KINDS)("host objects on a %s bus", (kind) => {
  it("frees the records of host objects that were received and released: records back to 0, used bytes back", async () => {
    const bus = await makeBus(kind, SMALL);
    const a = bus.connect();
    const b = bus.connect();
    const toB = b.transfer(4, a);
    const round = (i: number) => {
      const sent = objectsOf(i);
      a.send(toB, enc(`with objects ${i}`), { objects: sent });
      const m = b.recv();
      if (m === null) throw new Error("nothing received");
      // same thread: the very values that were sent
      if (m.objects.length !== 2 || m.objects[0] !== sent[0] || m.objects[1] !== sent[1]) {
        throw new Error(`received objects ${JSON.stringify(m.objects)}`);
      }
      m.release();
    };
    expect(expectChurnLeavesNothing(bus, 20_000, round).records).toBe(0);
  });

  it("frees the records of host objects whose queued messages a flush dropped: records back to 0, used bytes back", async () => {
    const bus = await makeBus(kind, SMALL);
    const a = bus.connect();
    const b = bus.connect();
    let counted = 0;
    const round = (i: number) => {
      const toB = b.transfer(4, a);
      for (let k = 0; k < 3; k++) a.send(toB, enc(`flushed ${i}.${k}`), { objects: objectsOf(i) });
      counted = Math.max(counted, bus.stats().records);
      b.reset({ flush: true });
      releaseDestroyed(a, toB);
      if (a.recv() !== null || b.recv() !== null) throw new Error("a message is left");
    };
    expect(expectChurnLeavesNothing(bus, 2000, round).records).toBe(0);
    // the records were counted while their messages were queued
    expect(counted).toBeGreaterThanOrEqual(6);
  });

  it("frees the records of host objects whose queued messages were dropped by the receiver's disconnect: records back to 0, used bytes back", async () => {
    const bus = await makeBus(kind, SMALL);
    const a = bus.connect();
    const round = (i: number) => {
      const c = bus.connect();
      const toC = c.transfer(4, a);
      a.send(toC, enc(`dropped ${i}`), { objects: objectsOf(i) });
      a.send([toC], enc(`dropped too ${i}`), { objects: [{ again: i }] });
      c.disconnect();
      c.close();
      releaseDestroyed(a, toC);
    };
    expect(expectChurnLeavesNothing(bus, 2000, round).records).toBe(0);
  });
});

// ---------------------------------------------------------------------------

describe.each(KINDS)("the smallest bus, %s", (kind) => {
  it("a 131072-byte bus lets a pair exchange 10,000 small messages", async () => {
    const bus = await makeBus(kind, MINIMUM);
    const a = bus.connect();
    const b = bus.connect();
    const toB = b.transfer(4, a);
    const toA = a.transfer(4, b);
    cycles(10_000, (i) => {
      const [from, to, dst] = i % 2 ? [a, b, toB] : [b, a, toA];
      const payload = new Uint8Array(1 + (i % 96)).fill(i & 255);
      from.send(dst, payload);
      const m = to.recv();
      if (m === null) throw new Error("nothing received");
      if (m.payload.length !== payload.length || m.payload.some((x) => x !== (i & 255))) throw new Error("payload changed");
      m.release();
    });
  });
});

// ---------------------------------------------------------------------------
// threads

const workers: Worker[] = [];

afterEach(async () => {
  await Promise.all(workers.splice(0).map((w) => w.terminate()));
});

/** Starts a churn worker, watched by the bus; resolves `exited` with its exit code once the bus has let go of it. */
function startWorker(bus: Bus, workerData: Record<string, unknown>) {
  const worker = new Worker(new URL("./workers/churn-thread.mjs", import.meta.url), {
    workerData: { handle: bus.handle, ...workerData },
  });
  workers.push(worker);
  bus.watch(worker);
  // registered after bus.watch's listener, so it runs after that one
  const exited = new Promise<number>((resolve) => worker.once("exit", resolve));
  return { worker, exited };
}

/** The worker's next message; rejects if it fails or says nothing within 10 s. */
async function nextMessage<T>(worker: Worker): Promise<T> {
  const [message] = await once(worker, "message", { signal: AbortSignal.timeout(10_000) });
  return message as T;
}

type Exit = "close" | "terminate";

/**
 * One thread's cycle on `home`'s lane: a worker attaches, gets a peer (adopted
 * from the main thread on even cycles, connected on odd ones), exchanges a
 * message with host objects with `home`, and lets go as `exit` says. Then
 * `home` sees the peer's node destroyed and releases its handle to it.
 */
async function threadCycle(bus: Bus, home: Peer, cycle: number, exit: Exit): Promise<void> {
  const mode = cycle % 2 ? "connect" : "adopt";
  let own: Peer | null = null;
  let toPeer = HANDLE_INVALID;
  let data: Record<string, unknown>;
  if (mode === "adopt") {
    own = bus.connect();
    data = { cycle, mode, exit, ref: own.ref, toHome: home.transfer(4, own) };
    toPeer = own.transfer(4, home);
  } else {
    data = { cycle, mode, exit, homeRef: home.ref };
  }
  const w = startWorker(bus, data);
  const sent = await nextMessage<{ step: string; toPeer: number | null }>(w.worker);
  expect(sent.step).toBe("sent");
  if (own) own.close(); // the worker holds the only reference now
  else toPeer = sent.toPeer!;
  const m = home.recv();
  expect(m, `cycle ${cycle}: the worker's message`).not.toBeNull();
  expect(dec(m!.payload)).toBe(`from worker ${cycle}`);
  expect(m!.objects).toHaveLength(2);
  expect(m!.objects[0]).toEqual({ cycle, from: "worker", list: [1, 2, 3] });
  expect(m!.objects[1]).toBeInstanceOf(ArrayBuffer);
  expect((m!.objects[1] as ArrayBuffer).byteLength).toBe(32);
  m!.release();
  home.send(toPeer, enc(`reply ${cycle}`), { objects: [{ cycle, from: "main" }] });
  const done = await nextMessage<{ step: string; reply: { type: string; text: string; objects: unknown[] } }>(w.worker);
  expect(done).toEqual({ step: "done", reply: { type: "data", text: `reply ${cycle}`, objects: [{ cycle, from: "main" }] } });
  if (exit === "terminate") await w.worker.terminate();
  const code = await w.exited;
  expect(code).toBe(exit === "close" ? 0 : 1);
  // the worker's peer went with it: its node is destroyed, and its handle
  // was the last one to home's node 4
  const notes: string[] = [];
  for (let n = home.recv(); n !== null; n = home.recv()) notes.push(`${n.type} ${n.destination}`);
  expect(notes.sort(), `cycle ${cycle}`).toEqual([`node-destroy ${toPeer}`, "node-release 4"]);
  home.release(toPeer);
}

/** `n` cycles on as many lanes as `homes` (one worker alive on each); the first failure stops every lane. */
async function threadChurn(bus: Bus, homes: Peer[], n: number, exit: Exit, from = 0): Promise<void> {
  let failed = false;
  await Promise.all(homes.map(async (home, lane) => {
    try {
      for (let c = lane; c < n && !failed; c += homes.length) await threadCycle(bus, home, from + c, exit);
    } catch (e) {
      failed = true;
      throw e;
    }
  }));
}

describe("thread churn on a shared bus", () => {
  for (const exit of ["close", "terminate"] as const) {
    const how = exit === "close" ? "close the bus" : "are terminated without closing it";
    it(`80 workers that attach, exchange messages with host objects and ${how} leave one thread, no records and the used bytes of before`, async () => {
      const bus = await newSharedBus(SMALL);
      if (!bus.shared) return; // no threads without shared memory
      const homes = [bus.connect(), bus.connect()];
      await threadChurn(bus, homes, 8, exit);
      const before = footprint(bus);
      expect(before.threads).toBe(1);
      expect(before.records).toBe(0);
      await threadChurn(bus, homes, 80, exit, 8);
      expect(footprint(bus)).toEqual(before);
    }, 30_000);
  }
});
