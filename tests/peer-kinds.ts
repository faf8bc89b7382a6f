// The two kinds of peer a behaviour test runs on (issue 9), behind one
// asynchronous interface (RemotePeerApi, plus readable() and the iterator):
//
// - local:  a Peer made by bus.connect(), its methods wrapped so that they
//           return promises. A synchronous throw becomes a rejection; a
//           method that returned a promise instead would be a bug of Peer
//           (its methods are synchronous) and rejects with a plain Error.
// - served: the same Peer served with bus.serve(peer, port) over a
//           MessageChannel (the global one), in this thread, driven
//           through `await RemotePeer.connect(otherPort)`. A RemotePeer
//           method that throws synchronously is a bug (API.md: "never a
//           synchronous throw") and rejects with a plain Error.
//
// A test sets its peer up while it is still a plain Peer (transfers to it,
// limits), then turns it into the peer under test with `kind.wrap(bus, peer)`
// and never touches the Peer object again: serving takes it over. Other
// parties are local peers of the same bus.
//
// Every port and serving made here is closed after each test; buses are
// closed by helpers.ts.

import { afterEach, expect, vi } from "vitest";
import { Bus, Bus1Error, RemotePeer } from "bus1-wasm";
import type { ErrorCode, MessageLike, Peer, RemotePeerApi, Serving } from "bus1-wasm";
import { copyMessage, type Received } from "./helpers.js";

/** The operations of every kind of peer (api.ts PEER_METHODS). */
export const PEER_METHODS = [
  "send", "recv", "transfer", "release", "destroy", "releaseSlice", "reset", "query", "stats", "disconnect", "close",
] as const;

/** The object behind a peer under test: its Peer (local) or its RemotePeer (served). */
export const ENDPOINT = Symbol("endpoint");

/** The peer under test: every operation returns a promise. */
export interface TestPeer extends RemotePeerApi<TestPeer, MessageLike> {
  readonly [ENDPOINT]: Peer | RemotePeer;
  readable(signal?: AbortSignal): Promise<void>;
  [Symbol.asyncIterator](): AsyncIterator<MessageLike>;
}

export interface PeerKind {
  readonly name: "local" | "served";
  /** True for the served kind: where a behaviour differs by design, tests branch on this. */
  readonly served: boolean;
  /** Makes `peer` (a Peer of `bus`, set up by the test) the peer under test. */
  wrap(bus: Bus, peer: Peer): Promise<TestPeer>;
}

// Every test here is short (the slowest take a few hundred ms): one that hangs fails in 5 s, not 30.
vi.setConfig({ testTimeout: 5_000, hookTimeout: 5_000 });

// ---- cleanup -----------------------------------------------------------------------

const openPorts: MessagePort[] = [];
const openServings: Serving[] = [];
const openRemotes: RemotePeer[] = [];
const closing = new WeakMap<TestPeer, Promise<string>>();

afterEach(async () => {
  for (const r of openRemotes.splice(0)) await r.close().catch(() => undefined);
  for (const s of openServings.splice(0)) s.close("test over");
  for (const p of openPorts.splice(0)) p.close();
});

// ---- local -------------------------------------------------------------------------

function isThenable(v: unknown): boolean {
  return (typeof v === "object" || typeof v === "function") && v !== null && typeof (v as { then?: unknown }).then === "function";
}

/** A local Peer behind the asynchronous interface. */
function localPeer(peer: Peer): TestPeer {
  const self: Record<string | symbol, unknown> = {};
  for (const m of PEER_METHODS) {
    self[m] = (...args: unknown[]): Promise<unknown> => {
      // transfer's `to` may name the peer under test itself: that is its Peer
      if (m === "transfer" && args[1] === self) args = [args[0], peer];
      let result: unknown;
      try {
        result = (peer as unknown as Record<string, (...a: unknown[]) => unknown>)[m](...args);
      } catch (e) {
        return Promise.reject(e);
      }
      if (isThenable(result)) {
        return Promise.reject(new Error(`local Peer.${m} returned a promise: a Peer's methods are synchronous`));
      }
      return Promise.resolve(result);
    };
  }
  self.readable = (signal?: AbortSignal) => peer.readable(signal);
  self[Symbol.asyncIterator] = () => peer[Symbol.asyncIterator]();
  self[ENDPOINT] = peer;
  const t = self as unknown as TestPeer;
  closing.set(t, Promise.resolve("local"));
  return t;
}

