// One bus, several threads: waiting across threads, one peer used from many
// threads at once, peer references and their lifetime, handles and
// notifications that cross threads, quotas under concurrent senders, memory
// growth under live payload views, and the bus memory bound.
// (API.md "Bus", "Peer"; SPEC.md §2, §3, §6; docs/SPEC.md §2, §6, §8.)
//
// Workers import "bus1-wasm", attach with Bus.attach(workerData.handle) and
// adopt peer references; the main thread watches every worker. Every test is
// bounded in time and terminates its workers in afterEach.
import { afterEach, describe, expect, it } from "vitest";
import { Worker } from "node:worker_threads";
import { Bus, Bus1Error, HANDLE_FLAG_MANAGED, HANDLE_FLAG_REMOTE, type Message, type Peer } from "bus1-wasm";
// internals, for the tests of the spinner count: not part of the API
import { coreOf } from "../dist/host-common/bus.js";

const workers: Worker[] = [];
const buses: Bus[] = [];

afterEach(async () => {
  await Promise.all(workers.splice(0).map((w) => w.terminate()));
  for (const b of buses.splice(0)) {
    try {
      b.close();
    } catch {
      // already closed by the test
    }
  }
});

async function newBus(options?: Parameters<typeof Bus.create>[0]): Promise<Bus> {
  const bus = await Bus.create(options);
  buses.push(bus);
  return bus;
}

function start(file: string, workerData: Record<string, unknown>, bus: Bus): Worker {
  const w = new Worker(new URL(`./workers/${file}`, import.meta.url), { workerData: { handle: bus.handle, ...workerData } });
  workers.push(w);
  bus.watch(w);
  return w;
}

/** The worker's messages, in order, each awaited with a time bound. */
function inbox(w: Worker) {
  const queue: unknown[] = [];
  const waiting: { resolve: (v: unknown) => void; reject: (e: unknown) => void }[] = [];
  let failure: unknown = null;
  const fail = (e: unknown) => {
    failure = e;
    for (const p of waiting.splice(0)) p.reject(e);
  };
  w.on("message", (m) => {
    const p = waiting.shift();
    if (p) p.resolve(m);
    else queue.push(m);
  });
  w.on("error", fail);
  w.on("exit", (code) => { if (code !== 0) fail(new Error(`worker exited with ${code}`)); });
  return {
    next<T>(ms = 10_000): Promise<T> {
      if (queue.length) return Promise.resolve(queue.shift() as T);
      if (failure) return Promise.reject(failure);
      return new Promise<T>((resolve, reject) => {
        const timer = setTimeout(() => {
          const i = waiting.indexOf(entry);
          if (i >= 0) waiting.splice(i, 1);
          reject(new Error(`no message from the worker within ${ms} ms`));
        }, ms);
        const entry = {
          resolve: (v: unknown) => { clearTimeout(timer); resolve(v as T); },
          reject: (e: unknown) => { clearTimeout(timer); reject(e); },
        };
        waiting.push(entry);
      });
    },
  };
}

type Plain = { type: Message["type"]; destination: number; continue: boolean; offset: number; bytes: number[]; handles: number[] };
type AgentError = { bus1: boolean; code: string | null; name: string | null; message: string };

/** A worker (threads-agent.mjs) that adopts peers and calls their methods on request. */
class Agent {
  private seq = 0;
  private readonly pending = new Map<number, { resolve: (v: any) => void; reject: (e: unknown) => void }>();
  private readonly ready: Promise<void>;

  constructor(readonly bus: Bus) {
    const w = start("threads-agent.mjs", {}, bus);
    let onReady!: () => void;
    this.ready = new Promise((r) => { onReady = r; });
    w.on("message", (m: { id: number; value?: unknown; error?: AgentError }) => {
      if (m.id === 0) return onReady();
      const p = this.pending.get(m.id);
      if (!p) return;
      this.pending.delete(m.id);
      if (m.error) p.resolve({ error: m.error });
      else p.resolve({ value: m.value });
    });
    const fail = (e: unknown) => { for (const p of this.pending.values()) p.reject(e); this.pending.clear(); };
    w.on("error", fail);
    w.on("exit", () => fail(new Error("agent exited")));
    this.worker = w;
  }

  readonly worker: Worker;

  private async request(req: Record<string, unknown>, ms: number): Promise<{ value?: any; error?: AgentError }> {
    await this.ready;
    const id = ++this.seq;
    return new Promise((resolve, reject) => {
      const timer = setTimeout(() => { this.pending.delete(id); reject(new Error(`agent: no answer to ${JSON.stringify(req)} within ${ms} ms`)); }, ms);
      this.pending.set(id, {
        resolve: (v) => { clearTimeout(timer); resolve(v); },
        reject: (e) => { clearTimeout(timer); reject(e); },
      });
      this.worker.postMessage({ id, ...req });
    });
  }

  /** Adopts `ref` under `as`; returns the error if it failed. */
  async adopt(ref: Peer["ref"], as: string): Promise<AgentError | null> {
    const r = await this.request({ op: "adopt", ref, as }, 10_000);
    return r.error ?? null;
  }

