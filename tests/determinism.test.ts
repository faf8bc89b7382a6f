/**
 * Determinism: a bus made with `shared: false` gives the same IDs, offsets,
 * orders and errors for the same calls in the same order (API.md).
 *
 * A seeded PRNG drives a few thousand operations of every kind; everything
 * the bus hands back goes into a trace. Two buses fed the same seed must give
 * identical traces, also when their calls interleave (no state shared between
 * buses); another seed must give a different trace, so the comparison can fail.
 */
import { describe, expect, it } from "vitest";
import { Bus, Bus1Error, HANDLE_INVALID } from "bus1-wasm";
// the benchmarks' seeded PRNG (mulberry32, uniform in [0, 1))
// @ts-expect-error: plain JavaScript, no declarations
import { random as mulberry32 } from "../bench/harness.js";

type Peer = ReturnType<Bus["connect"]>;
type Message = NonNullable<ReturnType<Peer["recv"]>>;

const STEPS = 4000;
/** Connected at once; disconnected peers stay in the list (their calls are ESHUTDOWN). */
const MAX_PEERS = 6;
/** Caller-chosen node IDs (bits 0 and 1 clear). */
const CALLER_IDS = [4, 8, 12, 16, 20, 24];


/** FNV-1a over the bytes: keeps the trace short for long payloads. */
function fnv1a(bytes: Uint8Array): string {
  let h = 0x811c9dc5;
  for (let i = 0; i < bytes.length; i++) h = Math.imul(h ^ bytes[i], 0x01000193) >>> 0;
  return h.toString(16).padStart(8, "0");
}

function hex(bytes: Uint8Array): string {
  return Array.from(bytes, (b) => b.toString(16).padStart(2, "0")).join("");
}

interface PeerState {
  name: string;
  peer: Peer;
  /** IDs this peer may name: caller-chosen ones plus every ID it was handed. */
  ids: number[];
  /** Received, not yet released. */
  live: Message[];
  /** Released (or flushed): releasing again is an error worth tracing. */
  old: Message[];
  disconnected: boolean;
}

/** One seeded run of operations on one bus, recording what the bus answers. */
class Scenario {
  readonly trace: string[] = [];
  private readonly rand: () => number;
  private readonly peers: PeerState[] = [];
  private sent = 0;

  constructor(private readonly bus: Bus, seed: number) {
    this.rand = mulberry32(seed) as () => number;
    for (let i = 0; i < 4; i++) this.connect();
  }

  private int(n: number): number {
    return Math.floor(this.rand() * n);
  }

  private pick<T>(list: readonly T[]): T {
    return list[this.int(list.length)];
  }

  private record(line: string): void {
    this.trace.push(line);
  }

  /** Runs a call that returns a value; a Bus1Error becomes a trace line, anything else fails the test. */
  private call<T>(label: string, fn: () => T): T | undefined {
    try {
      return fn();
    } catch (e) {
      if (!(e instanceof Bus1Error)) throw e;
      this.record(`${label} ! ${e.code}`);
      return undefined;
    }
  }

  /** Runs a call that returns nothing; true if it succeeded, which is traced too. */
  private act(label: string, fn: () => void): boolean {
    const ok = this.call(label, () => {
      fn();
      return true;
    });
    if (ok) this.record(label);
    return ok === true;
  }

  /** A handle ID for `p` to use: mostly known ones, sometimes stale or invalid. */
  private handleFor(p: PeerState): number {
    const r = this.rand();
    if (r < 0.03) return HANDLE_INVALID;
    if (r < 0.06) return (1000 + this.int(100)) * 8 + 3; // probably never handed out
    return this.pick(p.ids);
  }

  private learn(p: PeerState, id: number): void {
    if (id !== HANDLE_INVALID && !p.ids.includes(id)) p.ids.push(id);
  }

  private payload(): Uint8Array {
    const n = this.sent++;
    const size = this.rand() < 0.9 ? this.int(200) : this.int(9000);
    const bytes = new Uint8Array(size);
    for (let i = 0; i < size; i++) bytes[i] = (n * 31 + i * 7) & 0xff;
    return bytes;
  }