// ---- served ------------------------------------------------------------------------

/** A RemotePeer whose methods are checked never to throw synchronously. */
function servedPeer(remote: RemotePeer): TestPeer {
  const self: Record<string | symbol, unknown> = {};
  const call = (m: string, args: unknown[]): Promise<unknown> => {
    if (m === "transfer" && args[1] === self) args = [args[0], remote];
    try {
      return (remote as unknown as Record<string, (...a: unknown[]) => Promise<unknown>>)[m](...args);
    } catch (e) {
      return Promise.reject(new Error(`RemotePeer.${m} threw synchronously (${String(e)}): it must reject instead`));
    }
  };
  for (const m of PEER_METHODS) self[m] = (...args: unknown[]) => call(m, args);
  self.readable = (signal?: AbortSignal) => call("readable", [signal]);
  self[Symbol.asyncIterator] = () => remote[Symbol.asyncIterator]();
  self[ENDPOINT] = remote;
  return self as unknown as TestPeer;
}

export const local: PeerKind = Object.freeze({
  name: "local",
  served: false,
  async wrap(_bus: Bus, peer: Peer) {
    return localPeer(peer);
  },
});

export const served: PeerKind = Object.freeze({
  name: "served",
  served: true,
  async wrap(bus: Bus, peer: Peer) {
    const { port1, port2 } = new MessageChannel();
    openPorts.push(port1, port2);
    const serving = bus.serve(peer, port1 as never);
    openServings.push(serving);
    const remote = await RemotePeer.connect(port2 as never);
    openRemotes.push(remote);
    const t = servedPeer(remote);
    closing.set(t, serving.closed);
    return t;
  },
});

/** Both kinds, for describe.each: `describe.each(kinds)("… ($name peer)", (kind) => …)`. */
export const kinds: readonly PeerKind[] = [local, served];

/**
 * Resolves once `p` has let go of its Peer reference after `close()`: at once
 * for a local peer; for a served one when the serving has ended (the close
 * travels over the port). Bounded in time.
 */
export async function settledClose(p: TestPeer, ms = 2000): Promise<string> {
  const done = closing.get(p);
  if (!done) throw new Error("not a peer under test");
  let timer: ReturnType<typeof setTimeout> | undefined;
  const timeout = new Promise<string>((_, reject) => {
    timer = setTimeout(() => reject(new Error(`the peer did not let go within ${ms} ms`)), ms);
  });
  try {
    return await Promise.race([done, timeout]);
  } finally {
    clearTimeout(timer);
  }
}

// ---- errors ------------------------------------------------------------------------

/**
 * Asserts that `call()` returns a promise that rejects with a Bus1Error of
 * `code`, and (if given) exactly `message` (a string) or a message matching it
 * (a RegExp). A synchronous throw fails: every operation of the peer under test
 * is asynchronous.
 */
export async function rejects(call: () => Promise<unknown>, code: ErrorCode, message?: string | RegExp): Promise<Bus1Error> {
  let promise: Promise<unknown>;
  try {
    promise = call();
  } catch (e) {
    throw new Error(`expected a rejected promise, the call threw synchronously: ${String(e)}`);
  }
  expect(isThenable(promise), "the call returns a promise").toBe(true);
  let value: unknown;
  let thrown: unknown;
  let threw = false;
  try {
    value = await promise;
  } catch (e) {
    threw = true;
    thrown = e;
  }
  expect(threw, `expected ${code}, but the call resolved with ${safeString(value)}`).toBe(true);
  expect(thrown, `expected a Bus1Error ${code}, got ${safeString(thrown)}`).toBeInstanceOf(Bus1Error);
  const err = thrown as Bus1Error;
  expect(err.code, `the code of "${err.message}"`).toBe(code);
  if (typeof message === "string") expect(err.message).toBe(message);
  else if (message) expect(err.message).toMatch(message);
  return err;
}

