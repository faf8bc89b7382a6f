/**
 * The seeded fuzzer of issue 8: valid and invalid calls of every Peer and Bus
 * method, with hostile arguments, checked against invariants after every step.
 *
 *   import { runFuzz } from "./fuzzer.mjs";
 *   const r = await runFuzz({ seed: 42, steps: 4000, kind: "private" });
 *   // r: { ok, seed, kind, steps, digest, counts, failure? }
 *
 * Plain ESM JavaScript, so that vitest (tests/fuzz.test.ts), the CLI
 * (tests/fuzz/run.mjs) and the worker threads of tests/fuzz-threads.test.ts
 * can all import it.
 *
 * What a step does: one call, chosen by a seeded PRNG (mulberry32, from
 * bench/harness.js), on a random reference (open, closed, or to a disconnected
 * peer), with arguments from generators that mix valid values with the edges
 * of every range (ID 0, 2^53 − 1, 2^53, −1, −0, NaN, ±∞, fractions, 2^32,
 * strings, bigints, null, objects), Proxies (of Uint8Arrays, arrays, option
 * objects; revoked ones), getters on option objects and on arrays, typed
 * arrays lying about their length, resizable and detached buffers, views into
 * the bus's own received payloads, and getters that call back into the bus
 * (send, recv, close, release, disconnect, even bus.close) in the middle of a
 * call.
 *
 * What every step checks:
 *  - anything thrown is a Bus1Error with a code from API.md's list (or the
 *    fuzzer's own FuzzThrow, thrown by one of its getters); a TypeError,
 *    RangeError, WebAssembly.RuntimeError or a call taking seconds is a failure;
 *  - nothing reports the bus broken (ESHUTDOWN "broken" / "core failed");
 *  - a call through a closed reference is EBADF; a call on a disconnected peer
 *    fails (stats and close excepted); a connected peer through an open
 *    reference never gives EBADF or ESHUTDOWN;
 *  - a model of what the fuzzer holds: its references, and per peer the
 *    received data slices it has not released. releaseSlice / message.release
 *    succeed exactly for slices the model holds; peer.stats().liveSlices equals
 *    the model's count; no counter of peer.stats() or bus.stats() is negative
 *    or absurd (> 2^31); bus.stats().peers lies between the connected peers and
 *    the peers the fuzzer still references;
 *  - the shape of what comes back: message fields, offsets (multiples of 8, not
 *    a live slice already), handle IDs (safe integers; a caller-chosen owner ID
 *    or MANAGED|REMOTE, SPEC §3: a data message's destination is always the
 *    receiver's owner ID), send results, query limits;
 *  - calls with arguments that are certainly invalid fail, calls that cannot
 *    fail (connect with a valid user, disconnect, reset with valid options,
 *    adopt of a live peer) succeed, adopt of a gone peer is ESHUTDOWN.
 * At the end every reference is closed and bus.stats() must be back at the
 * baseline taken after the bus was made and warmed up (usedBytes, peers,
 * records); then bus.close(). The warm-up makes everything a run may keep
 * for reuse (pooled peer records, user and share records, the thread's
 * reference table and argument scratch), so what is left is a leak.
 *
 * With `hostile: false` (CLI --plain) the arguments have no Proxies, getters
 * or odd buffers; with `keepGoing` (--keep-going) a wrong answer to a single
 * call is noted and the run goes on, so one run lists every kind of defect it
 * meets (model, memory and broken-bus failures still stop it).
 *
 * A private bus (kind "private") is deterministic (API.md), so a run replays
 * exactly from its seed and step count; `digest` hashes every call and its
 * outcome, so two runs can be compared. A failure reports the seed, the step
 * and the last operations.
 *
 * Agent mode (used by tests/workers/fuzz-agent.mjs): the same operations on
 * peers a worker thread holds alone on a shared bus, without bus-wide
 * expectations; a bus that reports itself broken stops the run (the caller
 * decides whether that was legitimate).
 */
import { Bus, Bus1Error } from "bus1-wasm";
import { random } from "../../bench/harness.js";

export const ERROR_CODES = new Set([
  "EAGAIN", "EBADF", "EBUSY", "EDQUOT", "EHOSTUNREACH", "EINVAL", "EMSGSIZE", "ENOMEM",
  "ENOTUNIQ", "ENXIO", "EOPNOTSUPP", "EPERM", "ERANGE", "EREMOTE", "ESHUTDOWN", "ESTALE",
]);

/** Users the fuzzer connects with (valid ones): the edges 0 and 2^31 − 1 included. */
export const USERS = Object.freeze([0, 1, 2, 2 ** 31 - 1]);
/** Peers alive at once (slots held); the warm-up makes as many, so pooled records count in the baseline. */
export const MAX_PEERS = 8;
/**
 * Open references at once. The thread's table of the references it holds
 * grows to the most it ever held (and is freed when the thread lets go): the
 * warm-up holds more than this, so that growth is in the baseline.
 */
export const MAX_REFS = 24;
export const DEFAULT_STEPS = 4000;
/** A single call taking longer than this is reported as a hang. */
export const SLOW_CALL_MS = 3000;
/** How many operations a failure report shows. */
const HISTORY = 20;
/** Caller-chosen IDs (bits 0 and 1 clear); 0 is the edge issue 8 is about, so it comes often. */
const CALLER_IDS = [0, 0, 0, 4, 8, 12, 16, 2 ** 31 - 4];
/** Counters above this are absurd (a negative number read as u32, or garbage). */
const ABSURD = 2 ** 31;
const U32_MAX = 2 ** 32 - 1;
const BROKEN = /broken|core failed|assertion/i;

/** Thrown by the fuzzer's own getters: it may come out of a call unchanged. */
export class FuzzThrow extends Error {
  constructor() {
    super("thrown by a fuzzer getter");
    this.name = "FuzzThrow";
  }
}

/** A broken invariant: stops the run. */
class FuzzFailure extends Error {
  constructor(message) {
    super(message);
    this.name = "FuzzFailure";
  }
}

/** Agent mode: the bus reported itself broken; the run stops. */
class BusBroken extends Error {
  constructor(message) {
    super(message);
    this.name = "BusBroken";
  }
}

// ---------------------------------------------------------------------------
// Values and their labels

const NAMED = new Map([
  [2 ** 53 - 1, "2^53-1"], [2 ** 53 - 2, "2^53-2"], [2 ** 53 - 3, "2^53-3"], [2 ** 53 - 4, "2^53-4"], [2 ** 53, "2^53"],
  [2 ** 53 + 8, "2^53+8"], [2 ** 32, "2^32"], [2 ** 32 - 1, "2^32-1"], [2 ** 32 + 4, "2^32+4"], [2 ** 32 - 8, "2^32-8"],
  [2 ** 31, "2^31"], [2 ** 31 - 1, "2^31-1"], [2 ** 31 - 4, "2^31-4"], [2 ** 50 * 8 + 1, "2^53+1"], [2 ** 32 + 8, "2^32+8"],
  [Number.MAX_VALUE, "MAX_VALUE"], [Number.MIN_VALUE, "MIN_VALUE"], [Number.EPSILON, "EPSILON"], [2 ** 40, "2^40"],
  [2 ** 30, "2^30"], [2 ** 20, "2^20"], [2 ** 20 + 1, "2^20+1"], [65537, "65537"],
]);

function fmt(v) {
  if (typeof v === "number") return Object.is(v, -0) ? "-0" : NAMED.get(v) ?? String(v);
  if (typeof v === "string") return JSON.stringify(v.length > 12 ? v.slice(0, 12) + "…" : v);
  if (typeof v === "bigint") return `${v}n`;
  if (typeof v === "symbol") return "Symbol()";
  if (v === null || v === undefined || typeof v === "boolean") return String(v);
  if (typeof v === "function") return "fn";
  if (Array.isArray(v)) return v.length > 6 ? `[${v.length} items]` : `[${v.map(fmt).join(",")}]`;
  return "{…}";
}

/** Numbers and other primitives at the edges of every range (IDs, offsets, users, limits, timeouts). */
const EDGE_VALUES = [
  0, -0, 1, 2, 3, 5, 7, 8, 2 ** 53 - 1, 2 ** 53 - 2, 2 ** 53 - 3, 2 ** 53 - 4, 2 ** 53, 2 ** 53 + 8, -1, -4, NaN,
  Infinity, -Infinity, 0.5, 4.25, 2 ** 32, 2 ** 32 - 1, 2 ** 32 + 4, 2 ** 31, 2 ** 31 - 1, 2 ** 50 * 8 + 1,
  Number.MAX_VALUE, Number.MIN_VALUE, Number.EPSILON, 2 ** 40, "4", "0", "", 4n, 0n, 2n ** 64n, null, undefined,
  true, false,
];

/**
 * Every handle ID the bus hands out is a caller-chosen owner ID (bits 0 and 1
 * clear: nodes are made only from those), core-assigned for another peer's
 * node (MANAGED | REMOTE), or core-assigned for a node of the peer's own
 * (MANAGED alone: a handle to its own destroyed node that reaches it in a
 * message sent before the destroy, after it released the owner ID, SPEC §3);
 * REMOTE alone names nothing.
 */
function handedOut(id) {
  return id % 4 !== 2;
}

/**
 * What kind of failure a message describes, without the arguments and
 * numbers of the one call: the CLI prints each kind in full once.
 */
export function signature(message) {
  let s = String(message).split("\n")[0];
  for (let i = 0; i < 3; i++) s = s.replace(/\((?:[^()]|\([^()]*\))*\)/g, "()");
  return s.replace(/\b(P|m)\d+(\.\d+)?\b/g, "$1").replace(/\d+/g, "N").replace(/\s+at\s.*$/, "").slice(0, 160);
}

function historyLine(e) {
  return `#${e.step} ${"  ".repeat(e.depth)}${e.depth ? "↳ " : ""}${e.label} → ${e.out}`;
}

// The flight recorder's layout in its SharedArrayBuffer: an i32 count of
// entries written, then RECORDER_SLOTS slots of one u16 length and up to
// RECORDER_CHARS UTF-16 code units.
export const RECORDER_SLOTS = HISTORY;
const RECORDER_CHARS = 300;
export const RECORDER_BYTES = 8 + RECORDER_SLOTS * (RECORDER_CHARS + 1) * 2;

function openRecorder(sab) {
  return { count: new Int32Array(sab, 0, 1), text: new Uint16Array(sab, 8), next: 0 };
}

function writeSlot(rec, slot, line) {
  const at = slot * (RECORDER_CHARS + 1);
  const n = Math.min(line.length, RECORDER_CHARS);
  for (let i = 0; i < n; i++) rec.text[at + 1 + i] = line.charCodeAt(i);
  rec.text[at] = n;
}

/** What a flight recorder holds, oldest first (read by the thread that watches). */
export function readRecorder(sab) {
  const rec = openRecorder(sab);
  const count = Atomics.load(rec.count, 0);
  const lines = [];
  for (let k = Math.max(0, count - RECORDER_SLOTS); k < count; k++) {
    const at = (k % RECORDER_SLOTS) * (RECORDER_CHARS + 1);
    lines.push(String.fromCharCode(...rec.text.subarray(at + 1, at + 1 + rec.text[at])));
  }
  return lines;
}

/** The first line of an error, for the history. */
function errText(e) {
  if (e instanceof Bus1Error) return e.code;
  if (e instanceof FuzzThrow) return "FuzzThrow (ours)";
  const name = e?.constructor?.name ?? typeof e;
  return `${name}: ${String(e?.message ?? e).split("\n")[0].slice(0, 160)}`;
}

function errDetail(e) {
  const stack = typeof e?.stack === "string" ? e.stack.split("\n").slice(1, 5).map((l) => l.trim()).join(" | ") : "";
  return `${errText(e)}${stack ? ` (at ${stack})` : ""}`;
}