  private describe(m: Message): string {
    const body = m.payload.length <= 24 ? hex(m.payload) : `${m.payload.length}B:${fnv1a(m.payload)}`;
    return `${m.type} dst=${m.destination} off=${m.offset} cont=${m.continue} h=[${m.handles}] o=${m.objects.length} ${body}`;
  }

  private connect(): void {
    if (this.peers.filter((x) => !x.disconnected).length >= MAX_PEERS) return;
    const user = this.int(3);
    const peer = this.call(`connect u${user}`, () => this.bus.connect({ user }));
    if (!peer) return;
    const name = `p${this.peers.length}`;
    this.peers.push({ name, peer, ids: [...CALLER_IDS], live: [], old: [], disconnected: false });
    this.record(`connect ${name} u${user}`);
  }

  private send(p: PeerState): void {
    const count = this.rand() < 0.1 ? 0 : 1 + this.int(this.rand() < 0.8 ? 1 : 3);
    const dsts = Array.from({ length: count }, () => this.handleFor(p));
    const handles = this.rand() < 0.3 ? Array.from({ length: 1 + this.int(2) }, () => this.handleFor(p)) : [];
    const objects = this.rand() < 0.1 ? [{ n: this.sent }] : [];
    const cont = this.rand() < 0.5;
    const bytes = this.payload();
    const payload = this.rand() < 0.2 && bytes.length > 1 ? [bytes.subarray(0, 1), bytes.subarray(1)] : bytes;
    const label = `${p.name} send [${dsts}] h=[${handles}] o=${objects.length} ${bytes.length}B${cont ? " cont" : ""}`;
    const r = this.call(label, () => p.peer.send(dsts, payload, { handles, objects, continue: cont }));
    if (r) this.record(`${label} -> [${r.errors.map((e) => e ?? "ok")}]`);
  }

  private setSeed(p: PeerState): void {
    const bytes = this.payload();
    const handles = this.rand() < 0.5 ? [this.handleFor(p)] : [];
    const label = `${p.name} seed h=[${handles}] ${bytes.length}B`;
    this.act(label, () => p.peer.send([], bytes, { handles, seed: true }));
  }

  private recv(p: PeerState, seed: boolean): void {
    const label = `${p.name} recv${seed ? " seed" : ""}`;
    const m = this.call(label, () => p.peer.recv(seed ? { seed: true } : undefined));
    if (m === undefined) return;
    if (m === null) {
      this.record(`${label} -> none`);
      return;
    }
    this.record(`${label} -> ${this.describe(m)}`);
    for (const id of m.handles) this.learn(p, id);
    if (m.type === "data" && !seed) p.live.push(m);
  }

  private releaseSlice(p: PeerState): void {
    const again = p.live.length === 0 || this.rand() < 0.05;
    const list = again ? p.old : p.live;
    if (list.length === 0) return;
    const i = this.int(list.length);
    const m = list[i];
    const label = `${p.name} release-slice ${m.offset}${again ? " again" : ""}`;
    this.act(label, () => m.release());
    if (!again) {
      p.live.splice(i, 1);
      p.old.push(m);
      if (p.old.length > 8) p.old.shift();
    }
  }

  private transfer(p: PeerState): void {
    const to = this.pick(this.peers);
    const src = this.handleFor(p);
    const label = `${p.name} transfer ${src} -> ${to.name}`;
    const id = this.call(label, () => p.peer.transfer(src, to.peer));
    if (id === undefined) return;
    this.record(`${label} = ${id}`);
    this.learn(to, id);
  }

  private release(p: PeerState): void {
    const id = this.handleFor(p);
    const label = `${p.name} release ${id}`;
    this.act(label, () => p.peer.release(id));
  }

  private destroy(p: PeerState): void {
    const nodes = Array.from({ length: this.int(3) }, () => (this.rand() < 0.8 ? this.pick(CALLER_IDS) : this.handleFor(p)));
    const releaseHandles = this.rand() < 0.5;
    const label = `${p.name} destroy [${nodes}]${releaseHandles ? " release" : ""}`;
    this.act(label, () => p.peer.destroy(nodes, { releaseHandles }));
  }

