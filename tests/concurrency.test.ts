// Many workers, one memory: the global order of SPEC §5 under real
// concurrency. Senders and receivers run in worker threads on one shared
// bus; the main thread checks their logs. Every test is bounded in time and
// terminates its workers.
import { afterEach, describe, expect, it } from "vitest";
import { Worker } from "node:worker_threads";
import { Bus, type Peer } from "bus1-wasm";
// internals, for the dump of a hung bus: not part of the API
import { coreOf } from "../dist/host-common/bus.js";
import { checkStressEnd, stressWorld, type ReceiverResult, type SenderResult } from "./ordering.js";

const workers: Worker[] = [];
const buses: Bus[] = [];

afterEach(async () => {
  await Promise.all(workers.splice(0).map((w) => w.terminate()));
  for (const b of buses.splice(0)) b.close();
});

function start(file: string, workerData: unknown, bus: Bus): Worker {
  current = bus;
  const w = new Worker(new URL(`./workers/${file}`, import.meta.url), { workerData });
  workers.push(w);
  bus.watch(w);
  return w;
}

/** What every attached thread is doing: printed when a worker times out. */
function dumpBus(bus: Bus): string {
  const core = coreOf(bus), u32 = core.views().u32;
  const root = core.ex.bus_root();
  const threads = u32[(root + 72) >>> 2];
  const lines = [`broken ${u32[(root + 56) >>> 2]}`];
  for (let t = 0; t < 64; t++) {
    const c = u32[(threads >>> 2) + t];
    if (!c) continue;
    const at = c >>> 2, held = u32[at + 26], nHeld = u32[at + 27];
    const locks = Array.from({ length: nHeld }, (_, k) => {
      const p = u32[(held >>> 2) + k];
      return `${p}:${u32[p >>> 2].toString(16)}/${u32[(p >>> 2) + 1]}`;
    });
    lines.push(`thread ${t} host ${u32[at + 33]} inCall ${u32[at + 25]} held [${locks.join(" ")}] want ${u32[at + 29]}`);
  }
  return lines.join("\n");
}

let current: Bus | null = null;

function result<T>(w: Worker, ms = 80_000): Promise<T> {
  return new Promise((resolve, reject) => {
    const timer = setTimeout(() => reject(new Error(`worker timed out\n${current ? dumpBus(current) : ""}`)), ms);
    w.once("message", (m) => { clearTimeout(timer); resolve(m as T); });
    w.once("error", (e) => { clearTimeout(timer); reject(e); });
    w.once("exit", (code) => { if (code !== 0) { clearTimeout(timer); reject(new Error(`worker exited ${code}`)); } });
  });
}

describe("many workers on one shared bus", () => {
  it("delivers every multicast exactly once, in one order all receivers agree on, respecting causality", async () => {
    const bus = await Bus.create({
      limits: { maxSlices: 1 << 20, maxInflightBytes: 1 << 30 },
      maxMemoryBytes: 512 << 20,
    });
    buses.push(bus);
    const world = stressWorld(bus, 3, 4, 250, 7);
    const rw = world.receiverTasks.map((task) => start("stress.mjs", task, bus));
    const sw = world.senderTasks.map((task) => start("stress.mjs", task, bus));
    // listen for every result now: a receiver may finish before the senders report
    const sentBy = Promise.all(sw.map((w) => result<SenderResult>(w)));
    const gotBy = Promise.all(rw.map((w) => result<ReceiverResult>(w)));
    const [senders, receivers] = await Promise.all([sentBy, gotBy]);
    checkStressEnd(world, senders, receivers);
  }, 90_000);

  it("orders a node-destroy against every message to or carrying that node, on every thread", async () => {
    const bus = await Bus.create();
    buses.push(bus);
    const owner = bus.connect();
    const holders = [bus.connect(), bus.connect()];
    const hN = holders.map((h) => owner.transfer(8, h));
    // each holder owns node 4; the other holder gets a handle to it
    const other = [holders[1].transfer(4, holders[0]), holders[0].transfer(4, holders[1])];
    const ctl = new SharedArrayBuffer(16);
    const ow = start("notify.mjs", { handle: bus.handle, role: "owner", ref: owner.ref, ctl, destroyAfter: 300 }, bus);
    const hw = holders.map((h, i) => start("notify.mjs", {
      handle: bus.handle, role: "holder", index: i, ref: h.ref, ctl, hN: hN[i], other: other[i],
    }, bus));
    type Log = { index: number; log: [string, number, number | null][] };
    const [o, ...hs] = await Promise.all([ow, ...hw].map((w) => result<Log>(w)));
    // the owner: every message to node 8 comes before its destruction
    const destroyedAt = o.log.findIndex((e) => e[0] === "node-destroy");
    expect(destroyedAt).toBeGreaterThanOrEqual(300);
    expect(o.log.slice(destroyedAt + 1).filter((e) => e[1] === 8)).toEqual([]);
    for (const h of hs) {
      const id = hN[h.index];
      const notes = h.log.filter((e) => e[0] === "node-destroy" && e[1] === id);
      expect(notes).toHaveLength(1);
      const at = h.log.findIndex((e) => e[0] === "node-destroy" && e[1] === id);
      const carried = (from: number, to: number) => h.log.slice(from, to).filter((e) => e[0] === "data").map((e) => e[2]);
      // carried before the destruction: the holder's own ID; after it: HANDLE_INVALID
      expect(carried(0, at).every((x) => x === id)).toBe(true);
      expect(carried(at + 1, h.log.length).every((x) => x === -1)).toBe(true);
      expect(carried(at + 1, h.log.length).length).toBeGreaterThan(0);
    }
  }, 60_000);

  it("loses no update under heavy lock contention, with no engine flag (Node 20's Liftoff wait bug is handled by the host)", async () => {
    const bus = await Bus.create({ limits: { maxSlices: 1 << 16 } });
    buses.push(bus);
    const receiver = bus.connect();
    const nWorkers = 4, count = 3000;
    const senders = Array.from({ length: nWorkers }, () => bus.connect());
    const targets = senders.map((s) => receiver.transfer(4, s));
    const ws = senders.map((s, i) => start("hammer.mjs", { handle: bus.handle, ref: s.ref, target: targets[i], count, index: i }, bus));
    const next = new Array(nWorkers).fill(0);
    let got = 0;
    const deadline = Date.now() + 60_000;
    const done = Promise.all(ws.map((w) => result(w)));
    while (got < nWorkers * count) {
      expect(Date.now()).toBeLessThan(deadline);
      const m = receiver.recv();
      if (!m) { await new Promise((r) => setImmediate(r)); continue; }
      const v = new DataView(m.payload.buffer, m.payload.byteOffset, 8);
      const w = v.getUint32(0, true), i = v.getUint32(4, true);
      expect(i).toBe(next[w]);
      next[w]++;
      got++;
      m.release();
    }
    await done;
    expect(next).toEqual(new Array(nWorkers).fill(count));
    expect(receiver.stats()).toMatchObject({ slices: 0, bytes: 0, liveSlices: 0 });
  }, 90_000);
});