/** FNV-1a over a string: the run's digest. */
function fnv(h, s) {
  for (let i = 0; i < s.length; i++) h = Math.imul(h ^ s.charCodeAt(i), 0x01000193) >>> 0;
  return h;
}

class Rng {
  constructor(seed) {
    this.next = random(seed >>> 0);
  }
  int(n) {
    return Math.floor(this.next() * n);
  }
  chance(p) {
    return this.next() < p;
  }
  pick(a) {
    return a[this.int(a.length)];
  }
  /** table: [[weight, value], ...] */
  weighted(table) {
    let total = 0;
    for (const [w] of table) total += w;
    let x = this.next() * total;
    for (const [w, v] of table) if ((x -= w) < 0) return v;
    return table[table.length - 1][1];
  }
}

/** A Uint8Array subclass whose length lies (a getter on the class). */
class LyingU8 extends Uint8Array {
  constructor(n, lie) {
    super(n);
    Object.defineProperty(this, "lie", { value: lie });
  }
  get length() {
    return this.lie;
  }
}

/** A subclass of Float64Array whose length lies. */
class LyingF64 extends Float64Array {
  constructor(values, lie) {
    super(values);
    Object.defineProperty(this, "lie", { value: lie });
  }
  get length() {
    return this.lie;
  }
}

function revoked(target) {
  const { proxy, revoke } = Proxy.revocable(target, {});
  revoke();
  return proxy;
}

function detach(buffer) {
  try {
    if (buffer.byteLength > 0) structuredClone(buffer, { transfer: [buffer] });
  } catch {
    // already detached
  }
}

/** A 0..n payload with recognisable bytes. */
function bytes(n, tag) {
  const u = new Uint8Array(n);
  for (let i = 0; i < Math.min(n, 64); i++) u[i] = (tag + i) & 0xff;
  return u;
}

// ---------------------------------------------------------------------------
// The model

class PeerState {
  constructor(n, user, gen) {
    this.n = n;
    this.user = user;
    /** Which bus of this run (a run re-creates its bus after a bus.close). */
    this.gen = gen;
    this.connected = true;
    /** Every reference ever made to this peer. */
    this.refs = [];
    /** offset -> MsgState: received data slices not yet released. */
    this.slices = new Map();
    /** Offsets released before (stale). */
    this.stale = [];
    /** Offset of the seed, when the fuzzer has seen it. */
    this.seedOffset = null;
    /** Handle IDs this peer has held or made (any of them may be gone now). */
    this.ids = [];
    this.idSet = new Set();
    /** peer.ref as it was when the peer was made: { bus, slot, gen }. */
    this.refObj = null;
  }
  get name() {
    return `P${this.n}`;
  }
  /** Its slot is held: some reference is open. */
  get alive() {
    return this.refs.some((r) => !r.closed);
  }
  addId(id) {
    if (!Number.isSafeInteger(id) || id < 0 || this.idSet.has(id)) return;
    this.idSet.add(id);
    this.ids.push(id);
    if (this.ids.length > 48) this.idSet.delete(this.ids.shift());
  }
}

class RefState {
  constructor(peer, st, k) {
    this.peer = peer;
    this.st = st;
    this.k = k;
    this.closed = false;
  }
  get name() {
    return `${this.st.name}.${this.k}`;
  }
}

class MsgState {
  constructor(n, msg, ref, seed) {
    this.n = n;
    this.msg = msg;
    this.ref = ref;
    this.st = ref.st;
    this.seed = seed;
    this.data = msg.type === "data";
    this.offset = msg.offset;
    /** message.release() succeeded once already. */
    this.selfReleased = false;
  }
  get name() {
    return `m${this.n}`;
  }
}

const NOHOW = Object.freeze({});

/** Top-level operations and their weights. */
const OPS = [
  [4, "opConnect"], [3, "opAdopt"], [26, "opSend"], [18, "opRecv"], [6, "opTransfer"], [5, "opRelease"],
  [4, "opDestroy"], [6, "opReleaseSlice"], [6, "opMsgRelease"], [2, "opReset"], [1, "opQuery"], [1, "opStats"],
  [0.6, "opDisconnect"], [2, "opClose"], [1, "opWait"], [0.5, "opReadable"], [1.2, "opBusMisc"], [0.06, "opBusClose"],
];
/** Operations a getter makes in the middle of another call. */
const NESTED = [
  [30, "nRecv"], [25, "nSend"], [15, "nMsgRelease"], [6, "nReleaseSlice"], [8, "nClose"], [5, "nTransfer"],
  [3, "nDisconnect"], [5, "nStats"], [0.4, "nBusClose"],
];

/**
 * Makes the warmed-up state the memory baseline is measured in: as many
 * peers at once as a run may hold, every user, a message between every two
 * users (shares), with handles and objects, the largest argument scratch the
 * fuzzer asks for; then everything released and closed.
 */
export function warmUp(bus, { peers = MAX_PEERS, users = USERS, refs = MAX_REFS + 8 } = {}) {
  const ps = [];
  for (let i = 0; i < peers; i++) ps.push(bus.connect({ user: users[i % users.length] }));
  const extra = [];
  for (let i = 0; ps.length + extra.length < refs; i++) extra.push(bus.adopt(ps[i % ps.length].ref));
  for (const p of extra) p.close();
  const firsts = ps.slice(0, users.length);
  for (const a of firsts) {
    for (const b of firsts) {
      try {
        const id = b.transfer(4, a);
        a.send([id], new Uint8Array(64), { handles: [8], objects: [1] });
      } catch {
        // small limits or memory: the warm-up does what it can
      }
    }
  }
  // one multicast that locks every peer: the thread's lock set keeps its
  // largest size (up to 64 peers, docs/ABI.md) for the calls after it
  try {
    const all = ps.slice(1).map((b) => b.transfer(4, ps[0]));
    ps[0].send(all, new Uint8Array(8));
  } catch {
    // small limits or memory
  }
  for (const p of ps) {
    for (let m = p.recv(); m; m = p.recv()) m.release();
  }
  try {
    ps[0].send(new Array(1024).fill(NaN), undefined, { handles: new Array(1024).fill(NaN) });
  } catch {
    // EINVAL: only the scratch mattered
  }
  for (const p of ps) p.close();
  drain(bus);
}

/**
 * Host-object records whose last message was dropped are freed by their
 * owner thread on its next send with objects (SPEC §9): one such send, to
 * nobody, on a throw-away peer.
 */
export function drain(bus) {
  const p = bus.connect();
  try {
    p.send([], undefined, { objects: [0] });
  } finally {
    p.close();
  }
}

export class Fuzzer {
  /**
   * options:
   *   seed, kind: "private" | "shared";
   *   hostile (default true): Proxies, getters, lying lengths, odd buffers, re-entrant calls;
   *   keepGoing: note wrong answers to single calls and go on (model, memory and broken-bus failures still stop);
   *   log(line) / log: true, trace(line) / trace: true (every call), progress(step) (every 256 steps);
   *   recorder: a SharedArrayBuffer of RECORDER_BYTES (the flight recorder, see flight());
   *   inject: { step, what: "throw" | "stats" | "leak" } (a fault the fuzzer must catch: tests of the fuzzer);
   *   agent mode (a worker's peers on a shared bus): agent: true, bus, refs: [Peer],
   *     targets: [[handle IDs] per ref], maxPeers (peers it may connect, default 3).
   * (steps and seconds belong to runFuzz.)
   */
  constructor(options = {}) {
    this.seed = (options.seed ?? 1) >>> 0;
    this.kind = options.agent ? "agent" : options.kind ?? "private";
    if (!["private", "shared", "agent"].includes(this.kind)) throw new Error(`fuzz: unknown kind ${options.kind}`);
    this.agent = !!options.agent;
    this.rng = new Rng(this.seed);
    this.logFn = options.log === true ? (s) => console.log(s) : typeof options.log === "function" ? options.log : null;
    this.traceFn = options.trace === true ? (s) => console.log(s) : typeof options.trace === "function" ? options.trace : null;
    this.inject = options.inject ?? null;
    /** false: no Proxies, getters, lying lengths, resizable or detached buffers (reaches the core sooner). */
    this.hostile = options.hostile ?? true;
    /** Note wrong answers to single calls and go on (only model, memory and broken-bus failures stop the run). */
    this.keepGoing = !!options.keepGoing;
    this.seen = new Set();
    this.soft = [];
    this.progressFn = options.progress ?? null;
    this.recorder = options.recorder ? openRecorder(options.recorder) : null;
    this.options = options;
    this.maxPeers = this.agent ? options.maxPeers ?? 3 : MAX_PEERS;
    this.bus = options.bus ?? null;
    this.other = null;
    this.busGen = 0;
    this.busClosed = false;
    this.closedSteps = 0;
    this.baseline = null;
    this.peers = [];
    this.refs = [];
    this.msgs = [];
    this.peerCount = 0;
    this.msgCount = 0;
    this.epoch = 0;
    this.depth = 0;
    this.stepNo = 0;
    this.history = [];
    this.failure = null;
    this.broken = null;
    this.asyncProblems = [];
    this.digest = 0x811c9dc5;
    this.counts = { calls: 0, ok: 0, errors: {} };
  }

  // -------------------------------------------------------------------------
  // Running

  /** Makes (or adopts, in agent mode) the bus and the initial state. */
  async init() {
    if (this.agent) {
      (this.options.refs ?? []).forEach((peer, i) => {
        const st = this.newPeer(peer, 0);
        for (const id of this.options.targets?.[i] ?? []) st.addId(id);
      });
      return;
    }
    await this.openBus();
    try {
      this.other = await Bus.create({ shared: false, maxMemoryBytes: 131072 });
      this.otherPeer = this.other.connect();
    } catch (e) {
      this.fail(`could not make the second bus: ${errDetail(e)}`);
    }
  }

  async openBus() {
    const r = this.rng;
    const limits = r.chance(0.5) ? undefined
      : { maxSlices: r.pick([8, 32, 256]), maxHandles: r.pick([16, 64, 1024]), maxInflightBytes: r.pick([4096, 65536, 1 << 20]),
          maxInflightObjects: r.pick([2, 16, 256]) };
    const maxMemoryBytes = r.pick([2, 8, 64]) << 20;
    const shared = this.kind === "shared";
    this.busOptions = { shared, maxMemoryBytes, ...(limits ? { limits } : {}) };
    this.bus = await Bus.create(this.busOptions);
    this.busGen++;
    this.busClosed = false;
    this.closedSteps = 0;
    this.peers = [];
    this.refs = [];
    warmUp(this.bus);
    this.baseline = this.busStats("baseline");
    this.log(`bus ${this.busGen}: ${JSON.stringify(this.busOptions)}; baseline ${JSON.stringify(this.baseline)}`);
  }

  /** Runs up to `n` steps (or until `deadline`, a performance.now() time); false once the run is over. */
  async steps(n, deadline = Infinity) {
    for (let i = 0; i < n; i++) {
      if (this.failure || this.broken) return false;
      if (performance.now() > deadline) return false;
      this.stepNo++;
      try {
        for (const [message, sig] of this.asyncProblems.splice(0)) this.softFail(message, sig);
        const p = this.step();
        if (p) await p;
        if (!this.failure) this.checkInvariants();
      } catch (e) {
        if (e instanceof BusBroken) {
          this.broken = e.message;
        } else if (!this.failure) {
          // the fuzzer itself, or something escaped every call(): report it as it is
          this.failure = { step: this.stepNo, message: `escaped: ${errDetail(e)}`, history: this.historyLines() };
        }
      }
      if (this.progressFn && (this.stepNo & 255) === 0) this.progressFn(this.stepNo);
    }
    return !(this.failure || this.broken);
  }