  /** Calls peer `name`'s `method`; resolves with its value, rejects with a description of its error. */
  async call<T = any>(name: string, method: string, ...args: unknown[]): Promise<T> {
    const r = await this.request({ op: "call", peer: name, method, args }, 10_000);
    if (r.error) throw Object.assign(new Error(`${method}: ${r.error.code} ${r.error.message}`), { agent: r.error });
    return r.value as T;
  }

  /** Calls and expects a Bus1Error with `code`. */
  async fails(code: string, name: string, method: string, ...args: unknown[]): Promise<void> {
    const r = await this.request({ op: "call", peer: name, method, args }, 10_000);
    expect(r.error, `${name}.${method} should fail with ${code}, returned ${JSON.stringify(r.value)}`).toBeDefined();
    expect(r.error!.bus1, r.error!.message).toBe(true);
    expect(r.error!.code, r.error!.message).toBe(code);
  }
}

const sleep = (ms: number) => new Promise((r) => setTimeout(r, ms));
const bytes = (text: string) => new TextEncoder().encode(text);
const text = (b: ArrayLike<number>) => String.fromCharCode(...Array.from(b));

function within<T>(p: Promise<T>, ms: number, what: string): Promise<T> {
  let timer: ReturnType<typeof setTimeout>;
  return Promise.race([
    p.finally(() => clearTimeout(timer)),
    new Promise<T>((_, reject) => { timer = setTimeout(() => reject(new Error(`${what}: not within ${ms} ms`)), ms); }),
  ]);
}

function expectBus1(fn: () => unknown, code: string): void {
  let thrown: unknown = null;
  try {
    fn();
  } catch (e) {
    thrown = e;
  }
  expect(thrown, `expected Bus1Error ${code}`).toBeInstanceOf(Bus1Error);
  expect((thrown as Bus1Error).code, (thrown as Error).message).toBe(code);
}

function isRemoteId(id: number): boolean {
  return Number.isSafeInteger(id) && id > 0 && (id & HANDLE_FLAG_MANAGED) !== 0 && (id & HANDLE_FLAG_REMOTE) !== 0;
}

// ---------------------------------------------------------------------------