  private reset(p: PeerState): void {
    const flush = this.rand() < 0.5;
    const flushSeed = this.rand() < 0.3;
    const options = this.rand() < 0.5 ? { flush, flushSeed } : { flush, flushSeed, limits: { maxSlices: 4 + this.int(64), maxInflightBytes: 1024 * (1 + this.int(64)) } };
    if (!this.act(`${p.name} reset ${JSON.stringify(options)}`, () => p.peer.reset(options))) return;
    const q = this.call(`${p.name} query`, () => p.peer.query());
    if (q) this.record(`${p.name} query -> ${JSON.stringify(q)}`);
    if (flush) {
      p.old.push(...p.live);
      p.live = [];
    }
  }

  private disconnect(p: PeerState): void {
    p.disconnected ||= this.act(`${p.name} disconnect`, () => p.peer.disconnect());
  }

  step(): void {
    // Mostly live peers act; a disconnected one now and then (ESHUTDOWN).
    const connected = this.peers.filter((x) => !x.disconnected);
    if (connected.length < 3) this.connect();
    const p = this.rand() < 0.97 && connected.length > 0 ? this.pick(connected) : this.pick(this.peers);
    const r = this.rand();
    if (r < 0.36) this.send(p);
    else if (r < 0.64) this.recv(p, false);
    else if (r < 0.77) this.releaseSlice(p);
    else if (r < 0.85) this.transfer(p);
    else if (r < 0.9) this.release(p);
    else if (r < 0.945) this.destroy(p);
    else if (r < 0.96) this.setSeed(p);
    else if (r < 0.97) this.recv(p, true);
    else if (r < 0.985) this.reset(p);
    else if (r < 0.995) this.connect();
    else this.disconnect(p);
  }
}

async function runAlone(seed: number): Promise<string[]> {
  const bus = await Bus.create({ shared: false });
  try {
    const s = new Scenario(bus, seed);
    for (let i = 0; i < STEPS; i++) s.step();
    return s.trace;
  } finally {
    bus.close();
  }
}

/** Fails with the first line where the traces part, rather than a 4000-line diff. */
function expectSameTrace(a: string[], b: string[]): void {
  const n = Math.min(a.length, b.length);
  let i = 0;
  while (i < n && a[i] === b[i]) i++;
  const context = (t: string[]) => t.slice(Math.max(0, i - 3), i + 2);
  expect({ firstDifferenceAt: i, around: context(b) }).toEqual({
    firstDifferenceAt: Math.max(a.length, b.length),
    around: context(a),
  });
}

describe("a non-shared bus is deterministic", () => {
  const SEED = 0x5eed_b051;

  it("gives the same trace for the same seed on two buses", async () => {
    const first = await runAlone(SEED);
    const second = await runAlone(SEED);
    expectSameTrace(first, second);
  });

  it("gives the same trace when two buses run interleaved", async () => {
    const alone = await runAlone(SEED);
    const [busA, busB] = await Promise.all([Bus.create({ shared: false }), Bus.create({ shared: false })]);
    try {
      const a = new Scenario(busA, SEED);
      const b = new Scenario(busB, SEED);
      for (let i = 0; i < STEPS; i++) {
        a.step();
        b.step();
      }
      expectSameTrace(alone, a.trace);
      expectSameTrace(alone, b.trace);
    } finally {
      busA.close();
      busB.close();
    }
  });

  it("exercises the bus: messages, handles and errors all reach the trace", async () => {
    const trace = await runAlone(SEED);
    const received = trace.filter((l) => l.includes("-> data ")).length;
    const withHandles = trace.filter((l) => /-> data .* h=\[[^\]]/.test(l)).length;
    const notifications = trace.filter((l) => l.includes("-> node-")).length;
    const codes = new Set(trace.flatMap((l) => l.match(/! (E[A-Z]+)$/)?.slice(1) ?? []));
    expect(received).toBeGreaterThan(300);
    expect(withHandles).toBeGreaterThan(10);
    expect(notifications).toBeGreaterThan(5);
    expect(codes.size).toBeGreaterThanOrEqual(4);
  });

  it("gives a different trace for a different seed", async () => {
    const first = await runAlone(SEED);
    const other = await runAlone(SEED + 1);
    expect(other).not.toEqual(first);
  });
});
