// Shared vocabulary of the test suite: making buses, asserting error codes,
// and turning received messages into plain values that outlive their slices.
//
// Every bus made with newBus()/newSharedBus() is closed after each test.

import { afterEach, expect } from "vitest";
import {
  Bus,
  Bus1Error,
  HANDLE_FLAG_MANAGED,
  HANDLE_FLAG_REMOTE,
  HANDLE_INVALID,
} from "bus1-wasm";
import type { ErrorCode, Limits, Message, MessageLike, Peer } from "bus1-wasm";
// internals: whether the installed host has a Courier (not part of the API)
import { requirePlatform } from "../dist/host-common/platform.js";

export type { ErrorCode, Limits, Message, Peer };

export const DEFAULT_LIMITS = {
  maxSlices: 16384,
  maxHandles: 65536,
  maxInflightBytes: 16 * 1024 * 1024,
  maxInflightObjects: 4096,
} as const;

/** A managed ID that no peer in these tests will ever be handed. */
export const UNKNOWN_MANAGED = 2 ** 40 + HANDLE_FLAG_MANAGED;
/** The same, with the REMOTE bit set too. */
export const UNKNOWN_REMOTE = 2 ** 40 + HANDLE_FLAG_MANAGED + HANDLE_FLAG_REMOTE;

/**
 * Whether this host moves ports, streams and listed ArrayBuffers out of the
 * sending thread: to another thread, or to a served peer's plugin (a
 * Courier: Node). Without one (Deno, browsers) they reach receivers in the
 * sending thread only and are EOPNOTSUPP elsewhere (SPEC §9): tests of
 * moving values check that instead.
 */
export const HOST_MOVES_OBJECTS = requirePlatform().courier !== undefined;

/** The installed host ("node", "deno", "browser"), for the few checks that differ by design. */
export const HOST_NAME = requirePlatform().name;

/** Whether this thread may block in wait() (not a browser's main thread: there a wait that could block is EOPNOTSUPP). */
export const CAN_BLOCK = requirePlatform().canBlock();

/** Where `a` and `b` first differ (-1: equal); a deep equal of megabytes is too slow to report. */
export function firstDifference(a: Uint8Array, b: Uint8Array): number {
  if (a.length !== b.length) return Math.min(a.length, b.length);
  for (let i = 0; i < a.length; i++) if (a[i] !== b[i]) return i;
  return -1;
}

/** The next message on `port`, by the web-standard API (Node, Deno and browsers alike). */
export function nextMessage(port: MessagePort): Promise<unknown> {
  return new Promise((resolve) => {
    port.addEventListener("message", (e) => resolve((e as MessageEvent).data), { once: true });
    port.start();
  });
}

// ---------------------------------------------------------------------------
// buses

const openBuses: Bus[] = [];

afterEach(() => {
  for (const bus of openBuses.splice(0)) {
    try {
      bus.close();
    } catch {
      // a test may already have closed it
    }
  }
});

/** A deterministic single-thread bus on private memory (the default here). */
export async function newBus(options: Record<string, unknown> = {}): Promise<Bus> {
  const bus = await Bus.create({ shared: false, ...options } as any);
  openBuses.push(bus);
  return bus;
}

/** A bus with the platform default memory (shared where possible), one thread. */
export async function newSharedBus(options?: Record<string, unknown>): Promise<Bus> {
  const bus = options === undefined ? await Bus.create() : await Bus.create(options as any);
  openBuses.push(bus);
  return bus;
}

export type BusKind = "private" | "shared";

export function makeBus(kind: BusKind, options: Record<string, unknown> = {}): Promise<Bus> {
  return kind === "private" ? newBus(options) : newSharedBus(options);
}

/** A bus and `n` peers on it (user 0). */
export async function peers(n: number, kind: BusKind = "private") {
  const bus = await makeBus(kind);
  const list: Peer[] = [];
  for (let i = 0; i < n; i++) list.push(bus.connect());
  return { bus, peers: list };
}

// ---------------------------------------------------------------------------
// errors

function failWithCode(thrown: unknown, codes: readonly string[]): Bus1Error {
  expect(thrown, `expected a Bus1Error ${codes.join("|")}`).toBeInstanceOf(Bus1Error);
  expect(thrown).toBeInstanceOf(Error);
  const err = thrown as Bus1Error;
  expect(codes, `got ${err.code}: ${err.message}`).toContain(err.code);
  expect(typeof err.message).toBe("string");
  expect(err.message.length).toBeGreaterThan(0);
  return err;
}

/** Asserts that `fn` throws a Bus1Error whose code is `code`. */
export function expectCode(fn: () => unknown, code: ErrorCode | string): Bus1Error {
  return expectCodeIn(fn, [code]);
}