describe("waiting across threads", () => {
  it("peer.wait() in a worker blocks until the main thread sends, and wait(50) times out after about 50 ms", async () => {
    const bus = await newBus();
    const p = bus.connect();
    const main = bus.connect();
    const toP = p.transfer(4, main);
    const ctl = new SharedArrayBuffer(16);
    const flag = new Int32Array(ctl, 0, 1), when = new Float64Array(ctl, 8, 1);
    const w = inbox(start("threads-wait.mjs", { ref: p.ref, ctl }, bus));
    expect(await w.next<{ step: string }>()).toEqual({ step: "waiting" });
    await sleep(150); // the worker is blocked in wait() by now
    Atomics.store(flag, 0, 1);
    when[0] = performance.timeOrigin + performance.now();
    main.send(toP, bytes("wake up"));
    const r = await w.next<{
      woke: boolean; blocked: number; sentBeforeWake: boolean; latency: number; text: string;
      timedOut: boolean; timeoutElapsed: number;
    }>();
    expect(r.woke).toBe(true);
    expect(r.sentBeforeWake).toBe(true); // it did not return before the send
    expect(r.blocked).toBeGreaterThanOrEqual(100);
    expect(r.latency).toBeLessThan(1_000); // and returned soon after it
    expect(r.text).toBe("wake up");
    expect(r.timedOut).toBe(false);
    expect(r.timeoutElapsed).toBeGreaterThanOrEqual(40);
    expect(r.timeoutElapsed).toBeLessThan(2_000);
  });

  it("wait() spins in fewer threads than there are processors, and a message that comes while it spins is not missed", async () => {
    // 4 workers, each taking 3000 messages with wait() + recv(); main sends to
    // them in turn with pauses of 0 to 150 µs, so waits end both in the spin
    // and in the sleep that follows it (Peer.wait, ROOT_SPINNERS)
    const { availableParallelism } = await import("node:os");
    const limit = Math.max(0, availableParallelism() - 1);
    const bus = await newBus();
    const main = bus.connect();
    const spinners = (coreOf(bus).ex.bus_root() + 76) >>> 2;
    const count = 3000;
    const sinks = [0, 1, 2, 3].map(() => {
      const p = bus.connect();
      const to = p.transfer(4, main);
      const w = inbox(start("threads-spin.mjs", { ref: p.ref, count, spinners }, bus));
      return { p, to, w };
    });
    for (const s of sinks) {
      expect(await s.w.next<{ step: string }>()).toEqual({ step: "ready" });
      s.p.close();
    }
    const i32 = new Int32Array(coreOf(bus).memory.buffer);
    const payload = new Uint8Array(8);
    const seq = new DataView(payload.buffer);
    let maxSeen = 0;
    const deadline = performance.now() + 20_000;
    for (let i = 0; i < count && performance.now() < deadline; i++) {
      seq.setUint32(0, i, true);
      for (const s of sinks) {
        main.send(s.to, payload);
        maxSeen = Math.max(maxSeen, Atomics.load(i32, spinners));
        const until = performance.now() + ((i * 37) % 151) / 1000;
        while (performance.now() < until) maxSeen = Math.max(maxSeen, Atomics.load(i32, spinners));
      }
    }
    for (const s of sinks) {
      const r = await s.w.next<{ received: number; outOfOrder: number; maxSpinners: number }>(20_000);
      expect(r).toMatchObject({ received: count, outOfOrder: 0 });
      expect(r.maxSpinners).toBeLessThanOrEqual(limit);
    }
    expect(maxSeen).toBeLessThanOrEqual(limit);
    expect(Atomics.load(i32, spinners)).toBe(0);
  }, 60_000);

  it("a send takes a sleeper's arm and notifies; the next sends leave the word alone until it is armed again", async () => {
    // ABI.md §5.5, played by this thread: the sleepers word counts sleepers (bits 0–30) and has
    // `armed` (bit 31); a send takes the arm before it bumps the wake word, and notifies only then
    const bus = await newBus();
    const a = bus.connect();
    const b = bus.connect();
    const to = b.transfer(4, a);
    const core = coreOf(bus);
    const w = core.ex.wake_addr(b.ref.slot, b.ref.gen) >>> 2;
    const word = () => Atomics.load(new Int32Array(core.memory.buffer), w);
    const sleepers = () => Atomics.load(new Int32Array(core.memory.buffer), w + 1) >>> 0;
    const set = (f: (i32: Int32Array) => void) => f(new Int32Array(core.memory.buffer));
    const ARMED = 2 ** 31;
    const seq = word();
    // an arm with no sleeper counted (a waiter that timed out left it): it stays
    set((i32) => Atomics.or(i32, w + 1, ARMED));
    a.send(to, bytes("1"));
    expect(sleepers()).toBe(ARMED);
    // a sleeper counted and armed: the first send takes the arm, the next leave the word alone
    set((i32) => Atomics.add(i32, w + 1, 1));
    expect(sleepers()).toBe(ARMED + 1);
    a.send(to, bytes("2"));
    expect(sleepers()).toBe(1);
    a.send(to, bytes("3"));
    a.send(to, bytes("4"));
    expect(sleepers()).toBe(1);
    // armed again (the sleeper woke, looked, and sleeps again): the next send takes it
    set((i32) => Atomics.or(i32, w + 1, ARMED));
    a.send(to, bytes("5"));
    expect(sleepers()).toBe(1);
    // every send bumped the wake word
    expect(word() - seq).toBe(5);
    set((i32) => Atomics.sub(i32, w + 1, 1));
    // and a real waiter arms: wait() counts itself and sets the bit while it sleeps
    for (let m = b.recv(); m; m = b.recv()) m.release();
    const waiter = inbox(start("threads-waiters.mjs", { ref: b.ref }, bus));
    expect(await waiter.next()).toBe("ready");
    const deadline = performance.now() + 5_000;
    while (sleepers() !== ARMED + 1 && performance.now() < deadline) await sleep(1);
    expect(sleepers()).toBe(ARMED + 1);
    a.send(to, new Uint8Array([255]));
    // woken by the notify, not by its 5 s timeout
    const r = await waiter.next<{ took: number; longest: number }>();
    expect(r.took).toBe(0);
    expect(r.longest).toBeLessThan(1_000);
  });

  it("several threads wait() on one peer through bursts and pauses: no wait sleeps through a send", async () => {
    // one notify per arming (ABI.md §5.5) must never leave a message queued while its waiters
    // sleep: three threads wait on one peer with a 5 s timeout while this thread sends in bursts
    // of 1 to 8 with pauses of 0 to 2 ms (waiters fall asleep, and are woken mid-burst)
    const bus = await newBus();
    const main = bus.connect();
    const p = bus.connect();
    const to = p.transfer(4, main);
    const n = 3;
    const waiters = Array.from({ length: n }, () => inbox(start("threads-waiters.mjs", { ref: p.ref }, bus)));
    for (const w of waiters) expect(await w.next()).toBe("ready");
    p.close();
    let sent = 0, x = 12345;
    const end = performance.now() + 3_000;
    while (performance.now() < end) {
      x = (x * 1103515245 + 12345) >>> 0;
      const burst = 1 + (x % 8);
      for (let i = 0; i < burst; i++, sent++) main.send(to, new Uint8Array([1]));
      const pause = (x >>> 8) % 3;
      if (pause === 2) await sleep(1 + ((x >>> 12) % 2));
      else if (pause === 1) { const t = performance.now() + ((x >>> 12) % 200) / 1000; while (performance.now() < t); }
    }
    for (let i = 0; i < n; i++) main.send(to, new Uint8Array([255]));
    const results = await Promise.all(waiters.map((w) => w.next<{ took: number; longest: number }>(20_000)));
    expect(results.reduce((t, r) => t + r.took, 0)).toBe(sent);
    // pauses are at most 2 ms: a wait of a second slept through sends (its timeout is 5 s)
    for (const r of results) expect(r.longest).toBeLessThan(1_000);
  }, 30_000);

  it("a worker terminated while it spins in wait() gives its place among the spinners back", async () => {
    // the worker stops where a spinning wait() would be, counted and flagged;
    // bus.watch's thread_exit must take its count back, or spinning would
    // stay off for every other thread
    const bus = await newBus();
    const spinners = (coreOf(bus).ex.bus_root() + 76) >>> 2;
    const i32 = new Int32Array(coreOf(bus).memory.buffer);
    const p = bus.connect();
    const w = start("threads-spinner.mjs", { ref: p.ref }, bus);
    expect(await inbox(w).next<{ step: string }>()).toEqual({ step: "spinning" });
    expect(Atomics.load(i32, spinners)).toBe(1);
    const exited = new Promise((resolve) => w.once("exit", resolve));
    await w.terminate();
    await exited;
    await sleep(10); // the exit listener of bus.watch has run
    expect(Atomics.load(i32, spinners)).toBe(0);
    // and a wait() that spins leaves neither count nor flag behind
    const q = bus.connect();
    expect(q.wait(1)).toBe(false);
    expect(Atomics.load(i32, spinners)).toBe(0);
    expect(Atomics.load(i32, (coreOf(bus).ctx + 172) >>> 2)).toBe(0);
    p.close();
  });

  it("await peer.readable() on the main thread resolves when a worker sends", async () => {
    const bus = await newBus();
    const main = bus.connect();
    const q = bus.connect();
    const toMain = main.transfer(4, q);
    const agent = new Agent(bus);
    expect(await agent.adopt(q.ref, "q")).toBeNull();
    q.close(); // only the worker uses q now
    let resolved = false;
    const ready = main.readable().then(() => { resolved = true; });
    await sleep(50);
    expect(resolved).toBe(false);
    // the worker's send does not run on this thread: only the wake word can
    // tell us (well before the 1 s re-check of an unwoken Atomics.waitAsync)
    const t0 = performance.now();
    await agent.call("q", "send", toMain, bytes("from a worker"));
    await within(ready, 5_000, "readable()");
    expect(performance.now() - t0).toBeLessThan(900);
    expect(resolved).toBe(true);
    const m = main.recv();
    expect(m?.type).toBe("data");
    expect(m?.destination).toBe(4);
    expect(text(m!.payload.slice())).toBe("from a worker");
    m!.release();
  });

  it("an AbortSignal aborting peer.readable() on a shared bus rejects it with the signal's reason", async () => {
    const bus = await newBus();
    const main = bus.connect();
    const q = bus.connect();
    const toMain = main.transfer(4, q);
    const agent = new Agent(bus);
    expect(await agent.adopt(q.ref, "q")).toBeNull();
    const controller = new AbortController();
    const reason = new Error("stop waiting");
    const ready = main.readable(controller.signal);
    const outcome = ready.then(() => "resolved", (e) => e);
    await sleep(30);
    controller.abort(reason);
    expect(await within(outcome, 2_000, "aborted readable()")).toBe(reason);
    // nothing was consumed, and a later send from the worker is still seen
    expect(main.recv()).toBeNull();
    await agent.call("q", "send", toMain, bytes("later"));
    await within(main.readable(), 5_000, "readable() after an abort");
    const m = main.recv();
    expect(text(m!.payload.slice())).toBe("later");
    m!.release();
  });

  it("for await (const m of peer) on the main thread receives a worker's messages in order", async () => {
    const bus = await newBus();
    const main = bus.connect();
    const q = bus.connect();
    const toMain = main.transfer(4, q);
    const count = 300;
    const w = inbox(start("threads-sender.mjs", { ref: q.ref, target: toMain, count, burst: 25, pauseMs: 3 }, bus));
    const seqs: number[] = [];
    let intact = true;
    const loop = (async () => {
      for await (const m of main) {
        expect(m.type).toBe("data");
        expect(m.destination).toBe(4);
        const p = m.payload;
        const seq = new DataView(p.buffer, p.byteOffset, p.byteLength).getUint32(0, true);
        if (p.length !== 4 + (seq % 61)) intact = false;
        for (let i = 4; i < p.length; i++) if (p[i] !== ((seq + i) & 255)) intact = false;
        seqs.push(seq);
        m.release();
        if (seqs.length === count) break;
      }
    })();
    await within(loop, 10_000, `for await (got ${seqs.length} of ${count})`);
    expect(seqs).toEqual(Array.from({ length: count }, (_, i) => i));
    expect(intact).toBe(true);
    expect(await w.next<{ sent: number }>()).toEqual({ sent: count });
    expect(main.recv()).toBeNull();
  });
});

