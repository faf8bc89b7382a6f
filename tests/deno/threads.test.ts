// Deno's Web Workers on one shared bus (run by vitest.deno.config.ts): the
// global order of SPEC §5 with the checks of tests/concurrency.test.ts
// (tests/ordering.ts), and a terminated worker whose thread the bus reclaims
// (bus.watch; host-deno's DOC block "Exits"). Sized for two cores; every
// test is bounded in time and terminates its workers and closes its buses.
import { afterEach, describe, expect, it } from "vitest";
import { Bus } from "bus1-wasm";
import { checkStressEnd, stressWorld, type ReceiverResult, type SenderResult } from "../ordering.js";
// internals: what the watching of this thread holds (not part of the API)
import { watchingNow } from "../../dist/host-common/liveness.js";

const workers: Worker[] = [];
const buses: Bus[] = [];

afterEach(() => {
  for (const w of workers.splice(0)) w.terminate();
  for (const b of buses.splice(0)) b.close();
});

async function sharedBus(options?: Parameters<typeof Bus.create>[0]): Promise<Bus> {
  const bus = await Bus.create(options);
  buses.push(bus);
  return bus;
}

/** A Deno Web Worker running tests/deno/workers/`file`, watched by `bus`. */
function start(file: string, bus: Bus): Worker {
  const w = new Worker(new URL(`./workers/${file}`, import.meta.url), { type: "module" });
  workers.push(w);
  bus.watch(w);
  return w;
}

/** The next message of `w`, or a failure after `ms` (a worker's error fails it at once). */
function next<T>(w: Worker, what: string, ms = 20_000): Promise<T> {
  return new Promise((resolve, reject) => {
    const timer = setTimeout(() => reject(new Error(`${what}: no answer in ${ms} ms`)), ms);
    w.onmessage = (e) => { clearTimeout(timer); resolve(e.data as T); };
    w.onerror = (e) => { clearTimeout(timer); e.preventDefault(); reject(new Error(`${what}: ${e.message}`)); };
  });
}

/** A stress worker's result: what it logged, or its error. */
async function stressResult<T>(w: Worker, what: string): Promise<T> {
  const r = await next<{ ok?: T; error?: string }>(w, what, 60_000);
  if (r.error !== undefined) throw new Error(`${what}: ${r.error}`);
  return r.ok!;
}

const sleep = (ms: number) => new Promise((r) => setTimeout(r, ms));

describe("Deno Web Workers on one shared bus", () => {
  it("deliver every multicast exactly once, in one order all receivers agree on, respecting causality", async () => {
    const bus = await sharedBus({ limits: { maxSlices: 1 << 20, maxInflightBytes: 1 << 30 }, maxMemoryBytes: 256 << 20 });
    expect(bus.shared).toBe(true);
    const world = stressWorld(bus, 2, 3, 150, 11);
    const stress = (task: unknown) => {
      const w = start("stress.mjs", bus);
      w.postMessage(task);
      return w;
    };
    const rw = world.receiverTasks.map(stress);
    const sw = world.senderTasks.map(stress);
    // listen for every result now: a receiver may finish before the senders report
    const sentBy = Promise.all(sw.map((w, i) => stressResult<SenderResult>(w, `sender ${i}`)));
    const gotBy = Promise.all(rw.map((w, i) => stressResult<ReceiverResult>(w, `receiver ${i}`)));
    const [senders, receivers] = await Promise.all([sentBy, gotBy]);
    checkStressEnd(world, senders, receivers);
  }, 90_000);

  it("reclaim a terminated worker's thread: the peer only it held is disconnected, the other worker goes on", async () => {
    const bus = await sharedBus();
    const watcher = bus.connect();
    const [victim, survivor] = [bus.connect(), bus.connect()];
    // each worker's peer holds the only handle to a node of the watcher's (4, 8): its release is the news that the peer is gone
    const toWatcher = [watcher.transfer(4, victim), watcher.transfer(8, survivor)];
    const ws = [start("holder.mjs", bus), start("holder.mjs", bus)];
    await Promise.all(ws.map((w, i) => {
      const held = next<string>(w, `worker ${i} attach`);
      w.postMessage({ attach: { handle: bus.handle, ref: [victim, survivor][i].ref } });
      return held;
    }));
    // the workers now hold the only references to their peers
    victim.close();
    survivor.close();
    expect(bus.stats().threads).toBe(3);
    expect(watcher.recv()).toBeNull();

    ws[0].terminate();
    let note = null;
    for (let i = 0; i < 500 && (note = watcher.recv()) === null; i++) await sleep(10);
    expect(note?.type, "the victim's peer was not disconnected within 5 s").toBe("node-release");
    expect(note!.destination).toBe(4);
    expect(bus.stats().threads).toBe(2);

    // the other worker's thread and peer are untouched
    const sent = next<string>(ws[1], "survivor send");
    ws[1].postMessage({ send: toWatcher[1] });
    expect(await sent).toBe("sent");
    const m = watcher.recv();
    expect(m?.type).toBe("data");
    expect(new TextDecoder().decode(m!.payload.slice())).toBe("alive");
    m!.release();
  }, 30_000);

  it("reclaim a terminated worker through one bus after another bus that watched it was closed; the last close leaves no watcher", async () => {
    const bus = await sharedBus(), other = await sharedBus();
    const watcher = bus.connect(), victim = bus.connect();
    watcher.transfer(4, victim);
    const w = start("holder.mjs", bus);
    other.watch(w);
    expect(watchingNow().buses).toBe(2);
    const held = next<string>(w, "worker attach");
    w.postMessage({ attach: { handle: bus.handle, ref: victim.ref } });
    expect(await held).toBe("held");
    victim.close();
    other.close();
    expect(watchingNow().buses).toBe(1);

    w.terminate();
    let note = null;
    for (let i = 0; i < 500 && (note = watcher.recv()) === null; i++) await sleep(10);
    expect(note?.type, "the victim's peer was not disconnected within 5 s").toBe("node-release");
    expect(bus.stats().threads).toBe(1);
    bus.close();
    await sleep(1); // the channel is closed one task later
    expect(watchingNow()).toEqual({ buses: 0, listening: false, following: 0, timers: 0 });
  }, 30_000);
});