function safeString(v: unknown): string {
  try {
    return typeof v === "string" ? JSON.stringify(v) : v instanceof Error ? `${v.name}: ${v.message}` : JSON.stringify(v) ?? String(v);
  } catch {
    return String(v);
  }
}

/** The outcome of a call: its value, or the code and message of its Bus1Error. */
export async function outcome(call: () => Promise<unknown>): Promise<{ ok: unknown } | { code: string; message: string }> {
  try {
    return { ok: await call() };
  } catch (e) {
    expect(e).toBeInstanceOf(Bus1Error);
    return { code: (e as Bus1Error).code, message: (e as Bus1Error).message };
  }
}

// ---- messages ----------------------------------------------------------------------

/** A received message, copied: it outlives its slice (helpers.ts). */
export type Got = Received;
export const copy = copyMessage;

/** Receives one message from the peer under test, copies it and (unless keep) releases it. */
export async function take(p: TestPeer, options: { keep?: boolean } = {}): Promise<Got | null> {
  const msg = await p.recv();
  if (msg === null) return null;
  const c = copy(msg);
  if (!options.keep) msg.release();
  return c;
}

/** Receives one message that must be ready. */
export async function takeOne(p: TestPeer, options: { keep?: boolean } = {}): Promise<Got> {
  const msg = await take(p, options);
  expect(msg, "expected a message to be ready").not.toBeNull();
  return msg as Got;
}

/** Receives every ready message. */
export async function drain(p: TestPeer, options: { keep?: boolean } = {}): Promise<Got[]> {
  const out: Got[] = [];
  for (let m = await take(p, options); m !== null; m = await take(p, options)) {
    out.push(m);
    if (out.length > 100_000) throw new Error("drain: the queue does not end");
  }
  return out;
}

export async function drainTexts(p: TestPeer): Promise<string[]> {
  return (await drain(p)).map((m) => m.text);
}

/** Asserts that nothing is ready on the peer under test. */
export async function expectNothing(p: TestPeer): Promise<void> {
  const msg = await p.recv();
  expect(msg === null ? null : copy(msg)).toBeNull();
}

/** Asserts the shape of a notification. */
export function expectNote(msg: Got | null, type: "node-destroy" | "node-release", destination: number): void {
  expect(msg, `expected a ${type}`).not.toBeNull();
  expect({ type: msg!.type, destination: msg!.destination, offset: msg!.offset, size: msg!.bytes.length,
    handles: msg!.handles, objects: msg!.objects })
    .toEqual({ type, destination, offset: -1, size: 0, handles: [], objects: [] });
}

/** The alias offset a served peer gives its n-th data message (remote.ts): 2^32 + 8n. */
export function aliasOf(n: number): number {
  return 2 ** 32 + 8 * n;
}

export const tick = (ms = 0) => new Promise<void>((r) => setTimeout(r, ms));

/** Resolves when `cond()` holds (polled); fails after `ms`. */
export async function until(cond: () => boolean, ms = 2000, what = "a condition"): Promise<void> {
  const end = Date.now() + ms;
  while (!cond()) {
    if (Date.now() > end) throw new Error(`timed out waiting for ${what}`);
    await tick(2);
  }
}

/** Races `promise` against `ms` of time: "timeout" if it has not settled by then. */
export async function within<T>(promise: Promise<T>, ms: number): Promise<T | "timeout"> {
  let timer: ReturnType<typeof setTimeout> | undefined;
  try {
    return await Promise.race([promise, new Promise<"timeout">((r) => { timer = setTimeout(() => r("timeout"), ms); })]);
  } finally {
    clearTimeout(timer);
  }
}

/** The (type, destination) pairs of `messages`, sorted by type, then by destination as a number. */
export function notesOf(messages: readonly { type: string; destination: number }[]): [string, number][] {
  return messages.map((m) => [m.type, m.destination] as [string, number])
    .sort((x, y) => (x[0] < y[0] ? -1 : x[0] > y[0] ? 1 : x[1] - y[1]));
}