// ---------------------------------------------------------------------------

describe("one peer, several threads", () => {
  it("three workers sending to and receiving from one peer get every message exactly once; the last close disconnects it", async () => {
    const bus = await newBus();
    const p = bus.connect();
    const watcher = bus.connect();
    // p's node 4 exists before the workers start; the watcher holds a handle to it
    const toP = p.transfer(4, watcher);
    const nWorkers = 3, perWorker = 300;
    const ctl = new SharedArrayBuffer(16);
    const threads = Array.from({ length: nWorkers }, (_, index) =>
      start("threads-shared-peer.mjs", { ref: p.ref, index, node: 4, perWorker, nWorkers, ctl }, bus));
    const ws = threads.map(inbox);
    const results = await Promise.all(ws.map((w) => w.next<{ index: number; got: [number, number, number][]; errors: string[] }>(15_000)));
    for (const r of results) {
      expect(r.errors, `worker ${r.index}`).toEqual([]);
      expect(r.got.length, `worker ${r.index} received a share`).toBeGreaterThan(0);
      expect(r.got.every((g) => g[2] === 1), `worker ${r.index}: payloads intact`).toBe(true);
      // what one thread receives from one sender is in the sender's order
      for (let s = 0; s < nWorkers; s++) {
        const q = r.got.filter((g) => g[0] === s).map((g) => g[1]);
        for (let i = 1; i < q.length; i++) expect(q[i]).toBeGreaterThan(q[i - 1]);
      }
    }
    const all = results.flatMap((r) => r.got.map((g) => `${g[0]}:${g[1]}`)).sort();
    const want: string[] = [];
    for (let s = 0; s < nWorkers; s++) for (let q = 0; q < perWorker; q++) want.push(`${s}:${q}`);
    expect(all).toEqual(want.sort());
    expect(p.recv()).toBeNull();
    expect(p.stats()).toMatchObject({ slices: 0, bytes: 0, liveSlices: 0 });

    // close every reference, the main thread's first: the peer lives while any is open
    const workerRefs = ws.map((w, i) => ({ w, worker: threads[i] }));
    p.close();
    expectBus1(() => p.recv(), "EBADF");
    for (const { w, worker } of workerRefs.slice(0, nWorkers - 1)) {
      worker.postMessage("close");
      expect(await w.next()).toBe("closed");
      expect(watcher.send(toP, bytes("still there")).errors).toEqual([null]);
      expect(watcher.recv()).toBeNull();
    }
    const last = workerRefs[nWorkers - 1];
    last.worker.postMessage("close");
    expect(await last.w.next()).toBe("closed");
    // the last close disconnected it: its node is destroyed
    expect(watcher.wait(2_000)).toBe(true);
    const note = watcher.recv();
    expect(note?.type).toBe("node-destroy");
    expect(note?.destination).toBe(toP);
    expectBus1(() => watcher.send(toP, bytes("gone?")), "EHOSTUNREACH");
    expectBus1(() => bus.adopt(p.ref), "ESHUTDOWN");
  });
});

