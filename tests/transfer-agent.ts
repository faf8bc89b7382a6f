// Shared vocabulary of the suites of host objects that move between threads
// (transfer-threads.test.ts, transfer-hostile.test.ts): an Agent is a worker
// (workers/transfer-agent.mjs) attached to the bus that does what a test asks,
// one request at a time. Workers, ports and buses a test made are let go of
// after it.
import { afterEach } from "vitest";
import { Worker, MessageChannel, type MessagePort } from "node:worker_threads";
import { Bus, type Peer } from "bus1-wasm";

export const workers: Worker[] = [];
export const buses: Bus[] = [];
export const ports: MessagePort[] = [];

afterEach(async () => {
  await Promise.all(workers.splice(0).map((w) => w.terminate()));
  for (const p of ports.splice(0)) p.close();
  for (const b of buses.splice(0)) b.close();
});

export const enc = (s: string) => new TextEncoder().encode(s);
export const text = (m: { payload: Uint8Array }) => new TextDecoder().decode(m.payload.slice());

export function within<T>(p: Promise<T>, ms: number, what: string): Promise<T> {
  let timer: ReturnType<typeof setTimeout>;
  return Promise.race([
    p.finally(() => clearTimeout(timer)),
    new Promise<T>((_, reject) => { timer = setTimeout(() => reject(new Error(`${what}: not within ${ms} ms`)), ms); }),
  ]);
}

export function channel() {
  const c = new MessageChannel();
  ports.push(c.port1, c.port2);
  return c;
}

export function closed(port: MessagePort): Promise<void> {
  return new Promise((resolve) => port.once("close", () => resolve()));
}

export type Obj = { kind: string; n?: number; code?: string; message?: string; bytes?: number[] };
export type Got = { type: string; text: string; objects: Obj[] } | null;

export class Agent {
  private seq = 0;
  private readonly pending = new Map<number, { resolve: (v: any) => void; reject: (e: unknown) => void }>();
  readonly ready: Promise<void>;
  readonly worker: Worker;
  readonly exited: Promise<number>;
  died: unknown = null;

  constructor(readonly bus: Bus, watch = true) {
    const w = new Worker(new URL("./workers/transfer-agent.mjs", import.meta.url), { workerData: { handle: bus.handle } });
    workers.push(w);
    if (watch) bus.watch(w);
    this.worker = w;
    let onReady!: () => void, onFail!: (e: unknown) => void;
    this.ready = new Promise((resolve, reject) => { onReady = resolve; onFail = reject; });
    this.ready.catch(() => {});
    this.exited = new Promise((r) => w.once("exit", (code) => r(code)));
    w.on("message", (m: { id: number; value?: unknown; error?: { code: string | null; message: string } }) => {
      if (m.id === 0) return onReady();
      const p = this.pending.get(m.id);
      if (!p) return;
      this.pending.delete(m.id);
      if (m.error) p.reject(Object.assign(new Error(m.error.message), { code: m.error.code }));
      else p.resolve(m.value);
    });
    const fail = (e: unknown) => { onFail(e); for (const p of this.pending.values()) p.reject(e); this.pending.clear(); };
    w.on("error", (e) => { this.died = e; fail(e); });
    w.on("exit", () => fail(new Error("agent exited")));
  }

  async do<T = any>(op: string, args: Record<string, unknown> = {}, ms = 10_000): Promise<T> {
    await within(this.ready, 10_000, "the agent attaching");
    const id = ++this.seq;
    return within(new Promise<T>((resolve, reject) => {
      this.pending.set(id, { resolve, reject });
      this.worker.postMessage({ id, op, ...args });
    }), ms, `agent ${op}`);
  }

  adopt(peer: Peer, as: string): Promise<void> {
    return this.do("adopt", { ref: peer.ref, as });
  }

  recv(peer: string, wait = 5_000): Promise<Got> {
    return this.do("recv", { peer, wait });
  }
}

export async function newBus(options?: Parameters<typeof Bus.create>[0]): Promise<Bus> {
  const bus = await Bus.create(options);
  buses.push(bus);
  return bus;
}

/** A bus; `a` sends from the main thread; `b`, received in a worker, owns node 4 (a holds hb). */
export async function setup() {
  const bus = await newBus();
  const a = bus.connect(), b = bus.connect();
  const hb = b.transfer(4, a);
  const agent = new Agent(bus);
  await agent.adopt(b, "b");
  return { bus, a, b, hb, agent };
}

/** As setup(), with a second receiver `c` (node 4, a holds hc) in the same worker. */
export async function setupTwo() {
  const { bus, a, b, hb, agent } = await setup();
  const c = bus.connect();
  const hc = c.transfer(4, a);
  await agent.adopt(c, "c");
  return { bus, a, b, c, hb, hc, agent };
}