  /**
   * Closes every reference the fuzzer holds; then, if nothing failed so far
   * (and not in agent mode), checks that memory is back at the baseline and
   * closes the bus.
   */
  async finish() {
    const step = this.stepNo + 1;
    const failed = !!(this.failure || this.broken);
    this.ran = this.stepNo;
    if (!failed) this.stepNo = step; // a failure of the end check is reported as step N + 1
    try {
      for (const ref of this.refs) {
        if (ref.closed) continue;
        if (failed) {
          ref.closed = true;
          try {
            ref.peer.close();
          } catch {
            // reported already: the run failed
          }
        } else this.closeRef(ref, false, true);
      }
      if (!failed && !this.agent && !this.busClosed) {
        this.call("drain(bus)", null, () => drain(this.bus), { quiet: true });
        const s = this.busStats("end");
        const b = this.baseline;
        if (s.peers !== b.peers) this.fail(`${s.peers} peers alive after every reference was closed (baseline ${b.peers})`);
        if (s.records !== b.records) this.fail(`${s.records} host-object records alive at the end (baseline ${b.records})`);
        if (s.usedBytes !== b.usedBytes) {
          const d = s.usedBytes - b.usedBytes;
          this.fail(`memory not back to the baseline: usedBytes ${s.usedBytes}, baseline ${b.usedBytes} (${d > 0 ? "+" : ""}${d})`);
        }
        this.call("bus.close()", null, () => this.bus.close(), { quiet: true, succeed: true });
        this.busClosed = true;
      }
    } catch (e) {
      if (e instanceof BusBroken) this.broken = e.message;
      else if (!this.failure) this.failure = { step, message: `escaped: ${errDetail(e)}`, history: this.historyLines() };
    }
    this.cleanup();
  }

  cleanup() {
    if (!this.agent) {
      try {
        this.bus?.close();
      } catch {
        // reported already if it matters
      }
    }
    try {
      this.other?.close();
    } catch {
      // the second bus only served as a foreign bus
    }
  }

  result() {
    const r = { ok: !this.failure, seed: this.seed, kind: this.kind, steps: this.ran ?? this.stepNo, digest: this.digest.toString(16), counts: this.counts };
    if (this.broken) r.broken = this.broken;
    if (this.soft.length) {
      r.ok = false;
      r.others = this.soft.map((f) => ({ step: f.step, message: f.message, replay: this.replay(f.step) }));
    }
    const first = this.failure ?? this.soft[0];
    if (first) r.failure = { ...first, replay: this.replay(first.step) };
    return r;
  }

  /** The command that replays this run up to `step`. */
  replay(step) {
    const flags = `${this.hostile ? "" : " --plain"}${this.keepGoing ? " --keep-going" : ""}`;
    return `node tests/fuzz/run.mjs --seed ${this.seed} --kind ${this.kind} --steps ${step}${flags}`;
  }

  log(s) {
    if (this.logFn) this.logFn(`[fuzz ${this.kind} seed ${this.seed}] ${s}`);
  }

  fail(message) {
    if (!this.failure) this.failure = { step: this.stepNo, message, sig: signature(message), history: this.historyLines() };
    throw new FuzzFailure(message);
  }

  /**
   * A wrong answer to one call that leaves the model intact (a TypeError, a
   * wrong error code, a success that should have failed). With keepGoing the
   * run notes it (once per kind: `sig`) and goes on; otherwise it fails.
   */
  softFail(message, sig) {
    if (!this.keepGoing) this.fail(message);
    if (this.seen.has(sig)) return;
    this.seen.add(sig);
    this.soft.push({ step: this.stepNo, message, sig, history: this.historyLines() });
    this.log(`step ${this.stepNo}: ${message}`);
  }

  historyLines() {
    return this.history.map(historyLine);
  }

  record(entry) {
    this.history.push(entry);
    if (this.history.length > HISTORY) this.history.shift();
    this.flight(entry);
  }

  /**
   * The flight recorder: the last operations, written to shared memory
   * before and after each call, so that whoever watches this thread can
   * show them when the thread hangs inside a call (tests/fuzz/isolate.mjs).
   */
  flight(entry) {
    const rec = this.recorder;
    if (!rec) return;
    if (entry.slot === undefined) entry.slot = rec.next++ % RECORDER_SLOTS;
    writeSlot(rec, entry.slot, historyLine(entry));
    Atomics.store(rec.count, 0, rec.next);
  }

  count(error) {
    this.counts.calls++;
    if (error === null) this.counts.ok++;
    else {
      const k = error instanceof Bus1Error ? error.code : errText(error).split(":")[0];
      this.counts.errors[k] = (this.counts.errors[k] ?? 0) + 1;
    }
  }

  // -------------------------------------------------------------------------
  // One call, classified