// ---------------------------------------------------------------------------

describe("peer references across threads", () => {
  it("adopting a disconnected peer's ref in a worker throws Bus1Error ESHUTDOWN", async () => {
    const bus = await newBus();
    const agent = new Agent(bus);
    // disconnected explicitly, while the worker holds a reference
    const a = bus.connect();
    expect(await agent.adopt(a.ref, "a")).toBeNull();
    a.disconnect();
    await agent.fails("ESHUTDOWN", "a", "recv");
    const e1 = await agent.adopt(a.ref, "a2");
    expect(e1).toMatchObject({ bus1: true, code: "ESHUTDOWN" });
    // disconnected because every reference, the worker's last, was closed
    const b = bus.connect();
    expect(await agent.adopt(b.ref, "b")).toBeNull();
    b.close();
    await agent.call("b", "close");
    const e2 = await agent.adopt(b.ref, "b2");
    expect(e2).toMatchObject({ bus1: true, code: "ESHUTDOWN" });
    expectBus1(() => bus.adopt(b.ref), "ESHUTDOWN");
    // a second worker cannot adopt it either
    const other = new Agent(bus);
    expect(await other.adopt(a.ref, "a")).toMatchObject({ bus1: true, code: "ESHUTDOWN" });
    expect(await other.adopt(b.ref, "b")).toMatchObject({ bus1: true, code: "ESHUTDOWN" });
  });

  it("calls on a closed reference in a worker throw EBADF while other references to the peer keep working", async () => {
    const bus = await newBus();
    const p = bus.connect();
    const q = bus.connect();
    const toP = p.transfer(4, q);
    const agent = new Agent(bus);
    expect(await agent.adopt(p.ref, "x")).toBeNull();
    expect(await agent.adopt(p.ref, "y")).toBeNull();
    await agent.call("x", "close");
    await agent.fails("EBADF", "x", "recv");
    await agent.fails("EBADF", "x", "send", 4, bytes("no"));
    await agent.fails("EBADF", "x", "wait", 0);
    await agent.fails("EBADF", "x", "readable");
    await agent.fails("EBADF", "x", "query");
    await agent.fails("EBADF", "x", "transfer", 4);
    expect(await agent.call("x", "close")).toBeNull(); // closing twice does nothing
    // the worker's other reference works
    expect(q.send(toP, bytes("one")).errors).toEqual([null]);
    expect(await agent.call("y", "wait", 2_000)).toBe(true);
    const m1 = await agent.call<Plain>("y", "recv");
    expect(m1).toMatchObject({ type: "data", destination: 4 });
    expect(text(m1.bytes)).toBe("one");
    // and so does the main thread's
    expect(q.send(toP, bytes("two")).errors).toEqual([null]);
    const m2 = p.recv();
    expect(text(m2!.payload.slice())).toBe("two");
    m2!.release();
    await agent.call("y", "send", 4, bytes("three"));
    const m3 = p.recv();
    expect(text(m3!.payload.slice())).toBe("three");
    m3!.release();
    // closing the main thread's reference leaves the worker's working
    p.close();
    expectBus1(() => p.recv(), "EBADF");
    expect(q.send(toP, bytes("four")).errors).toEqual([null]);
    expect(await agent.call("y", "wait", 2_000)).toBe(true);
    expect(text((await agent.call<Plain>("y", "recv")).bytes)).toBe("four");
  });
});