/** Asserts that `fn` throws a Bus1Error whose code is one of `codes`. */
export function expectCodeIn(fn: () => unknown, codes: readonly string[]): Bus1Error {
  let threw = false;
  let thrown: unknown;
  let result: unknown;
  try {
    result = fn();
  } catch (e) {
    threw = true;
    thrown = e;
  }
  expect(threw, `expected ${codes.join("|")}, but the call returned ${String(result)}`).toBe(true);
  return failWithCode(thrown, codes);
}

/** Like expectCode, for a call that may throw synchronously or reject. */
export async function expectCodeAsync(fn: () => unknown, code: ErrorCode | string): Promise<Bus1Error> {
  let threw = false;
  let thrown: unknown;
  try {
    await fn();
  } catch (e) {
    threw = true;
    thrown = e;
  }
  expect(threw, `expected ${code}, but the call succeeded`).toBe(true);
  return failWithCode(thrown, [code]);
}

// ---------------------------------------------------------------------------
// payloads

export function enc(text: string): Uint8Array {
  return new TextEncoder().encode(text);
}

/** Decodes a payload; copies first, as TextDecoder refuses shared memory. */
export function dec(bytes: Uint8Array): string {
  return new TextDecoder().decode(bytes.slice());
}

export function bytesOf(n: number, fill: number): Uint8Array {
  return new Uint8Array(n).fill(fill);
}

export function pad8(n: number): number {
  return (n + 7) & ~7;
}

// ---------------------------------------------------------------------------
// messages

/** A received message (of a local or a served peer), copied out of its slice. */
export interface Received {
  type: MessageLike["type"];
  destination: number;
  continue: boolean;
  offset: number;
  text: string;
  bytes: Uint8Array;
  handles: number[];
  objects: unknown[];
}

export function copyMessage(msg: MessageLike): Received {
  return {
    type: msg.type,
    destination: msg.destination,
    continue: msg.continue,
    offset: msg.offset,
    text: dec(msg.payload),
    bytes: msg.payload.slice(),
    handles: Array.from(msg.handles),
    objects: Array.from(msg.objects),
  };
}

/** Receives one message, copies it and (unless keep) releases its slice. */
export function take(peer: Peer, options: { keep?: boolean } = {}): Received | null {
  const msg = peer.recv();
  if (msg === null) return null;
  const copy = copyMessage(msg);
  if (!options.keep) msg.release();
  return copy;
}

/** Receives one message that must be there. */
export function takeOne(peer: Peer, options: { keep?: boolean } = {}): Received {
  const msg = take(peer, options);
  expect(msg, "expected a queued message").not.toBeNull();
  return msg as Received;
}

/** Receives every ready message, copied; slices are released unless keep. */
export function drain(peer: Peer, options: { keep?: boolean } = {}): Received[] {
  const out: Received[] = [];
  for (let msg = take(peer, options); msg !== null; msg = take(peer, options)) {
    out.push(msg);
    if (out.length > 100_000) throw new Error("drain: queue does not end");
  }
  return out;
}

/** The payloads of every ready message, as text. */
export function drainTexts(peer: Peer): string[] {
  return drain(peer).map((m) => m.text);
}

/** Asserts that nothing is ready on `peer`. */
export function expectEmpty(peer: Peer): void {
  const msg = peer.recv();
  expect(msg === null ? null : copyMessage(msg)).toBeNull();
}

/** Asserts the shape every notification has. */
export function expectNotification(
  msg: Received | null,
  type: "node-destroy" | "node-release",
  destination: number,
): void {
  expect(msg).not.toBeNull();
  expect(msg!.type).toBe(type);
  expect(msg!.destination).toBe(destination);
  expect(msg!.offset).toBe(-1);
  expect(msg!.bytes.length).toBe(0);
  expect(msg!.handles).toEqual([]);
  expect(msg!.objects).toEqual([]);
}

/** A DataView over a message's whole slice: payload, padding, handle and object arrays. */
export function sliceView(msg: Message): DataView {
  const p = msg.payload;
  const size = pad8(p.byteLength) + 8 * msg.handles.length + pad8(4 * msg.objects.length);
  return new DataView(p.buffer, p.byteOffset, size);
}

// ---------------------------------------------------------------------------
// handle IDs

export function isManaged(id: number): boolean {
  return (id & HANDLE_FLAG_MANAGED) !== 0;
}

export function isRemote(id: number): boolean {
  return (id & HANDLE_FLAG_REMOTE) !== 0;
}

/** A core-assigned ID of a handle to a node owned by another peer. */
export function expectRemoteId(id: number): void {
  expect(id).not.toBe(HANDLE_INVALID);
  expect(Number.isSafeInteger(id)).toBe(true);
  expect(id).toBeGreaterThan(0);
  expect(isManaged(id)).toBe(true);
  expect(isRemote(id)).toBe(true);
}

export { Bus, Bus1Error, HANDLE_FLAG_MANAGED, HANDLE_FLAG_REMOTE, HANDLE_INVALID };