  /**
   * Calls `fn` (one API call) and checks what came out. `ref`: the reference
   * the call goes through (its rules apply), or null. `how`:
   *   op: "close" | "stats" (rules differ), bus: a Bus call (EBADF once the bus is closed),
   *   allow: codes tolerated on a connected peer (EBADF/ESHUTDOWN caused by another argument),
   *   mustThrow: why it must fail, succeed: must not fail (ENOMEM, EDQUOT tolerated),
   *   show(value): result text, quiet: not in the history.
   */
  call(label, ref, fn, how = NOHOW) {
    if (this.failure) throw new FuzzFailure("stopped");
    if (this.broken) throw new BusBroken(this.broken);
    const entry = { step: this.stepNo, depth: this.depth, label, out: "(running)" };
    if (!how.quiet) this.record(entry);
    const before = ref ? { closed: ref.closed, connected: ref.st.connected } : null;
    const busClosed = this.busClosed;
    const epoch = this.epoch;
    this.depth++;
    const t0 = performance.now();
    let value, error, threw = false;
    try {
      value = fn();
    } catch (e) {
      threw = true;
      error = e;
    }
    const ms = performance.now() - t0;
    this.depth--;
    if (error instanceof FuzzFailure || this.failure) throw error instanceof FuzzFailure ? error : new FuzzFailure("stopped");
    if (error instanceof BusBroken || this.broken) throw new BusBroken(this.broken ?? error.message);
    let shown = "";
    if (!threw && how.show) {
      try {
        shown = ` ${how.show(value)}`;
      } catch (e) {
        shown = ` (result unreadable: ${errText(e)})`;
      }
    }
    entry.out = threw ? errText(error) : `ok${shown}`;
    if (!how.quiet) this.flight(entry);
    this.count(threw ? error : null);
    if (!how.quiet || threw) this.digest = fnv(this.digest, `${entry.step}|${label}|${entry.out}\n`);
    if (this.traceFn && !how.quiet) this.traceFn(`#${entry.step} ${"  ".repeat(entry.depth)}${label} → ${entry.out}`);
    if (threw) this.checkThrown(error, label);
    if (ms > SLOW_CALL_MS) this.fail(`${label} took ${ms.toFixed(0)} ms (a hang)`);
    const m = /([A-Za-z]+)\(/.exec(label);
    const method = m ? m[1] : label;
    const code = threw && error instanceof Bus1Error ? error.code : null;
    const same = epoch === this.epoch;
    if (same && !(error instanceof FuzzThrow)) {
      if (how.bus && busClosed && (!threw || code !== "EBADF")) {
        this.softFail(`${label}: a call on a closed bus must be EBADF, got ${threw ? code : "success"}`, `${method}|closed bus|${code}`);
      }
      if (before && !how.any) this.checkRefRules(label, method, before, busClosed, threw, code, error, how);
      if (how.mustThrow && !threw) this.softFail(`${label} succeeded, but must fail: ${how.mustThrow}`, `${method}|must fail|${how.mustThrow}`);
      if (how.succeed && code && !(before && (before.closed || !before.connected)) && !busClosed
        && code !== "ENOMEM" && code !== "EDQUOT") {
        this.softFail(`${label} must succeed, got ${code}: ${error.message}`, `${method}|must succeed|${code}`);
      }
    }
    return threw ? { ok: false, error, code } : { ok: true, value };
  }

  checkThrown(error, label) {
    if (error instanceof FuzzThrow) return;
    const m = /([A-Za-z]+)\(/.exec(label);
    const method = m ? m[1] : label;
    if (error instanceof WebAssembly.RuntimeError) this.fail(`${label}: the core trapped: ${errDetail(error)}`);
    if (!(error instanceof Bus1Error)) {
      this.softFail(`${label} threw ${errDetail(error)}, not a Bus1Error`, `${method}|${errText(error).replace(/\d+/g, "N")}`);
      return;
    }
    if (!ERROR_CODES.has(error.code)) this.softFail(`${label} threw a Bus1Error with unknown code ${fmt(error.code)}`, `${method}|code`);
    if (typeof error.message !== "string" || error.message.length === 0) this.softFail(`${label} threw a Bus1Error without a message`, `${method}|message`);
    if (error.code === "ESHUTDOWN" && BROKEN.test(error.message)) {
      if (this.agent) {
        this.broken = error.message;
        throw new BusBroken(error.message);
      }
      this.fail(`${label}: the bus reports itself broken: ${error.message}`);
    }
  }

  checkRefRules(label, method, before, busClosed, threw, code, error, how) {
    if (threw && !code) return; // not a Bus1Error: reported already
    if (how.op === "close") {
      if (threw) this.softFail(`${label}: close() threw ${code ?? errText(error)}`, `${method}|close threw`);
      return;
    }
    if (before.closed || busClosed) {
      if (!threw || code !== "EBADF") {
        this.softFail(`${label}: a call through a closed reference must be EBADF, got ${threw ? code : "success"}`, `${method}|closed ref|${code}`);
      }
      return;
    }
    if (!before.connected) {
      if (!threw && how.op !== "stats") this.softFail(`${label} succeeded on a disconnected peer (must be ESHUTDOWN)`, `${method}|disconnected ok`);
      if (code === "EBADF" && !how.allow?.includes(code)) {
        this.softFail(`${label}: EBADF on an open reference to a disconnected peer (must be ESHUTDOWN)`, `${method}|disconnected EBADF`);
      }
      return;
    }
    if ((code === "EBADF" || code === "ESHUTDOWN") && !how.allow?.includes(code)) {
      this.softFail(`${label}: ${code} on a connected peer through an open reference: ${error.message}`, `${method}|connected ${code}`);
    }
  }

  // -------------------------------------------------------------------------
  // Model helpers

  newPeer(peer, user) {
    const st = new PeerState(++this.peerCount, user, this.busGen);
    try {
      st.refObj = peer.ref;
    } catch (e) {
      this.fail(`peer.ref of a new peer threw ${errDetail(e)}`);
    }
    this.peers.push(st);
    this.addRef(peer, st);
    // forget peers that are long gone (their refs stay usable as stale ones through `gone`)
    if (this.peers.length > 24) {
      const i = this.peers.findIndex((p) => !p.alive);
      if (i >= 0) this.peers.splice(i, 1);
    }
    return st;
  }

  addRef(peer, st) {
    const ref = new RefState(peer, st, st.refs.length + 1);
    // made by a call that a getter's bus.close() overtook: every call through it is EBADF now
    if (this.busClosed) ref.closed = true;
    st.refs.push(ref);
    this.refs.push(ref);
    if (this.refs.length > 40) {
      const i = this.refs.findIndex((r) => r.closed);
      if (i >= 0) this.refs.splice(i, 1);
    }
    return ref;
  }

  alivePeers() {
    return this.peers.filter((p) => p.alive && p.gen === this.busGen);
  }

  /** A reference: mostly an open one to a connected peer; sometimes closed or to a disconnected peer. */
  anyRef() {
    const open = [], disc = [], closed = [];
    for (const r of this.refs) (r.closed ? closed : r.st.connected ? open : disc).push(r);
    const x = this.rng.next();
    if (x < 0.06 && closed.length) return this.rng.pick(closed);
    if (x < 0.12 && disc.length) return this.rng.pick(disc);
    if (open.length) return this.rng.pick(open);
    if (disc.length) return this.rng.pick(disc);
    return closed.length ? this.rng.pick(closed) : null;
  }

  openRef() {
    const open = this.refs.filter((r) => !r.closed && r.st.connected);
    return open.length ? this.rng.pick(open) : null;
  }

  otherState(st) {
    const others = this.peers.filter((p) => p !== st);
    return others.length ? this.rng.pick(others) : null;
  }

  closeRef(ref, dispose, quiet) {
    const label = `${ref.name}.${dispose ? "[Symbol.dispose]" : "close"}()`;
    this.call(label, ref, () => (dispose ? ref.peer[Symbol.dispose]() : ref.peer.close()), { op: "close", quiet });
    this.markClosed(ref);
  }

  markClosed(ref) {
    if (ref.closed) return;
    ref.closed = true;
    this.epoch++;
    const st = ref.st;
    if (!st.alive) {
      st.connected = false;
      st.slices.clear();
      st.seedOffset = null;
    }
  }

  markDisconnected(st) {
    st.connected = false;
    st.slices.clear();
    st.seedOffset = null;
    this.epoch++;
  }

  markBusClosed() {
    this.busClosed = true;
    this.closedSteps = 0;
    for (const r of this.refs) r.closed = true;
    for (const p of this.peers) {
      p.connected = false;
      p.slices.clear();
    }
    this.epoch++;
  }

  /** A message came out of recv: check its shape and take it into the model. */
  gotMessage(ref, m, seedAsked) {
    const st = ref.st;
    const where = `${ref.name}.recv()`;
    if (typeof m !== "object" || m === null) this.fail(`${where} returned ${fmt(m)}`);
    if (!["data", "node-destroy", "node-release"].includes(m.type)) this.fail(`${where}: message type ${fmt(m.type)}`);
    if (!(m.payload instanceof Uint8Array)) this.fail(`${where}: payload is not a Uint8Array`);
    if (!Array.isArray(m.handles) || !Array.isArray(m.objects)) this.fail(`${where}: handles/objects are not arrays`);
    if (typeof m.continue !== "boolean") this.fail(`${where}: continue is ${fmt(m.continue)}`);
    for (const h of m.handles) {
      if (h !== -1 && !(Number.isSafeInteger(h) && h >= 0)) this.fail(`${where}: handle ID ${fmt(h)} is not a safe integer`);
      if (h !== -1 && !handedOut(h)) this.softFail(`${where}: handle ID ${h} has MANAGED/REMOTE bits ${h % 4} (SPEC §3)`, "recv|handle bits");
    }
    const seed = seedAsked === true || (seedAsked === null && m.type === "data" && m.destination === -1);
    if (m.type === "data") {
      if (!Number.isSafeInteger(m.offset) || m.offset < 0 || m.offset % 8 !== 0) this.fail(`${where}: bad offset ${fmt(m.offset)}`);
      if (m.payload.length > 0 && m.payload.byteOffset !== m.offset) {
        this.fail(`${where}: payload starts at ${m.payload.byteOffset}, not at the offset ${m.offset}`);
      }
      if (seed) {
        if (m.destination !== -1) this.fail(`${where}: the seed's destination is ${fmt(m.destination)}, not HANDLE_INVALID`);
        if (st.slices.has(m.offset)) this.fail(`${where}: the seed's offset ${m.offset} is a live received slice`);
        st.seedOffset = m.offset;
      } else {
        if (!Number.isSafeInteger(m.destination) || m.destination < 0) this.fail(`${where}: destination ${fmt(m.destination)}`);
        // a destination is a node the receiver owns: its caller-chosen owner ID, or (after the owner
        // released that ID of a destroyed node and got a handle to it back in a message sent before
        // the destroy) a core-assigned ID without the REMOTE bit (SPEC §3); never REMOTE
        if (m.destination % 4 >= 2) {
          this.softFail(`${where}: data for ${st.name}'s own node arrived at ID ${m.destination}, not a caller-chosen owner ID`, "recv|destination bits");
        }
        if (st.slices.has(m.offset)) this.fail(`${where}: offset ${m.offset} is already a live slice of ${st.name}`);
        if (m.offset === st.seedOffset) this.fail(`${where}: offset ${m.offset} is the seed's`);
      }
    } else {
      if (m.offset !== -1 || m.payload.length !== 0 || m.handles.length !== 0) this.fail(`${where}: a notification with a slice`);
      if (!Number.isSafeInteger(m.destination) || m.destination < 0) this.fail(`${where}: notification destination ${fmt(m.destination)}`);
      if (!handedOut(m.destination)) this.softFail(`${where}: ${m.type} for ID ${m.destination}: MANAGED/REMOTE bits ${m.destination % 4}`, "recv|note bits");
      if (m.type === "node-release" && m.destination % 4 !== 0) {
        this.softFail(`${where}: node-release for ID ${m.destination}, not the owner's caller-chosen ID`, "recv|release bits");
      }
    }
    const ms = new MsgState(++this.msgCount, m, ref, seed);
    if (m.type === "data" && !seed) st.slices.set(m.offset, ms);
    for (const h of m.handles) st.addId(h);
    st.addId(m.destination);
    this.msgs.push(ms);
    if (this.msgs.length > 24) this.msgs.shift();
    return ms;
  }

  sliceReleased(st, offset) {
    st.slices.delete(offset);
    st.stale.push(offset);
    if (st.stale.length > 8) st.stale.shift();
  }

  // -------------------------------------------------------------------------
  // Argument generators: { v, d } (value, label)

  /** A handle ID for peer `st`. */
  idv(st) {
    const r = this.rng, x = r.next();
    if (x < 0.35 && st?.ids.length) {
      const v = r.pick(st.ids);
      return { v, d: fmt(v) };
    }
    if (x < 0.6) {
      const v = r.pick(CALLER_IDS);
      return { v, d: fmt(v) };
    }
    if (x < 0.68) {
      const o = this.otherState(st);
      if (o?.ids.length) {
        const v = r.pick(o.ids);
        return { v, d: `${fmt(v)}(of ${o.name})` };
      }
    }
    if (x < 0.92) {
      const v = r.pick(EDGE_VALUES);
      return { v, d: fmt(v) };
    }
    return this.exotic();
  }

  /** Objects, functions, symbols, Proxies where a primitive is expected. */
  exotic() {
    const r = this.rng;
    switch (this.hostile ? r.int(12) : r.pick([0, 1, 2, 3, 4, 5, 8])) {
      case 0: return { v: {}, d: "{}" };
      case 1: return { v: [4], d: "[4]" };
      case 2: return { v: { valueOf: () => 4 }, d: "{valueOf:4}" };
      case 3: return { v: new Number(4), d: "Number(4)" };
      case 4: return { v: Symbol("id"), d: "Symbol()" };
      case 5: return { v: () => 4, d: "fn" };
      case 6: return { v: new Proxy({}, {}), d: "Proxy{}" };
      case 7: return { v: revoked({}), d: "revoked-Proxy" };
      case 8: return { v: Object.create(null), d: "null-proto{}" };
      case 9: {
        const f = this;
        return { v: { get [Symbol.toStringTag]() { f.reenter(); return "Reentrant"; } }, d: "{toStringTag getter→reenter}" };
      }
      case 10: {
        const f = this;
        return { v: new Proxy({}, { get(t, k) { if (typeof k === "symbol") f.reenter(); return Reflect.get(t, k); } }), d: "Proxy{get→reenter}" };
      }
      default: return { v: { [Symbol.toPrimitive]() { throw new FuzzThrow(); } }, d: "{toPrimitive throws}" };
    }
  }

  /** A getter function of the given kind. */
  getterFn(kind, value, mut, flipTo) {
    const f = this;
    switch (kind) {
      case "reenter": return function get() { f.reenter(); return value; };
      case "mut": return function get() { mut?.(); return value; };
      case "throw": return function get() { throw new FuzzThrow(); };
      default: {
        let n = 0;
        return function get() { return n++ % 2 ? flipTo : value; };
      }
    }
  }

  getterKind(mut, flipOk) {
    return this.rng.weighted([[55, "reenter"], [mut ? 30 : 0, "mut"], [8, "throw"], [flipOk ? 10 : 0, "flip"]]);
  }

  /** obj with key turned into an enumerable getter. */
  withGetter(obj, key, kind, mut, flipTo) {
    const value = obj[key];
    Object.defineProperty(obj, key, { get: this.getterFn(kind, value, mut, flipTo), enumerable: true, configurable: true });
    return obj;
  }

  /** A list (of IDs or values) in one of many shapes. */
  /**
   * huge: lengths above the call's bound (EMSGSIZE/EINVAL before anything is
   * read). Only lengths above the bound: an in-bound huge list (65537 handles,
   * say) grows the thread's argument scratch for good, which the memory
   * check at the end would count.
   */
  listOf(items, itemsLabel, st, { mut, huge = [2 ** 20 + 1] } = {}) {
    const r = this.rng, f = this;
    const d = `[${itemsLabel.join(",")}]`;
    const x = this.hostile ? r.int(100) : r.pick([r.int(70), r.int(70), 89, 91, 94, 96]);
    if (x < 60) return { v: items, d, plain: true };
    if (x < 66) {
      const nums = items.map((v) => (typeof v === "number" ? v : NaN));
      const T = r.pick([Float64Array, Uint32Array, Int32Array]);
      return { v: new T(nums), d: `${T.name}${d}` };
    }
    if (x < 70) {
      const o = { length: items.length };
      items.forEach((v, i) => { o[i] = v; });
      return { v: o, d: `arraylike${d}` };
    }
    if (x < 76 && items.length) {
      const arr = [...items];
      const i = r.int(arr.length);
      const kind = this.getterKind(mut, true);
      this.withGetter(arr, i, kind, mut, "bogus");
      return { v: arr, d: `${d}(getter@${i}:${kind})` };
    }
    if (x < 80) {
      const arr = [...items];
      return {
        v: new Proxy(arr, { get(t, k) { if (k === "length" || (typeof k === "string" && r.chance(0.2))) { if (r.chance(0.4)) f.reenter(); else mut?.(); } return Reflect.get(t, k); } }),
        d: `Proxy${d}`,
      };
    }
    if (x < 82) return { v: revoked([...items]), d: `revoked-Proxy${d}` };
    if (x < 85) {
      const lie = r.pick([0, 1, items.length + 1, items.length + 50, 2 ** 31, -1, 1.5, NaN]);
      const nums = items.map((v) => (typeof v === "number" ? v : 0));
      if (r.chance(0.5)) {
        const t = new Float64Array(nums);
        Object.defineProperty(t, "length", { value: lie });
        return { v: t, d: `F64${d}(own length ${fmt(lie)})` };
      }
      return { v: new LyingF64(nums, lie), d: `LyingF64${d}(length ${fmt(lie)})` };
    }
    if (x < 88) {
      const o = { length: items.length };
      items.forEach((v, i) => { o[i] = v; });
      const kind = this.getterKind(mut, false);
      this.withGetter(o, "length", kind, mut);
      return { v: o, d: `arraylike${d}(length getter:${kind})` };
    }
    if (x < 91) {
      const len = r.pick([2 ** 32, -1, 1.5, NaN, "2", 2 ** 53, Infinity]);
      return { v: { length: len, 0: items[0] }, d: `{length:${fmt(len)}}` };
    }
    if (x < 93 && huge.length) {
      const n = r.pick(huge);
      return { v: { length: n }, d: `{length:${fmt(n)} (holes)}` };
    }
    if (x < 95) {
      const n = r.pick([100, 200]);
      const v = Array.from({ length: n }, () => (st?.ids.length ? r.pick(st.ids) : r.pick(CALLER_IDS)));
      return { v, d: `[${n} ids]`, plain: true };
    }
    const junk = r.pick(["4", null, {}, 4n, true, Symbol("x"), () => [4], new Map()]);
    return { v: junk, d: fmt(junk) };
  }

  /** Destinations (or nodes for destroy): one ID or a list. */
  idsv(st, opts = {}) {
    const r = this.rng;
    if (r.chance(0.3)) return this.idv(st);
    const n = r.weighted([[2, 0], [10, 1], [7, 2], [4, 3], [2, 5]]);
    const items = [], labels = [];
    for (let i = 0; i < n; i++) {
      const x = this.idv(st);
      items.push(x.v);
      labels.push(x.d);
    }
    if (n > 0 && r.chance(0.05)) {
      items.push(items[0]);
      labels.push(labels[0]);
    }
    return this.listOf(items, labels, st, opts);
  }

  /** A payload: bytes, vecs, forwarded views, and every way of lying about them. */
  payloadv() {
    const r = this.rng, f = this;
    const x = this.hostile ? r.int(100) : r.pick([r.int(62), r.int(62), r.int(62), 90, 94, 96]);
    const size = () => r.weighted([[5, 0], [5, 1], [4, 7], [6, 16], [5, 100], [2, 1000], [2, 4096], [1, 20000], [1, 70000]]);
    if (x < 12) return { v: undefined, d: "undefined" };
    if (x < 40) {
      const n = size();
      return { v: bytes(n, x), d: `u8[${n}]` };
    }
    if (x < 52) {
      const k = r.int(4) + 1;
      const v = [];
      for (let i = 0; i < k; i++) v.push(bytes(r.pick([0, 1, 8, 33, 200]), i));
      return { v, d: `vecs[${v.map((u) => u.length).join(",")}]` };
    }
    if (x >= 52 && x < 62 && !this.msgs.length) return { v: bytes(8, 2), d: "u8[8]" };
    if (x < 62) {
      const ms = r.pick(this.msgs);
      const p = ms.msg.payload;
      const live = ms.data && !ms.selfReleased && ms.st.slices.get(ms.offset) === ms;
      const tag = `${ms.name}.payload(${live ? "live" : "stale"})`;
      const y = r.int(4);
      // a released message's view on private memory detaches when the memory grows: it is passed as it is
      if (y === 0 || p.buffer.byteLength === 0) return { v: p, d: p.buffer.byteLength === 0 ? `${tag}(detached)` : tag };
      if (y === 1) return { v: p.subarray(r.int(p.length + 1)), d: `${tag}.subarray` };
      if (y === 2) return { v: [p, bytes(8, 1), p], d: `vecs[${tag},u8[8],${tag}]` };
      // a view of the bus memory around the slice (or anywhere in the first pages)
      const buf = p.buffer;
      const at = Math.max(0, Math.min(buf.byteLength - 1, (ms.offset > 0 ? ms.offset : 0) - 64 + r.int(128)));
      const len = Math.min(buf.byteLength - at, r.pick([0, 8, 64, 512, 8192]));
      return { v: new Uint8Array(buf, at, len), d: `busmem[${at}+${len}]` };
    }
    if (x < 66) {
      const u = bytes(16, 3);
      return r.chance(0.7) ? { v: new Proxy(u, {}), d: "Proxy(u8[16])" } : { v: revoked(u), d: "revoked-Proxy(u8)" };
    }
    if (x < 70) {
      const v = [bytes(8, 1), bytes(16, 2)];
      if (r.chance(0.2)) return { v: revoked(v), d: "revoked-Proxy(vecs)" };
      return {
        v: new Proxy(v, { get(t, k) { if (typeof k === "string" && r.chance(0.3)) f.reenter(); return Reflect.get(t, k); } }),
        d: "Proxy(vecs[8,16])→reenter",
      };
    }
    if (x < 75) {
      const v = [bytes(8, 1), bytes(24, 2), bytes(4, 3)];
      const i = r.int(3);
      const kind = this.getterKind(null, true);
      this.withGetter(v, i, kind, null, new Uint8Array(4000));
      return { v, d: `vecs[8,24,4](getter@${i}:${kind})` };
    }
    if (x < 80) {
      const n = r.pick([4, 16, 64]);
      const lie = r.pick([0, 1, n - 1, n + 1, n * 4, 4096, 2 ** 31, -1, 1.5, NaN]);
      if (r.chance(0.5)) {
        const u = bytes(n, 5);
        Object.defineProperty(u, "length", { value: lie });
        return { v: u, d: `u8[${n}](own length ${fmt(lie)})` };
      }
      return { v: new LyingU8(n, lie), d: `LyingU8[${n}](length ${fmt(lie)})` };
    }
    if (x < 88) {
      // resizable buffer: a length-tracking or fixed view, resized by a getter (mut) at some point of the call
      const rab = new ArrayBuffer(16, { maxByteLength: 4096 });
      const tracking = r.chance(0.6);
      const u = tracking ? new Uint8Array(rab) : new Uint8Array(rab, 0, 16);
      const steps = [4096, 0, 16, 1024];
      let i = 0;
      const mut = () => rab.resize(steps[i++ % steps.length]);
      if (r.chance(0.3)) {
        const v = [u, bytes(8, 1)];
        this.withGetter(v, 1, "mut", mut);
        return { v, d: `vecs[rab${tracking ? "" : "-fixed"}[16],getter→resize]`, mut };
      }
      return { v: u, d: `rab${tracking ? "" : "-fixed"}[16]`, mut };
    }
    if (x < 93) {
      const ab = new ArrayBuffer(32);
      const u = new Uint8Array(ab);
      if (r.chance(0.5) || !this.hostile) {
        detach(ab);
        return { v: u, d: "detached-u8" };
      }
      return { v: u, d: "u8[32](detached by getter)", mut: () => detach(ab) };
    }
    if (x < 95) {
      const k = r.pick([1025, 2000]);
      return { v: Array.from({ length: k }, () => new Uint8Array(1)), d: `vecs×${k}` };
    }
    const junk = r.pick([new DataView(new ArrayBuffer(4)), new Uint16Array(4), new ArrayBuffer(4), "abc", [1, 2, 3],
      { length: 3 }, null, 5, [new Uint8Array(2), "x"], new Uint8ClampedArray(4), Buffer.from("buf")]);
    return { v: junk, d: `junk:${Object.prototype.toString.call(junk).slice(8, -1)}` };
  }

  /** Objects to carry: values, endpoints (EOPNOTSUPP), too many, bad shapes. */
  objectsv() {
    const r = this.rng, f = this;
    const x = this.hostile ? r.int(100) : r.pick([r.int(76), r.int(76), 85, 88, 91, 96]);
    if (x < 30) return { v: [], d: "[]" };
    if (x < 55) return { v: [1, "s", { a: [1] }, null], d: "[1,s,{a},null]" };
    if (x < 60) return { v: [() => 1], d: "[fn]" };
    if (x < 70) {
      const ref = this.anyRef();
      const choices = [["bus", this.bus], ["bus.handle", this.safe(() => this.bus.handle)], ["peer", ref?.peer],
        ["peer.ref", ref?.st.refObj], ["otherBus", this.other], ["Proxy(peer)", ref && new Proxy(ref.peer, {})]];
      const [d, v] = r.pick(this.benign(choices.map(([a, b]) => [b, a])).map(([a, b]) => [b, a]));
      return { v: [1, v], d: `[1,${d}]` };
    }
    if (x < 73) return { v: new Array(257).fill(0), d: "[257 objects]" };
    if (x < 76) return { v: { length: 1, 0: 1 }, d: "arraylike" };
    if (x < 80) return { v: new Proxy([1, 2], { get(t, k) { if (r.chance(0.3)) f.reenter(); return Reflect.get(t, k); } }), d: "Proxy[1,2]→reenter" };
    if (x < 84) {
      const v = [1, 2];
      const kind = this.getterKind(null, true);
      this.withGetter(v, 1, kind, null, this.bus);
      return { v, d: `[1,getter:${kind}]` };
    }
    if (x < 87) return { v: [Symbol("s")], d: "[Symbol]" };
    if (x < 90) return { v: [new SharedArrayBuffer(8), 1n], d: "[SAB,1n]" };
    if (x < 93) return { v: new Array(3), d: "sparse[3]" };
    if (x < 95) return { v: revoked([1]), d: "revoked-Proxy[1]" };
    const junk = r.pick([null, 5, "o", {}, new Set([1])]);
    return { v: junk, d: `junk:${fmt(junk)}` };
  }

  /** Without hostile arguments: drop the [value, label] choices that are Proxies or getters. */
  benign(choices) {
    return this.hostile ? choices : choices.filter(([, d]) => !/Proxy|getter|Peer\.prototype/.test(d));
  }

  safe(f) {
    try {
      return f();
    } catch {
      return undefined;
    }
  }

  /** Options object in many shapes: plain, unknown keys, wrong types, getters, Proxies. */
  optionsv(entries, { mut, flipKeys = [], validTypes = true } = {}) {
    const r = this.rng, f = this;
    const o = {};
    for (const [k, v] of entries) o[k] = v;
    const keys = entries.map(([k]) => k);
    const d = `{${entries.map(([k, , dv]) => `${k}:${dv}`).join(",")}}`;
    if (!this.hostile) mut = undefined;
    const x = this.hostile ? r.int(100) : r.pick([r.int(55), r.int(55), r.int(55), r.int(55), 84, 87, 90, 95]);
    if (x < 55 || (mut && x < 75)) {
      if (mut && keys.length) {
        const k = r.pick(keys);
        this.withGetter(o, k, "mut", mut);
        return { v: o, d: `${d}(getter ${k}→mutates payload)`, known: false };
      }
      return { v: o, d, known: validTypes };
    }
    if (x < 72 && keys.length) {
      const k = r.pick(keys);
      const kind = this.getterKind(mut, flipKeys.includes(k));
      this.withGetter(o, k, kind, mut, "bogus");
      return { v: o, d: `${d}(getter ${k}:${kind})`, known: false };
    }
    if (x < 78) {
      return {
        v: new Proxy(o, { get(t, k) { if (typeof k === "string" && r.chance(0.5)) { if (mut && r.chance(0.5)) mut(); else f.reenter(); } return Reflect.get(t, k); } }),
        d: `Proxy${d}`, known: false,
      };
    }
    if (x < 81) return { v: revoked(o), d: `revoked-Proxy${d}`, known: false };
    if (x < 86) {
      o[r.pick(["bogus", "Handles", "seeds", "__proto__x"])] = 1;
      return { v: o, d: `${d}+unknown key`, known: false, invalid: true };
    }
    if (x < 89) {
      const inherited = Object.create(o);
      return { v: inherited, d: `inherits${d}`, known: false };
    }
    if (x < 92) {
      const n = Object.assign(Object.create(null), o);
      return { v: n, d: `null-proto${d}`, known: false };
    }
    const junk = r.pick([null, 5, "opts", [], true, () => ({})]);
    return { v: junk, d: `junk:${fmt(junk)}`, known: false, invalid: junk !== undefined };
  }

  boolv() {
    const r = this.rng;
    if (r.chance(0.85)) {
      const v = r.chance(0.5);
      return { v, d: String(v), valid: true };
    }
    const v = r.pick([0, 1, "true", null, {}, NaN]);
    return { v, d: fmt(v), valid: false };
  }

  /** Limits: { v, d, state: "valid" | "invalid" | "unknown" }. */
  limitsv() {
    const r = this.rng;
    const entries = [];
    let valid = true, unsure = false;
    for (const k of ["maxSlices", "maxHandles", "maxInflightBytes", "maxInflightObjects"]) {
      if (!r.chance(0.5)) continue;
      if (r.chance(0.85)) {
        const v = r.pick([0, 1, 2, 4, 8, 16, 64, 1024, 65536, 1 << 24, U32_MAX]);
        entries.push([k, v, fmt(v)]);
      } else {
        const v = r.pick([-1, 2 ** 32, 1.5, NaN, "1", 1n, null, Infinity, -0]);
        if (Object.is(v, -0)) unsure = true;
        else valid = false;
        entries.push([k, v, fmt(v)]);
      }
    }
    const o = this.optionsv(entries);
    const state = o.invalid || (o.known && !valid) ? "invalid" : o.known && !unsure ? "valid" : "unknown";
    return { v: o.v, d: o.d, state };
  }

  // -------------------------------------------------------------------------
  // Steps

  step() {
    if (this.busClosed && !this.agent && ++this.closedSteps > 5) return this.openBus();
    if (this.inject && this.stepNo === this.inject.step) return this.doInject();
    if (!this.refs.some((r) => !r.closed) && !this.busClosed) return this.opConnect();
    let op = this.rng.weighted(OPS);
    if (this.agent && (op === "opBusClose")) op = "opRecv";
    return this[op]();
  }

  doInject() {
    const what = this.inject.what;
    if (what === "throw") {
      this.call("injected faulty operation", null, () => {
        throw new TypeError("injected fault");
      });
    } else if (what === "stats") {
      let st = this.alivePeers().find((p) => p.connected);
      if (!st) st = this.newPeer(this.bus.connect(), 0);
      this.record({ step: this.stepNo, depth: 0, label: `injected: the model gains a slice ${st.name} does not hold`, out: "ok" });
      st.slices.set(0x7ffffff8, null);
    } else if (what === "leak") {
      const peer = this.bus.connect();
      this.record({ step: this.stepNo, depth: 0, label: "injected: a peer the model does not know", out: "ok" });
      this.leaked = peer;
    }
  }

  opConnect() {
    const r = this.rng;
    const atCap = this.alivePeers().length >= this.maxPeers || this.refs.filter((q) => !q.closed).length >= MAX_REFS;
    // expect: "valid" (user known), "invalid" (must be EINVAL), "either"
    let c;
    let x = r.int(100);
    if (!this.hostile && x >= 66 && x < 75) x = 60;
    const user = r.pick(USERS);
    if (!atCap && x < 50) c = { v: { user }, d: `{user:${fmt(user)}}`, user, expect: "valid" };
    else if (!atCap && x < 56) c = { v: undefined, d: "", user: 0, expect: "valid" };
    else if (!atCap && x < 60) c = { v: {}, d: "{}", user: 0, expect: "valid" };
    else if (!atCap && x < 63) c = { v: { user: -0 }, d: "{user:-0}", user: 0, expect: "either" };
    else if (!atCap && x < 66) c = { v: { user: null }, d: "{user:null}", user: 0, expect: "either" };
    else if (!atCap && x < 69) c = { v: new Proxy({ user }, {}), d: `Proxy{user:${fmt(user)}}`, user, expect: "either" };
    else if (!atCap && x < 75) {
      const kind = r.chance(0.85) ? "reenter" : "throw";
      const v = this.withGetter({ user }, "user", kind);
      c = { v, d: `{user getter:${kind}}`, user, expect: "either" };
    } else if (!atCap && x < 77) c = { v: Object.create({ user: 1 }), d: "inherits{user:1}", user: 1, expect: "either" };
    else {
      const bad = r.pick([-1, 2 ** 31, 2 ** 32, 1.5, NaN, Infinity, -Infinity, "1", 1n, {}, [], true, 2 ** 53]);
      const y = r.int(10);
      if (y < 6) c = { v: { user: bad }, d: `{user:${fmt(bad)}}`, expect: "invalid" };
      else if (y < 7) c = { v: { bogus: 1 }, d: "{bogus:1}", expect: "invalid" };
      else if (y < 8 && this.hostile) c = { v: revoked({ user: 0 }), d: "revoked-Proxy", expect: "invalid" };
      else c = { v: r.pick([null, 5, "u", [0]]), d: "junk", expect: "invalid" };
    }
    const res = this.call(`bus.connect(${c.d})`, null, () => this.bus.connect(c.v), {
      bus: true, mustThrow: c.expect === "invalid" ? "the options are invalid" : undefined,
    });
    if (res.ok) {
      const p = res.value;
      if (typeof p?.send !== "function") this.fail(`connect returned ${fmt(p)}`);
      this.newPeer(p, c.user);
    } else if (c.expect === "valid" && !this.busClosed && res.code !== "ENOMEM" && res.code !== "EBADF") {
      this.fail(`bus.connect(${c.d}) failed with ${res.code ?? errText(res.error)} for a valid user`);
    }
  }

  opAdopt() {
    const r = this.rng;
    let x = r.int(100);
    if (!this.hostile && x >= 60 && x < 70) x = 75;
    // at the cap of open references, only what must fail
    if (this.refs.filter((q) => !q.closed).length >= MAX_REFS && x < 70) x = x < 55 ? 55 : 75;
    let a;
    const st = this.peers.length ? r.pick(this.peers) : null;
    if (x < 45 && st?.refObj) {
      const v = r.chance(0.7) ? st.refObj : structuredClone(st.refObj);
      const other = st.gen !== this.busGen;
      a = { v, d: `${st.name}.ref`, st, expect: other ? "einval" : st.connected && st.alive ? "valid" : "gone" };
    } else if (x < 55 && st?.refObj && !this.agent) {
      // (not in agent mode: a forged slot may name another thread's peer, which this thread must not hold)
      const k = r.pick(["slot", "gen", "bus"]);
      const e = r.pick([0, 1, -1, 2 ** 32, 2 ** 32 + st.refObj[k], 2 ** 31, NaN, 1.5, -0, st.refObj[k] + 1]);
      a = { v: { ...st.refObj, [k]: e }, d: `${st.name}.ref{${k}:${fmt(e)}}`, expect: "forged" };
    } else if (x < 60 && this.otherPeer) {
      a = { v: this.otherPeer.ref, d: "otherBus.peer.ref", expect: "einval" };
    } else if (x < 66 && st?.refObj) {
      const kind = r.chance(0.8) ? "reenter" : "throw";
      const v = this.withGetter({ ...st.refObj }, r.pick(["slot", "gen", "bus"]), kind);
      a = { v, d: `${st.name}.ref(getter:${kind})`, expect: "forged" };
    } else if (x < 70 && st?.refObj) {
      a = { v: new Proxy(st.refObj, {}), d: `Proxy(${st.name}.ref)`, expect: "forged" };
    } else {
      const ref = this.anyRef();
      const junk = [[null, "null"], [undefined, "undefined"], [{}, "{}"], [5, "5"], ["ref", '"ref"'], [[], "[]"],
        [ref?.peer, "a Peer"], [this.bus, "bus"]];
      if (this.hostile) junk.push([revoked({}), "revoked-Proxy"]);
      const [v, d] = r.pick(junk);
      a = { v, d, expect: "einval" };
    }
    // a getter of the reference must not close references: adopt may already hold the new one
    // then, and the model could not tell whether the peer outlived the close
    this.adopting = true;
    const res = this.call(`bus.adopt(${a.d})`, null, () => {
      try {
        return this.bus.adopt(a.v);
      } finally {
        this.adopting = false;
      }
    }, {
      bus: true, mustThrow: a.expect === "einval" ? "not a reference to a peer of this bus" : a.expect === "gone" ? "the peer is gone (ESHUTDOWN)" : undefined,
    });
    if (!this.busClosed && !res.ok && a.expect === "gone" && res.code !== "ESHUTDOWN" && !(res.error instanceof FuzzThrow)) {
      this.fail(`bus.adopt(${a.d}) of a disconnected peer: ${res.code}, must be ESHUTDOWN`);
    }
    if (!this.busClosed && !res.ok && a.expect === "valid" && res.code !== "ENOMEM") {
      this.fail(`bus.adopt(${a.d}) of a connected peer failed: ${res.code ?? errText(res.error)}`);
    }
    if (res.ok) {
      const p = res.value;
      let target = a.st;
      if (a.expect === "forged") {
        const ref = p.ref;
        target = this.peers.find((s) => s.gen === this.busGen && s.alive && s.connected && s.refObj.slot === ref.slot && s.refObj.gen === ref.gen);
        if (!target) this.fail(`bus.adopt(${a.d}) succeeded and names no peer the fuzzer made`);
      }
      this.addRef(p, target);
    }
  }

  opSend() {
    const ref = this.anyRef();
    if (!ref) return this.opConnect();
    const r = this.rng, st = ref.st;
    const pay = this.payloadv();
    const seed = r.chance(0.08);
    const dst = seed && r.chance(0.8) ? { v: [], d: "[]", plain: true } : this.idsv(st, { huge: [65537, 2 ** 20 + 1] });
    let opt, seedKey = seed;
    if (!pay.mut && r.chance(0.35)) opt = { v: undefined, d: null, cont: false };
    else {
      const entries = [];
      let cont;
      if (r.chance(0.5)) {
        const h = this.idsv(st, { mut: pay.mut });
        entries.push(["handles", h.v, h.d]);
      }
      if (r.chance(0.3)) {
        const o = this.objectsv();
        entries.push(["objects", o.v, o.d]);
      }
      if (r.chance(0.4)) {
        const b = this.boolv();
        entries.push(["continue", b.v, b.d]);
        cont = b.v;
      } else cont = false;
      if (seed) entries.push(["seed", true, "true"]);
      else if (r.chance(0.05)) {
        seedKey = true;
        const b = this.boolv();
        entries.push(["seed", b.v, b.d]);
      }
      opt = this.optionsv(entries, { mut: pay.mut, flipKeys: ["continue", "handles", "objects"] });
      opt.cont = opt.known ? cont : undefined;
    }
    const label = `${ref.name}.send(${dst.d}, ${pay.d}${opt.d !== null ? `, ${opt.d}` : ""})`;
    const res = this.call(label, ref, () => ref.peer.send(dst.v, pay.v, opt.v), {
      show: (v) => `errors=${JSON.stringify(v?.errors)}`,
    });
    if (res.ok) {
      const v = res.value;
      if (!v || !Array.isArray(v.errors)) this.fail(`${label} returned ${fmt(v)}, not { errors }`);
      const n = typeof dst.v === "number" ? 1 : dst.plain ? dst.v.length : -1;
      if (n >= 0 && v.errors.length !== n && !seedKey) {
        this.fail(`${label}: ${v.errors.length} results for ${n} destinations`);
      }
      for (const e of v.errors) {
        if (e !== null && !ERROR_CODES.has(e)) this.fail(`${label}: per-destination result ${fmt(e)}`);
        if (e !== null && opt.cont === false) this.softFail(`${label}: a per-destination error (${e}) without continue`, "send|errors without continue");
      }
      if (typeof dst.v === "number") st.addId(dst.v);
      else if (dst.plain) for (const id of dst.v) st.addId(id);
      if (seedKey) st.seedOffset = null; // a new seed (its offset is known once recv({ seed: true }) shows it)
    }
  }

  recvOptions() {
    const r = this.rng;
    const x = r.int(100);
    if (x < 60) return { v: undefined, d: "", seed: false };
    if (x < 75) return { v: { seed: true }, d: "{seed:true}", seed: true };
    if (x < 80) return { v: { seed: false }, d: "{seed:false}", seed: false };
    if (x < 83) return { v: {}, d: "{}", seed: false };
    const b = this.boolv();
    const o = this.optionsv([["seed", b.v, b.d]], { flipKeys: ["seed"] });
    return { v: o.v, d: o.d, seed: o.known && b.valid ? b.v : null, invalid: o.invalid || (o.known && !b.valid) };
  }

  opRecv() {
    const ref = this.anyRef();
    if (!ref) return this.opConnect();
    const o = this.recvOptions();
    const label = `${ref.name}.recv(${o.d})`;
    const res = this.call(label, ref, () => ref.peer.recv(o.v), {
      show: (m) => (m ? `${m.type} off=${m.offset} len=${m.payload?.length} dst=${m.destination} h=[${m.handles}]` : "null"),
      mustThrow: o.invalid ? "invalid options" : undefined,
    });
    if (res.ok && res.value !== null) this.gotMessage(ref, res.value, o.seed);
  }

  opMsgRelease(nested) {
    if (!this.msgs.length) return nested ? undefined : this.opRecv();
    const ms = this.rng.pick(this.msgs);
    const st = ms.st;
    // release() of a message never released by itself is releaseSlice(offset): it frees whatever
    // received slice sits at that offset now, also a later one (SPEC §6), also for a former seed
    const inModel = ms.data && !ms.selfReleased && st.slices.has(ms.offset);
    const label = `${ms.name}(${ms.ref.name} ${ms.data ? `off=${ms.offset}` : ms.msg.type}${ms.selfReleased ? ", released" : ""}).release()`;
    const before = { open: !ms.ref.closed && !this.busClosed, connected: st.connected };
    const res = this.call(label, ms.data ? ms.ref : null, () => ms.msg.release(), { succeed: !ms.data });
    if (ms.data && before.open && before.connected) {
      if (inModel && !res.ok) this.fail(`${label}: releasing a live received slice failed with ${res.code}`);
      if (!inModel && res.ok) this.fail(`${label} succeeded, but ${st.name} holds no slice at ${ms.offset} (ENXIO/EPERM expected)`);
      if (!res.ok && ms.selfReleased && res.code !== "ENXIO") this.fail(`${label}: a second release() must be ENXIO, got ${res.code}`);
    }
    if (res.ok && ms.data) {
      ms.selfReleased = true;
      this.sliceReleased(st, ms.offset);
    }
  }

  opReleaseSlice(nested) {
    const ref = nested ? this.openRef() : this.anyRef();
    if (!ref) return nested ? undefined : this.opConnect();
    const r = this.rng, st = ref.st;
    const x = r.int(100);
    let v;
    const live = [...st.slices.keys()];
    if (x < 35 && live.length) v = r.pick(live);
    else if (x < 45 && st.stale.length) v = r.pick(st.stale);
    else if (x < 53) {
      const o = this.otherState(st);
      const ol = o ? [...o.slices.keys()] : [];
      v = ol.length ? r.pick(ol) : 8;
    } else if (x < 58 && st.seedOffset !== null) v = st.seedOffset;
    else if (x < 63 && live.length) v = r.pick(live) + r.pick([8, -8, 4, 1, 2 ** 32]);
    else if (nested) v = 8;
    else v = r.pick([...EDGE_VALUES, 2 ** 32 - 8, 2 ** 32 + 8, 8.5, Symbol("o"), {}, [8]]);
    const num = typeof v === "number" ? v : NaN;
    const inModel = st.slices.has(num) && Number.isInteger(num);
    const label = `${ref.name}.releaseSlice(${fmt(v)})`;
    const before = { open: !ref.closed && !this.busClosed, connected: st.connected };
    const res = this.call(label, ref, () => ref.peer.releaseSlice(v));
    if (before.open && before.connected) {
      if (inModel && !res.ok) this.fail(`${label}: releasing a live received slice failed with ${res.code}`);
      if (!inModel && res.ok) this.fail(`${label} succeeded, but ${st.name} holds no received slice there`);
      if (!res.ok && num === st.seedOffset && res.code !== "EPERM") this.fail(`${label}: the seed's offset must be EPERM, got ${res.code}`);
    }
    if (res.ok) this.sliceReleased(st, num);
  }

  opTransfer(nested) {
    const ref = nested ? this.openRef() : this.anyRef();
    if (!ref) return nested ? undefined : this.opConnect();
    const r = this.rng, st = ref.st;
    const h = nested ? { v: st.ids.length ? r.pick(st.ids) : 4, d: "" } : this.idv(st);
    if (nested) h.d = fmt(h.v);
    const x = nested ? 0 : r.int(100);
    let to, allow = [], junk = false, target = st;
    if (x < 30) to = { v: undefined, d: "" };
    else if (x < 78) {
      const t = this.rng.pick(this.refs);
      to = { v: t.peer, d: t.name };
      target = t.st;
      if (t.closed) allow = ["EBADF", "ESHUTDOWN"];
      else if (!t.st.connected) allow = ["ESHUTDOWN"];
    } else {
      junk = true;
      const some = this.anyRef()?.peer;
      const choices = [[{}, "{}"], [null, "null"], [5, "5"], [some?.ref, "peer.ref"], [some && new Proxy(some, {}), "Proxy(peer)"],
        [some && Object.create(Object.getPrototypeOf(some)), "Object.create(Peer.prototype)"], [this.otherPeer, "otherBus.peer"],
        [revoked({}), "revoked-Proxy"], [this.bus, "bus"]].filter(([v]) => v !== undefined);
      const [v, d] = r.pick(this.benign(choices));
      to = { v, d };
    }
    const label = `${ref.name}.transfer(${h.d}${to.d ? `, ${to.d}` : ""})`;
    const res = this.call(label, ref, () => (to.v === undefined && x < 30 ? ref.peer.transfer(h.v) : ref.peer.transfer(h.v, to.v)), {
      allow, mustThrow: junk ? "`to` is not a Peer of this bus" : undefined, show: (v) => fmt(v),
    });
    if (res.ok) {
      const id = res.value;
      if (id !== -1 && !(Number.isSafeInteger(id) && id >= 0)) this.fail(`${label} returned ${fmt(id)}`);
      if (id !== -1 && !handedOut(id)) this.softFail(`${label} returned ID ${id} with MANAGED/REMOTE bits ${id % 4}`, "transfer|bits");
      target.addId(id);
      st.addId(h.v);
    }
  }

  opRelease() {
    const ref = this.anyRef();
    if (!ref) return this.opConnect();
    const h = this.idv(ref.st);
    this.call(`${ref.name}.release(${h.d})`, ref, () => ref.peer.release(h.v));
  }

  opDestroy() {
    const ref = this.anyRef();
    if (!ref) return this.opConnect();
    const r = this.rng;
    const nodes = this.idsv(ref.st);
    let opt = { v: undefined, d: null };
    if (r.chance(0.6)) {
      const b = this.boolv();
      opt = this.optionsv([["releaseHandles", b.v, b.d]], { flipKeys: ["releaseHandles"] });
    }
    const label = `${ref.name}.destroy(${nodes.d}${opt.d !== null ? `, ${opt.d}` : ""})`;
    this.call(label, ref, () => ref.peer.destroy(nodes.v, opt.v));
  }

  opReset() {
    const ref = this.anyRef();
    if (!ref) return this.opConnect();
    const r = this.rng, st = ref.st;
    const x = r.int(100);
    let o, flush = false, flushSeed = false, state = "valid";
    if (x < 10) o = { v: undefined, d: "", known: true };
    else {
      const entries = [];
      if (r.chance(0.5)) {
        flush = true;
        entries.push(["flush", true, "true"]);
      }
      if (r.chance(0.3)) {
        flushSeed = true;
        entries.push(["flushSeed", true, "true"]);
      }
      if (r.chance(0.4)) {
        const l = this.limitsv();
        if (l.state !== "valid" && state !== "invalid") state = l.state;
        entries.push(["limits", l.v, l.d]);
      }
      if (r.chance(0.05)) {
        const b = this.boolv();
        entries.push(["flush", b.v, b.d]);
        flush = b.v === true;
        if (!b.valid) state = "invalid";
      }
      o = this.optionsv(entries);
    }
    const label = `${ref.name}.reset(${o.d})`;
    const res = this.call(label, ref, () => ref.peer.reset(o.v), {
      succeed: o.known && state === "valid",
      mustThrow: o.known && state === "invalid" ? "an option is invalid" : o.invalid ? "invalid options" : undefined,
    });
    if (res.ok) {
      // getters return the values they were built with (no flip on flush), so the effect is known
      if (flush) {
        for (const off of st.slices.keys()) st.stale.push(off);
        st.slices.clear();
      }
      if (flushSeed) st.seedOffset = null;
    }
  }

  opQuery() {
    const ref = this.anyRef();
    if (!ref) return this.opConnect();
    const res = this.call(`${ref.name}.query()`, ref, () => ref.peer.query(), { show: (q) => JSON.stringify(q) });
    if (res.ok) {
      const q = res.value;
      for (const k of ["maxSlices", "maxHandles", "maxInflightBytes", "maxInflightObjects"]) {
        if (!Number.isInteger(q?.[k]) || q[k] < 0 || q[k] > U32_MAX) this.fail(`${ref.name}.query().${k} = ${fmt(q?.[k])}`);
      }
    }
  }

  opStats(nested) {
    const ref = nested ? this.openRef() : this.anyRef();
    if (!ref) return nested ? undefined : this.opConnect();
    const res = this.call(`${ref.name}.stats()`, ref, () => ref.peer.stats(), { op: "stats" });
    if (res.ok && ref.st.connected && !ref.closed) this.checkPeerStats(ref.st, res.value, ref.name);
  }

  opDisconnect(nested) {
    const ref = nested ? this.openRef() : this.anyRef();
    if (!ref) return nested ? undefined : this.opConnect();
    const res = this.call(`${ref.name}.disconnect()`, ref, () => ref.peer.disconnect(), { succeed: true });
    if (res.ok) this.markDisconnected(ref.st);
  }

  opClose(nested) {
    const ref = nested ? this.openRef() : this.anyRef();
    if (!ref) return nested ? undefined : this.opConnect();
    this.closeRef(ref, this.rng.chance(0.3), false);
  }

  opWait() {
    const ref = this.anyRef();
    if (!ref) return this.opConnect();
    const r = this.rng;
    const shared = this.kind !== "private";
    const x = r.int(100);
    let t, valid = true;
    if (x < 40) t = 0;
    else if (x < 55) t = r.pick([0.001, 0.01, 0.25]);
    else if (x < 65 && !shared) t = r.pick([undefined, Infinity]);
    else {
      t = r.pick([-1, NaN, "1", null, {}, 1n, -Infinity, -0.5]);
      valid = false;
    }
    const label = `${ref.name}.wait(${t === undefined ? "" : fmt(t)})`;
    const res = this.call(label, ref, () => (t === undefined ? ref.peer.wait() : ref.peer.wait(t)), {
      show: (v) => fmt(v), mustThrow: valid ? undefined : "the timeout is invalid",
    });
    if (res.ok && typeof res.value !== "boolean") this.fail(`${label} returned ${fmt(res.value)}`);
  }

  opReadable() {
    const ref = this.anyRef();
    if (!ref) return this.opConnect();
    const r = this.rng;
    const reason = this.abortReason ??= new Error("fuzz abort reason");
    const x = r.int(100);
    let s;
    if (x < 40) s = { v: undefined, d: "" };
    else if (x < 65) s = { v: AbortSignal.abort(reason), d: "aborted signal" };
    else if (x < 85) {
      const c = new AbortController();
      s = { v: c.signal, d: "signal (aborted later)" };
      this.abortLater = c;
    } else {
      const v = r.pick([{}, 5, "s", { aborted: false }]);
      s = { v, d: `junk:${fmt(v)}` };
    }
    const label = `${ref.name}.readable(${s.d})`;
    const res = this.call(label, ref, () => ref.peer.readable(s.v), { any: true, show: () => "promise" });
    if (res.ok) {
      const p = res.value;
      if (!p || typeof p.then !== "function") this.fail(`${label} returned ${fmt(p)}, not a promise`);
      p.then(() => {}, (e) => {
        if (e !== reason && !(e instanceof Bus1Error) && !(e instanceof FuzzThrow)) {
          this.asyncProblems.push([`${label} rejected with ${errDetail(e)}, not a Bus1Error`, `readable|${errText(e)}`]);
        }
      });
    }
    if (this.abortLater && r.chance(0.3)) {
      const c = this.abortLater;
      this.abortLater = null;
      c.abort(reason);
    }
  }

  opBusMisc() {
    const r = this.rng;
    const x = r.int(100);
    if (x < 20) {
      const res = this.call("bus.handle", null, () => this.bus.handle, { show: () => "handle" });
      if (res.ok && !(res.value?.memory instanceof WebAssembly.Memory)) this.fail("bus.handle has no memory");
    } else if (x < 35) {
      const ref = this.anyRef();
      if (!ref) return;
      // (the bus's id in a ref is random: not shown, so that the digest replays)
      const res = this.call(`${ref.name}.ref`, null, () => ref.peer.ref, { show: (v) => `{slot:${v?.slot},gen:${v?.gen}}` });
      if (res.ok && typeof res.value?.slot !== "number") this.fail(`${ref.name}.ref is ${fmt(res.value)}`);
    } else if (x < 45 && typeof this.bus.inspect === "function" && !this.busClosed) {
      const res = this.call("bus.inspect()", null, () => JSON.stringify(this.bus.inspect()), { show: (s) => `${s.length} chars` });
      if (res.ok && typeof res.value !== "string") this.fail("bus.inspect() is not JSON-serialisable");
    } else if (x < 60) {
      const fake = this.agent ? null : { threadId: 987654, once: (ev, f) => f() };
      const choices = [[null, "null"], [5, "5"], [{}, "{}"], [{ threadId: 1 }, "{threadId:1}"], [revoked({}), "revoked-Proxy"]];
      if (fake) choices.push([fake, "fake worker (exits at once)"]);
      const [v, d] = r.pick(this.benign(choices));
      this.call(`bus.watch(${d})`, null, () => this.bus.watch(v), { bus: true, mustThrow: v === fake ? undefined : "not a worker" });
    } else if (x < 85) {
      const f = this;
      const choices = [[{ shared: "yes" }, "{shared:'yes'}"], [{ limits: { maxSlices: -1 } }, "{limits:{maxSlices:-1}}"],
        [{ maxMemoryBytes: 1 }, "{maxMemoryBytes:1}"], [{ maxMemoryBytes: 2 ** 40 }, "{maxMemoryBytes:2^40}"],
        [{ maxMemoryBytes: NaN }, "{maxMemoryBytes:NaN}"], [{ bogus: 1 }, "{bogus:1}"], [null, "null"], [5, "5"], [[], "[]"],
        [revoked({}), "revoked-Proxy"], [{ limits: null }, "{limits:null}"], [{ limits: { bogus: 1 } }, "{limits:{bogus:1}}"],
        [{ get shared() { f.reenter(); return "no"; } }, "{shared getter→reenter, 'no'}"], [{ limits: 5 }, "{limits:5}"]];
      const [v, d] = r.pick(this.benign(choices));
      return this.callAsync(`Bus.create(${d})`, () => Bus.create(v));
    } else {
      const h = this.safe(() => this.bus.handle);
      const choices = [[null, "null"], [{}, "{}"], [{ id: 1, module: 5, memory: 5 }, "{module:5,memory:5}"],
        [{ id: "x", module: h?.module, memory: h?.memory }, "{id:'x',…}"], [revoked({}), "revoked-Proxy"], [5, "5"]];
      const [v, d] = r.pick(this.benign(choices));
      return this.callAsync(`Bus.attach(${d})`, () => Bus.attach(v));
    }
  }

  /** An async call that must reject with a Bus1Error (its arguments are all invalid). */
  async callAsync(label, fn) {
    const entry = { step: this.stepNo, depth: this.depth, label, out: "(running)" };
    this.record(entry);
    let error = null, value;
    try {
      value = await fn();
    } catch (e) {
      error = e;
    }
    if (this.failure) throw new FuzzFailure("stopped");
    entry.out = error ? errText(error) : "ok";
    this.count(error);
    this.digest = fnv(this.digest, `${entry.step}|${label}|${entry.out}\n`);
    if (this.traceFn) this.traceFn(`#${entry.step} ${label} → ${entry.out}`);
    if (!error) {
      try {
        value?.close?.();
      } catch {
        // it should not have been made at all
      }
      this.fail(`${label} succeeded, but its options are invalid`);
    }
    this.checkThrown(error, label);
  }

  opBusClose(nested) {
    if (this.agent || this.busClosed) return;
    this.call("bus.close()", null, () => this.bus.close(), { succeed: true });
    this.markBusClosed();
    if (!nested) this.log(`bus ${this.busGen} closed at step ${this.stepNo}`);
  }

  // -------------------------------------------------------------------------
  // Re-entrant calls (from getters and Proxy traps, in the middle of a call)

  reenter() {
    if (this.depth > 2 || this.failure || this.broken || this.busClosed) return;
    if (!this.rng.chance(0.7)) return;
    let op = this.rng.weighted(NESTED);
    if (this.agent && op === "nBusClose") op = "nRecv";
    if (this.adopting && (op === "nClose" || op === "nDisconnect" || op === "nBusClose")) op = "nSend";
    this[op]();
  }

  nRecv() {
    const ref = this.openRef();
    if (!ref) return;
    const res = this.call(`${ref.name}.recv()`, ref, () => ref.peer.recv(), {
      show: (m) => (m ? `${m.type} off=${m.offset}` : "null"),
    });
    if (res.ok && res.value) this.gotMessage(ref, res.value, false);
  }

  nSend() {
    const ref = this.openRef();
    if (!ref) return;
    const st = ref.st;
    const id = st.ids.length && this.rng.chance(0.7) ? this.rng.pick(st.ids) : this.rng.pick(CALLER_IDS);
    const n = this.rng.pick([0, 8, 100]);
    this.call(`${ref.name}.send(${fmt(id)}, u8[${n}])`, ref, () => ref.peer.send(id, bytes(n, 9)));
  }

  nMsgRelease() {
    this.opMsgRelease(true);
  }

  nReleaseSlice() {
    this.opReleaseSlice(true);
  }

  nClose() {
    this.opClose(true);
  }

  nTransfer() {
    this.opTransfer(true);
  }

  nDisconnect() {
    this.opDisconnect(true);
  }

  nStats() {
    this.opStats(true);
  }

  nBusClose() {
    this.opBusClose(true);
  }

  // -------------------------------------------------------------------------
  // Invariants

  checkPeerStats(st, s, who) {
    const fields = ["slices", "handles", "bytes", "objects", "poolBytes", "handleIds", "handleRecords", "liveSlices"];
    for (const k of fields) {
      const v = s?.[k];
      if (!Number.isInteger(v) || v < 0 || v > ABSURD) this.fail(`${who}.stats().${k} = ${fmt(v)} (negative or absurd)`);
    }
    if (s.liveSlices !== st.slices.size) {
      this.fail(`${who}.stats().liveSlices = ${s.liveSlices}, but the fuzzer holds ${st.slices.size} unreleased received slices of ${st.name}`);
    }
    if (s.slices < s.liveSlices) this.fail(`${who}.stats(): ${s.slices} slices charged < ${s.liveSlices} live slices`);
  }

  busStats(what) {
    if (typeof this.bus.stats !== "function") this.fail("bus.stats() is missing (the API addition the fuzzer relies on)");
    const res = this.call(`bus.stats() (${what})`, null, () => this.bus.stats(), { quiet: true, succeed: true });
    const s = res.value;
    for (const k of ["heapBytes", "usedBytes", "peers", "users", "threads", "records"]) {
      const v = s?.[k];
      if (!Number.isInteger(v) || v < 0 || v > ABSURD) this.fail(`bus.stats().${k} = ${fmt(v)} (negative or absurd) (${what})`);
    }
    // (other threads change both while they are read: compared on one thread only)
    if (!this.agent && s.usedBytes > s.heapBytes) this.fail(`bus.stats(): usedBytes ${s.usedBytes} > heapBytes ${s.heapBytes}`);
    if (!this.agent && this.busOptions && s.heapBytes > this.busOptions.maxMemoryBytes) {
      this.fail(`bus.stats().heapBytes ${s.heapBytes} > maxMemoryBytes ${this.busOptions.maxMemoryBytes}`);
    }
    if (s.threads < 1) this.fail("bus.stats().threads is 0 in an attached thread");
    if (!this.agent && s.threads !== 1) this.fail(`bus.stats().threads = ${s.threads} on a one-thread bus`);
    return s;
  }

  checkInvariants() {
    if (this.busClosed) return;
    for (const st of this.peers) {
      if (!st.connected || st.gen !== this.busGen) continue;
      const ref = st.refs.find((r) => !r.closed);
      if (!ref) continue;
      const res = this.call(`check ${ref.name}.stats()`, ref, () => ref.peer.stats(), { quiet: true, op: "stats", succeed: true });
      if (!res.ok) this.fail(`${ref.name}.stats() failed: ${errText(res.error)}`);
      this.checkPeerStats(st, res.value, ref.name);
    }
    const s = this.busStats(`after step ${this.stepNo}`);
    if (!this.agent) {
      const alive = this.alivePeers();
      const connected = alive.filter((p) => p.connected).length;
      if (s.peers < connected || s.peers > alive.length) {
        this.fail(`bus.stats().peers = ${s.peers}, but the fuzzer has ${connected} connected peers and references ${alive.length}`);
      }
    }
  }
}

/**
 * One seeded run. options: { seed, steps | seconds, kind: "private" | "shared",
 * log, trace, inject, progress }. Returns { ok, seed, kind, steps, digest,
 * counts, failure?: { step, message, history, replay } }.
 */
export async function runFuzz(options = {}) {
  const f = new Fuzzer(options);
  const steps = options.steps ?? (options.seconds ? Infinity : DEFAULT_STEPS);
  const deadline = options.seconds ? performance.now() + options.seconds * 1000 : Infinity;
  try {
    await f.init();
    // in chunks, so that readable() promises and timers get their turn
    while (f.stepNo < steps && (await f.steps(Math.min(64, steps - f.stepNo), deadline))) {
      if (performance.now() > deadline) break;
      await new Promise((r) => setImmediate(r));
    }
  } catch (e) {
    if (!f.failure && !(e instanceof FuzzFailure)) f.failure = { step: f.stepNo, message: `escaped: ${errDetail(e)}`, history: f.historyLines() };
  }
  await f.finish();
  const r = f.result();
  if (!r.ok) f.log(formatFailure(r));
  return r;
}

/** A failure as text: what, where, how to replay, the last operations. */
export function formatFailure(r) {
  if (r.ok) return `seed ${r.seed} (${r.kind}): ok, ${r.steps} steps`;
  const f = r.failure;
  const lines = [
    `FAIL seed=${r.seed} kind=${r.kind} step=${f.step}: ${f.message}`,
    `  replay: ${f.replay}`,
    `  last operations:`,
    ...f.history.map((l) => `    ${l}`),
  ];
  const more = (r.others ?? []).filter((o) => o.step !== f.step || o.message !== f.message);
  if (more.length) {
    lines.push(`  also (${more.length}):`);
    for (const o of more) lines.push(`    step ${o.step}: ${o.message.split("\n")[0].slice(0, 300)}`);
  }
  return lines.join("\n");
}