// ---------------------------------------------------------------------------

describe("handles across threads", () => {
  it("a worker receives a message carrying handles and sends to them", async () => {
    const bus = await newBus();
    const main = bus.connect();
    const w = bus.connect();
    const toW = w.transfer(4, main);
    const agent = new Agent(bus);
    expect(await agent.adopt(w.ref, "w")).toBeNull();
    w.close();
    main.send(toW, bytes("here are two nodes"), { handles: [8, 12] });
    expect(await agent.call("w", "wait", 2_000)).toBe(true);
    const m = await agent.call<Plain>("w", "recv");
    expect(m.type).toBe("data");
    expect(text(m.bytes)).toBe("here are two nodes");
    expect(m.handles).toHaveLength(2);
    const [h8, h12] = m.handles;
    expect(isRemoteId(h8)).toBe(true);
    expect(isRemoteId(h12)).toBe(true);
    expect(h8).not.toBe(h12);
    await agent.call("w", "send", h12, bytes("to 12"));
    await agent.call("w", "send", h8, bytes("to 8"));
    const got = [main.recv(), main.recv()].map((x) => {
      const r = { destination: x!.destination, text: text(x!.payload.slice()) };
      x!.release();
      return r;
    });
    expect(got).toEqual([{ destination: 12, text: "to 12" }, { destination: 8, text: "to 8" }]);
  });

  it("a worker transfers a handle into a peer that another worker uses, which then sends to it", async () => {
    const bus = await newBus();
    const owner = bus.connect();
    const px = bus.connect(), py = bus.connect();
    const hx = owner.transfer(16, px);
    const ax = new Agent(bus), ay = new Agent(bus);
    expect(await ax.adopt(px.ref, "x")).toBeNull();
    expect(await ax.adopt(py.ref, "y")).toBeNull(); // x's thread needs a Peer for `to`
    expect(await ay.adopt(py.ref, "y")).toBeNull();
    px.close();
    py.close();
    const hy = await ax.call<number>("x", "transfer", hx, { $peer: "y" });
    expect(isRemoteId(hy)).toBe(true);
    await ax.call("y", "close"); // y is now used by the second worker only
    await ay.call("y", "send", hy, bytes("via y"));
    const m = owner.recv();
    expect(m?.destination).toBe(16);
    expect(text(m!.payload.slice())).toBe("via y");
    m!.release();
    // the handle was installed with one user-reference: releasing it once makes it gone
    await ay.call("y", "release", hy);
    await ay.fails("ENXIO", "y", "send", hy, bytes("gone"));
  });

  it("destroy in one worker produces node-destroy notifications received in other workers", async () => {
    const bus = await newBus();
    const po = bus.connect(), pa = bus.connect(), pb = bus.connect();
    const ha = po.transfer(20, pa), hb = po.transfer(20, pb);
    const [ao, aa, ab] = [new Agent(bus), new Agent(bus), new Agent(bus)];
    expect(await ao.adopt(po.ref, "o")).toBeNull();
    expect(await aa.adopt(pa.ref, "a")).toBeNull();
    expect(await ab.adopt(pb.ref, "b")).toBeNull();
    for (const p of [po, pa, pb]) p.close();
    // both holders block in wait() before the owner destroys
    const waitA = aa.call<boolean>("a", "wait", 5_000);
    const waitB = ab.call<boolean>("b", "wait", 5_000);
    await sleep(50);
    await ao.call("o", "destroy", [20]);
    expect(await waitA).toBe(true);
    expect(await waitB).toBe(true);
    expect(await aa.call("a", "recv")).toMatchObject({ type: "node-destroy", destination: ha, offset: -1, bytes: [], handles: [] });
    expect(await ab.call("b", "recv")).toMatchObject({ type: "node-destroy", destination: hb, offset: -1, bytes: [], handles: [] });
    expect(await ao.call("o", "recv")).toMatchObject({ type: "node-destroy", destination: 20 });
    await aa.fails("EHOSTUNREACH", "a", "send", ha, bytes("x"));
    await ab.fails("EHOSTUNREACH", "b", "send", hb, bytes("x"));
    expect(await aa.call("a", "recv")).toBeNull();
  });

  it("the owner gets node-release when the last remote holder, in a worker, releases", async () => {
    const bus = await newBus();
    const owner = bus.connect(), pa = bus.connect(), pb = bus.connect();
    const ha = owner.transfer(24, pa), hb = owner.transfer(24, pb);
    const aa = new Agent(bus), ab = new Agent(bus);
    expect(await aa.adopt(pa.ref, "a")).toBeNull();
    expect(await ab.adopt(pb.ref, "b")).toBeNull();
    pa.close();
    pb.close();
    await aa.call("a", "release", ha);
    expect(owner.recv()).toBeNull(); // b still holds one
    const released = owner.readable();
    await ab.call("b", "release", hb);
    await within(released, 5_000, "readable() for node-release");
    const m = owner.recv();
    expect(m?.type).toBe("node-release");
    expect(m?.destination).toBe(24);
    expect(m?.offset).toBe(-1);
    expect(owner.recv()).toBeNull();
  });
});

// ---------------------------------------------------------------------------

describe("quotas across threads", () => {
  it("two workers of different users flooding one peer both hit EDQUOT with at most about half of its limit each", async () => {
    const maxSlices = 3000;
    const bus = await newBus({ limits: { maxSlices } });
    const r = bus.connect({ user: 3 });
    const s1 = bus.connect({ user: 1 }), s2 = bus.connect({ user: 2 });
    const t1 = r.transfer(4, s1), t2 = r.transfer(4, s2);
    const baseline = r.stats();
    const ctl = new SharedArrayBuffer(8);
    const size = 8;
    const ws = [s1, s2].map((s, i) => inbox(start("threads-flood.mjs", {
      ref: s.ref, target: [t1, t2][i], nFlooders: 2, ctl, size, max: maxSlices + 1,
    }, bus)));
    const [f1, f2] = await Promise.all(ws.map((w) => w.next<{ sent: number; code: string | null; message: string | null }>()));
    for (const f of [f1, f2]) {
      expect(f.code, f.message ?? "").toBe("EDQUOT");
      expect(f.sent).toBeGreaterThan(0);
      expect(f.sent).toBeLessThanOrEqual(maxSlices / 2);
    }
    const st = r.stats();
    expect(st.slices - baseline.slices).toBe(f1.sent + f2.sent);
    expect(st.bytes - baseline.bytes).toBe((f1.sent + f2.sent) * size);
    expect(st.slices).toBeLessThanOrEqual(maxSlices);
    // neither flooder starved a third user
    const third = bus.connect({ user: 4 });
    const t3 = r.transfer(4, third);
    expect(third.send(t3, new Uint8Array(size)).errors).toEqual([null]);
    // drain and release everything: usage is back where it started
    let n = 0;
    for (let m = r.recv(); m; m = r.recv()) {
      expect(m.type).toBe("data");
      m.release();
      n++;
    }
    expect(n).toBe(f1.sent + f2.sent + 1);
    expect(r.stats()).toMatchObject({ slices: baseline.slices, bytes: baseline.bytes, objects: 0, liveSlices: 0, handles: baseline.handles });
    expect(r.stats().slices).toBe(0);
    expect(r.stats().bytes).toBe(0);
  });
});

// ---------------------------------------------------------------------------

describe("bus memory", () => {
  it("a worker's unreleased payload view stays intact while other workers' large sends grow the shared memory", async () => {
    const bus = await newBus({ maxMemoryBytes: 256 << 20 });
    const holder = bus.connect(), sink = bus.connect(), main = bus.connect();
    const senders = [bus.connect(), bus.connect()];
    const toHolder = holder.transfer(4, main);
    const toSink = senders.map((s) => sink.transfer(4, s));
    const ctl = new SharedArrayBuffer(8);
    const nSenders = senders.length, count = 6, size = 512 * 1024;
    const h = inbox(start("threads-memory.mjs", { ref: holder.ref, role: "holder", ctl, nSenders }, bus));
    // the held payload, with the workers' pattern (seed 200)
    const held = new Uint8Array(64 * 1024);
    held[0] = 200;
    for (let i = 1; i < held.length; i++) held[i] = (200 * 131 + i * 7 + (i >> 9)) & 255;
    main.send(toHolder, held);
    const holding = await h.next<{ step: string; length: number; startLength: number }>();
    expect(holding).toMatchObject({ step: "holding", length: held.length });
    const before = bus.handle.memory.buffer.byteLength;
    const ss = senders.map((s, index) => inbox(start("threads-memory.mjs", {
      ref: s.ref, role: "sender", ctl, nSenders, target: toSink[index], count, size, index,
    }, bus)));
    expect(await Promise.all(ss.map((s) => s.next<{ sent: number }>()))).toEqual([{ sent: count }, { sent: count }]);
    const v = await h.next<{
      step: string; initialBad: number; badDuring: number; finalBad: number; freshBad: number; checks: number;
      startLength: number; endLength: number; viewLength: number;
    }>();
    expect(v.step).toBe("verified");
    expect(v.initialBad).toBe(0);
    expect(v.badDuring).toBe(0);
    expect(v.finalBad).toBe(0);
    expect(v.freshBad).toBe(0);
    expect(v.viewLength).toBe(held.length);
    // the memory grew by several MiB while the view was held
    const after = bus.handle.memory.buffer.byteLength;
    expect(after - before).toBeGreaterThanOrEqual(4 << 20);
    expect(v.endLength).toBeGreaterThan(v.startLength);
    // the large payloads arrived intact too
    let got = 0;
    for (let m = sink.recv(); m; m = sink.recv()) {
      const p = m.payload, seed = p[0];
      expect(p.length).toBe(size);
      let bad = 0;
      for (let i = 1; i < p.length; i++) if (p[i] !== ((seed * 131 + i * 7 + (i >> 9)) & 255)) bad++;
      expect(bad).toBe(0);
      m.release();
      got++;
    }
    expect(got).toBe(nSenders * count);
  });

  it("running out of maxMemoryBytes is Bus1Error ENOMEM, not EDQUOT or a trap, and the bus works afterwards", async () => {
    const bus = await newBus({
      maxMemoryBytes: 4 << 20,
      limits: { maxSlices: 1 << 20, maxInflightBytes: 2 ** 32 - 1, maxHandles: 1 << 20 },
    });
    const a = bus.connect(), b = bus.connect();
    const toB = b.transfer(4, a);
    const payload = new Uint8Array(64 * 1024).fill(7);
    let sent = 0;
    let failure: unknown = null;
    for (let i = 0; i < 1000; i++) {
      try {
        a.send(toB, payload);
        sent++;
      } catch (e) {
        failure = e;
        break;
      }
    }
    expect(failure, `no failure after ${sent} sends of 64 KiB`).toBeInstanceOf(Bus1Error);
    expect((failure as Bus1Error).code, (failure as Error).message).toBe("ENOMEM");
    expect(sent).toBeGreaterThan(10);
    expect(sent).toBeLessThan(64);
    // the failed send changed nothing, and the bus still works
    expect(b.stats().slices).toBe(sent);
    expect(a.query()).toMatchObject({ maxSlices: 1 << 20 });
    for (let i = 0; i < 4; i++) {
      const m = b.recv();
      expect(m?.payload.length).toBe(payload.length);
      m!.release();
    }
    expect(a.send(toB, payload).errors).toEqual([null]);
    // a worker attached to the same bus can use it too
    const agent = new Agent(bus);
    expect(await agent.adopt(a.ref, "a")).toBeNull();
    await agent.call("a", "send", toB, new Uint8Array(1024));
    let n = 0;
    for (let m = b.recv(); m; m = b.recv()) {
      n++;
      m.release();
    }
    expect(n).toBe(sent - 4 + 2);
    expect(b.stats()).toMatchObject({ slices: 0, bytes: 0 });
  });
});

describe("host objects across threads", () => {
  it("a structured-cloneable object sent by a worker arrives as a clone; a function arrives as EOPNOTSUPP in its place", async () => {
    const bus = await Bus.create();
    const receiver = bus.connect(), sender = bus.connect();
    const to = receiver.transfer(4, sender);
    const w = new Worker(`
      const { workerData, parentPort } = require("node:worker_threads");
      import("bus1-wasm").then(async ({ Bus }) => {
        const bus = await Bus.attach(workerData.handle);
        const peer = bus.adopt(workerData.ref);
        peer.send(workerData.to, new Uint8Array([1]), { objects: [{ a: 1, list: [2, 3] }, () => 4, new Uint8Array([5])] });
        parentPort.postMessage("sent");
      });`, { eval: true, workerData: { handle: bus.handle, ref: sender.ref, to } });
    try {
      bus.watch(w);
      await new Promise((resolve, reject) => { w.once("message", resolve); w.once("error", reject); });
      const m = receiver.recv()!;
      expect(m.objects[0]).toEqual({ a: 1, list: [2, 3] });
      expect(m.objects[1]).toBeInstanceOf(Bus1Error);
      expect((m.objects[1] as Bus1Error).code).toBe("EOPNOTSUPP");
      expect(m.objects[2]).toEqual(new Uint8Array([5]));
      m.release();
      expect(receiver.stats().objects).toBe(0);
    } finally {
      await w.terminate();
      bus.close();
    }
  });
});

describe("readable() without Atomics.waitAsync", () => {
  it("still resolves when a worker sends, by looking again every few milliseconds", async () => {
    const bus = await Bus.create();
    const receiver = bus.connect(), sender = bus.connect();
    const to = receiver.transfer(4, sender);
    const saved = Object.getOwnPropertyDescriptor(Atomics, "waitAsync");
    delete (Atomics as unknown as { waitAsync?: unknown }).waitAsync;
    let w: Worker | undefined;
    try {
      const ready = receiver.readable();
      w = new Worker(`
        const { workerData } = require("node:worker_threads");
        import("bus1-wasm").then(async ({ Bus }) => {
          const bus = await Bus.attach(workerData.handle);
          bus.adopt(workerData.ref).send(workerData.to, new Uint8Array([7]));
          bus.close();
        });`, { eval: true, workerData: { handle: bus.handle, ref: sender.ref, to } });
      bus.watch(w);
      await Promise.race([ready, new Promise((_, reject) => setTimeout(() => reject(new Error("readable() never resolved")), 10_000))]);
      expect(receiver.recv()!.payload[0]).toBe(7);
    } finally {
      if (saved) Object.defineProperty(Atomics, "waitAsync", saved);
      await w?.terminate();
      bus.close();
    }
  });
});
