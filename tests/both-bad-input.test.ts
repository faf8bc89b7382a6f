// Bad input on both kinds of peer (issue 9): every refused call is a rejected
// promise with a Bus1Error of the same code and the same message from a local
// and a served peer, and leaves the peer exactly as it was (SPEC §2, §10;
// API.md "Sandboxed peers": "with the same code and message a local peer gives
// for the same arguments"). Underneath, a local Peer throws synchronously and
// a RemotePeer never does.

import { describe, expect, it } from "vitest";
import { Peer, RemotePeer } from "bus1-wasm";
import { Bus1Error, dec, enc, expectEmpty, newBus, drainTexts as drainLocal } from "./helpers.js";
import type { ErrorCode } from "./helpers.js";
import { ENDPOINT, PEER_METHODS, expectNothing, kinds, rejects, take, type PeerKind, type TestPeer } from "./peer-kinds.js";

/**
 * p holds hb (11) to b's node 4; b holds hp (11) to p's node 0x200. p holds one
 * received message ("held"), has released another ("gone") and has one still
 * to receive ("queued"). Nobody has a node 0x100: bad calls name it, so that a
 * call that went half-way would show up as a created node.
 */
async function fixture(kind: PeerKind) {
  const bus = await newBus();
  const s = bus.connect();
  const b = bus.connect();
  const hb = b.transfer(4, s);
  const hp = s.transfer(0x200, b);
  b.send(hp, enc("held"));
  b.send(hp, enc("gone"));
  b.send(hp, enc("queued"));
  const p = await kind.wrap(bus, s);
  const held = (await p.recv())!;
  const gone = (await p.recv())!;
  gone.release();
  return { bus, p, b, hb, held, goneOffset: gone.offset, limits: await p.query() };
}

type Fixture = Awaited<ReturnType<typeof fixture>>;

async function expectUnchanged(f: Fixture) {
  expect(await f.p.query()).toEqual(f.limits);
  expect(dec(f.held.payload)).toBe("held");
  await rejects(() => f.p.release(0x100), "ENXIO");
  expect((await take(f.p))?.text).toBe("queued");
  await expectNothing(f.p);
  expect(await f.p.recv({ seed: true })).toBeNull();
  await f.p.send(f.hb, enc("after"));
  expect(drainLocal(f.b)).toEqual(["after"]);
  f.held.release();
  expectEmpty(f.b);
}

/** A call on any kind of peer (the wrapped one, or the object underneath). */
type Call = (p: any, f: Fixture) => unknown;

/** Each bad call: its code and its exact message, the same from both kinds. */
const CASES: [string, ErrorCode, string, Call][] = [
  // send: destinations
  ["send to a negative ID", "EINVAL", "send: destinations[1] (-4): invalid argument (EINVAL)", (p) => p.send([0x100, -4])],
  // one destination by number, no options: the common send (a served peer's is checked by the serving side's send)
  ["send to one negative ID", "EINVAL", "send: destinations[0] (-4): invalid argument (EINVAL)", (p) => p.send(-4, new Uint8Array(2))],
  ["send to one fractional ID", "EINVAL", "send: destinations[0] (1.5): invalid argument (EINVAL)", (p) => p.send(1.5)],
  ["send to NaN", "EINVAL", "send: destinations[0] (NaN): invalid argument (EINVAL)", (p) => p.send(NaN, new Uint8Array(0))],
  ["send to 2^64, alone", "EINVAL", "send: destinations[0] (18446744073709552000): invalid argument (EINVAL)", (p) => p.send(2 ** 64)],
  ["send to HANDLE_INVALID", "EINVAL", "send: destinations[1] (-1): invalid argument (EINVAL)", (p) => p.send([0x100, -1])],
  ["send to 2^64", "EINVAL", "send: destinations[1] (18446744073709552000): invalid argument (EINVAL)", (p) => p.send([0x100, 2 ** 64])],
  ["send to Number.MAX_VALUE", "EINVAL", "send: destinations[1] (1.7976931348623157e+308): invalid argument (EINVAL)", (p) => p.send([0x100, Number.MAX_VALUE])],
  ["send to a bigint ID", "EINVAL", "send: destinations[1] (4): invalid argument (EINVAL)", (p) => p.send([0x100, 4n])],
  ["send to a boolean", "EINVAL",
    "send: destinations must be a handle ID or an array of handle IDs, got true: invalid argument (EINVAL)", (p) => p.send(true)],
  ["send to a plain object", "EINVAL",
    "send: destinations must be a handle ID or an array of handle IDs, got an object with length undefined: invalid argument (EINVAL)", (p) => p.send({})],
  ["send to a string", "EINVAL",
    "send: destinations must be a handle ID or an array of handle IDs, got \"x\": invalid argument (EINVAL)", (p) => p.send("x")],
  ["send to an array-like of negative length", "EINVAL",
    "send: destinations must be a handle ID or an array of handle IDs, got an object with length -1: invalid argument (EINVAL)", (p) => p.send({ length: -1 })],
  ["send to an array-like of 2^32 destinations", "EMSGSIZE",
    "send: destinations: 4294967296 entries, more than 65536: message too large (EMSGSIZE)", (p) => p.send({ length: 2 ** 32 })],
  ["send to 65537 destinations", "EMSGSIZE",
    "send: destinations: 65537 entries, more than 65536: message too large (EMSGSIZE)", (p) => p.send(new Array(65537).fill(0x100))],
  ["send to a destination twice", "ENOTUNIQ",
    "send: destinations[1] (11): listed twice (ENOTUNIQ)", (p, f) => p.send([f.hb, f.hb])],
  // send: payload
  ["send with a string payload", "EINVAL",
    "send: payload must be a Uint8Array or an array of them, got \"text\": invalid argument (EINVAL)", (p) => p.send(0x100, "text")],
  ["send with a number payload", "EINVAL",
    "send: payload must be a Uint8Array or an array of them, got 42: invalid argument (EINVAL)", (p) => p.send(0x100, 42)],
  ["send with an array of numbers as payload", "EINVAL",
    "send: payload[0] must be a Uint8Array, got 1: invalid argument (EINVAL)", (p) => p.send(0x100, [1, 2, 3])],
  ["send with a vec that is not a Uint8Array", "EINVAL",
    "send: payload[1] must be a Uint8Array, got \"b\": invalid argument (EINVAL)", (p) => p.send(0x100, [enc("a"), "b"])],
  ["send with a Uint16Array payload", "EINVAL",
    "send: payload must be a Uint8Array or an array of them, got a Uint16Array of 4 bytes: invalid argument (EINVAL)", (p) => p.send(0x100, new Uint16Array(2))],
  ["send with a Proxy of a Uint8Array", "EINVAL",
    "send: payload must be a Uint8Array or an array of them, got an object: invalid argument (EINVAL)", (p) => p.send(0x100, new Proxy(enc("x"), {}))],
  ["send with a payload whose buffer is detached", "EINVAL",
    "send: payload must be a Uint8Array or an array of them, got a Uint8Array of 0 bytes: invalid argument (EINVAL)", (p) => {
    const bytes = enc("gone");
    structuredClone(bytes.buffer, { transfer: [bytes.buffer] });
    return p.send(0x100, bytes);
  }],
  ["send with 1025 vecs", "EMSGSIZE",
    "send: payload: 1025 vecs, more than 1024: message too large (EMSGSIZE)", (p) => p.send(0x100, Array.from({ length: 1025 }, () => enc("v")))],
  ["send with a sparse array of 100000 vecs", "EMSGSIZE",
    "send: payload: 100000 vecs, more than 1024: message too large (EMSGSIZE)", (p) => p.send(0x100, new Array(100_000))],
  // send: options
  ["send with options that are not an object", "EINVAL",
    "send: options must be an object, got 5: invalid argument (EINVAL)", (p) => p.send(0x100, enc("x"), 5)],
  ["send with an unknown option", "EINVAL",
    "send: unknown option \"bogus\": invalid argument (EINVAL)", (p) => p.send(0x100, enc("x"), { bogus: true })],
  ["send with handles that are not array-like", "EINVAL",
    "send: handles must be an array of handle IDs, got 5: invalid argument (EINVAL)", (p) => p.send(0x100, enc("x"), { handles: 5 })],
  ["send with a string handle", "EINVAL",
    "send: handles[0] (\"8\"): invalid argument (EINVAL)", (p) => p.send(0x100, enc("x"), { handles: ["8"] })],
  ["send with a fractional handle", "EINVAL",
    "send: handles[0] (7.5): invalid argument (EINVAL)", (p) => p.send(0x100, enc("x"), { handles: [7.5] })],
  ["send with an array-like of 2^40 handles", "EMSGSIZE",
    "send: handles: 1099511627776 entries, more than 1048576: message too large (EMSGSIZE)", (p) => p.send(0x100, enc("x"), { handles: { length: 2 ** 40 } })],
  ["send with objects that are not an array", "EINVAL",
    "send: objects must be an array, got 5: invalid argument (EINVAL)", (p) => p.send(0x100, enc("x"), { objects: 5 })],
  ["send with 257 objects", "EMSGSIZE",
    "send: objects: 257 entries, more than 256: message too large (EMSGSIZE)", (p) => p.send(0x100, undefined, { objects: new Array(257).fill(1) })],
  ["send with a non-boolean continue", "EINVAL",
    "send: continue must be a boolean, got \"yes\": invalid argument (EINVAL)", (p) => p.send(0x100, enc("x"), { continue: "yes" })],
  ["send with a non-boolean seed", "EINVAL",
    "send: seed must be a boolean, got 1: invalid argument (EINVAL)", (p) => p.send([], enc("x"), { seed: 1 })],
  ["send with seed and a destination", "EINVAL",
    "send: seed: a seed has no destinations, got 1: invalid argument (EINVAL)", (p) => p.send(0x100, enc("x"), { seed: true })],
  ["send with seed and continue", "EINVAL",
    "send: continue: a seed is set, not sent, so continue has no meaning: invalid argument (EINVAL)", (p) => p.send([], enc("x"), { seed: true, continue: true })],
  ["send with a getter that throws", "EINVAL",
    "send: options could not be read (boom): invalid argument (EINVAL)", (p) => p.send(0x100, undefined, { get handles() { throw new Error("boom"); } })],
  ["send to an unknown handle", "ENXIO",
    "send: destinations[1] (1099511627779): no such handle or slice (ENXIO)", (p) => p.send([0x100, 2 ** 40 + 3])],
  ["send with an unknown attached handle", "ENXIO",
    "send: handles[0] (1099511627777): no such handle or slice (ENXIO)", (p) => p.send(0x100, undefined, { handles: [2 ** 40 + 1] })],
  // recv
  ["recv with an unknown option", "EINVAL",
    "recv: unknown option \"bogus\": invalid argument (EINVAL)", (p) => p.recv({ bogus: true })],
  ["recv with options that are not an object", "EINVAL",
    "recv: options must be an object, got 5: invalid argument (EINVAL)", (p) => p.recv(5)],
  ["recv with a non-boolean seed", "EINVAL",
    "recv: seed must be a boolean, got \"yes\": invalid argument (EINVAL)", (p) => p.recv({ seed: "yes" })],
  // transfer
  ["transfer of a fractional ID", "EINVAL",
    "transfer: handle (1.5): invalid argument (EINVAL)", (p) => p.transfer(1.5)],
  ["transfer of a string ID", "EINVAL",
    "transfer: handle (\"256\"): invalid argument (EINVAL)", (p) => p.transfer("256")],
  ["transfer of an unknown handle", "ENXIO",
    "transfer: handle (1099511627779): no such handle or slice (ENXIO)", (p) => p.transfer(2 ** 40 + 3)],
  // release
  ["release of HANDLE_INVALID", "EINVAL",
    "release: handle (-1): invalid argument (EINVAL)", (p) => p.release(-1)],
  ["release of a string", "EINVAL",
    "release: handle (\"4\"): invalid argument (EINVAL)", (p) => p.release("4")],
  ["release with no argument", "EINVAL",
    "release: handle (undefined): invalid argument (EINVAL)", (p) => p.release()],
  ["release of NaN", "EINVAL",
    "release: handle (NaN): invalid argument (EINVAL)", (p) => p.release(NaN)],
  ["release of an owner's last reference", "EBUSY",
    "release: handle (512): the last reference of a live node's owner handle cannot be released (EBUSY)", (p) => p.release(0x200)],
  // destroy
  ["destroy with an unknown option", "EINVAL",
    "destroy: unknown option \"bogus\": invalid argument (EINVAL)", (p) => p.destroy(0x100, { bogus: true })],
  ["destroy with options that are not an object", "EINVAL",
    "destroy: options must be an object, got 3: invalid argument (EINVAL)", (p) => p.destroy(0x100, 3)],
  ["destroy with a non-boolean releaseHandles", "EINVAL",
    "destroy: releaseHandles must be a boolean, got \"yes\": invalid argument (EINVAL)", (p) => p.destroy(0x200, { releaseHandles: "yes" })],
  ["destroy of an array-like of negative length", "EINVAL",
    "destroy: nodes must be a handle ID or an array of handle IDs, got an object with length -1: invalid argument (EINVAL)", (p) => p.destroy({ length: -1 })],
  ["destroy of an array-like of 2^32 nodes", "EINVAL",
    "destroy: nodes: 4294967296 entries, more than 1048576: invalid argument (EINVAL)", (p) => p.destroy({ length: 2 ** 32 })],
  ["destroy of 2^20 + 1 nodes", "EINVAL",
    "destroy: nodes: 1048577 entries, more than 1048576: invalid argument (EINVAL)", (p) => p.destroy({ length: 2 ** 20 + 1 })],
  ["destroy of a fractional ID", "EINVAL",
    "destroy: nodes[1] (0.5): invalid argument (EINVAL)", (p) => p.destroy([0x100, 0.5])],
  ["destroy of a string ID", "EINVAL",
    "destroy: nodes[0] (\"4\"): invalid argument (EINVAL)", (p) => p.destroy(["4"])],
  ["destroy of a node it does not own", "EREMOTE",
    "destroy: nodes[1] (11): not the owner of that node (EREMOTE)", (p, f) => p.destroy([0x100, f.hb])],
  ["destroy of a node twice", "ENOTUNIQ",
    "destroy: nodes[2] (512): listed twice (ENOTUNIQ)", (p) => p.destroy([0x200, 0x100, 0x200])],
  // releaseSlice
  ["releaseSlice of a negative offset", "EINVAL",
    "releaseSlice: offset (-8): invalid argument (EINVAL)", (p) => p.releaseSlice(-8)],
  ["releaseSlice of -1, the notification offset", "EINVAL",
    "releaseSlice: offset (-1): invalid argument (EINVAL)", (p) => p.releaseSlice(-1)],
  ["releaseSlice of a fractional offset", "EINVAL",
    "releaseSlice: offset (8.5): invalid argument (EINVAL)", (p) => p.releaseSlice(8.5)],
  ["releaseSlice of NaN", "EINVAL",
    "releaseSlice: offset (NaN): invalid argument (EINVAL)", (p) => p.releaseSlice(NaN)],
  ["releaseSlice of a string", "EINVAL",
    "releaseSlice: offset (\"0\"): invalid argument (EINVAL)", (p) => p.releaseSlice("0")],
  ["releaseSlice of 2^60", "EINVAL",
    "releaseSlice: offset (1152921504606847000): invalid argument (EINVAL)", (p) => p.releaseSlice(2 ** 60)],
  ["releaseSlice of an offset that is no slice", "ENXIO",
    "releaseSlice: offset (16): no such handle or slice (ENXIO)", (p) => p.releaseSlice(16)],
  // reset
  ["reset with an unknown option", "EINVAL",
    "reset: unknown option \"bogus\": invalid argument (EINVAL)", (p) => p.reset({ bogus: true })],
  ["reset with options that are not an object", "EINVAL",
    "reset: options must be an object, got 5: invalid argument (EINVAL)", (p) => p.reset(5)],
  ["reset with a non-boolean flush", "EINVAL",
    "reset: flush must be a boolean, got \"yes\": invalid argument (EINVAL)", (p) => p.reset({ flush: "yes" })],
  ["reset with a non-boolean flushSeed", "EINVAL",
    "reset: flushSeed must be a boolean, got 1: invalid argument (EINVAL)", (p) => p.reset({ flushSeed: 1 })],
  ["reset with limits that are not an object", "EINVAL",
    "reset: options must be an object, got 5: invalid argument (EINVAL)", (p) => p.reset({ limits: 5 })],
  ["reset with flush and a negative limit", "EINVAL",
    "reset: limits.maxSlices must be an integer from 0 to 4294967295, got -1: invalid argument (EINVAL)", (p) => p.reset({ flush: true, limits: { maxSlices: -1 } })],
  ["reset with an unknown limit", "EINVAL",
    "reset: unknown option \"maxNodes\": invalid argument (EINVAL)", (p) => p.reset({ limits: { maxNodes: 1 } })],
  // readable
  ["readable with a signal that is a number", "EINVAL",
    "readable: signal must be an AbortSignal, got 5: invalid argument (EINVAL)", (p) => p.readable(5)],
  ["readable with a signal that is a plain object", "EINVAL",
    "readable: signal must be an AbortSignal, got an object: invalid argument (EINVAL)", (p) => p.readable({ aborted: false })],
];

describe.each(kinds)("bad input ($name peer)", (kind) => {
  it.each(CASES)("rejects %s with %s and changes nothing", async (_, code, message, call) => {
    const f = await fixture(kind);
    await rejects(() => call(f.p, f) as Promise<unknown>, code, message);
    await expectUnchanged(f);
  });

  it("throws synchronously from a local Peer, never from a RemotePeer, for each bad call", async () => {
    const f = await fixture(kind);
    const endpoint = f.p[ENDPOINT];
    for (const [name, code, , call] of CASES) {
      let result: unknown;
      let thrown: unknown = null;
      try {
        result = call(endpoint, f);
      } catch (e) {
        thrown = e;
      }
      // readable() returns a promise on both kinds: its errors are rejections
      const asPromise = kind.served || name.startsWith("readable");
      if (asPromise) {
        expect(thrown, name).toBeNull();
        expect(result, name).toBeInstanceOf(Promise);
        thrown = await (result as Promise<unknown>).then(() => null, (e) => e);
      }
      expect(thrown, name).toBeInstanceOf(Bus1Error);
      expect((thrown as Bus1Error).code, name).toBe(code);
    }
    await expectUnchanged(f);
  });

  it("rejects arguments of the wrong type with a Bus1Error EINVAL, never anything else", async () => {
    const f = await fixture(kind);
    const junk: unknown[] = [undefined, null, 0.5, -1, NaN, "x", {}, [], Symbol("s"), () => 0, 10n, true];
    const calls: [string, (p: TestPeer, x: any) => Promise<unknown>][] = [
      ["release", (p, x) => p.release(x)],
      ["releaseSlice", (p, x) => p.releaseSlice(x)],
      ["destroy", (p, x) => p.destroy([x])],
      ["send", (p, x) => p.send([x])],
      // a payload may be omitted (undefined) or an empty vec list ([]): not junk there
      ["send", (p, x) => p.send(0x100, x == null || (Array.isArray(x) && x.length === 0) ? "x" : x)],
      ["transfer", (p, x) => p.transfer(x)],
      ["send", (p, x) => p.send(0x100, undefined, { handles: [x] })],
    ];
    for (const [op, call] of calls) {
      for (const x of junk) {
        const e = await rejects(() => call(f.p, x), "EINVAL");
        expect(e.message.startsWith(`${op}: `), e.message).toBe(true);
      }
    }
    await expectUnchanged(f);
  });

  it("rejects a second release of a released slice the way its kind does, and changes nothing", async () => {
    const f = await fixture(kind);
    if (kind.served) {
      // a served peer's offsets are aliases of slices released as they were pushed: releasing again does nothing
      await expect(f.p.releaseSlice(f.goneOffset)).resolves.toBeUndefined();
    } else {
      await rejects(() => f.p.releaseSlice(f.goneOffset), "ENXIO", `releaseSlice: offset (${f.goneOffset}): no such handle or slice (ENXIO)`);
    }
    await expectUnchanged(f);
  });

  it("checks the reference before a bad signal: a closed peer's readable(5) is EBADF", async () => {
    const f = await fixture(kind);
    await f.p.close();
    await rejects(() => f.p.readable(5 as never), "EBADF", "readable: this peer reference is closed: the reference is closed (EBADF)");
  });
});

describe.each(kinds)("the interface of the peer under test ($name peer)", (kind) => {
  it("has every operation of a peer, each returning a promise", async () => {
    const f = await fixture(kind);
    const endpoint = f.p[ENDPOINT] as unknown as Record<string, unknown>;
    for (const m of PEER_METHODS) {
      expect(typeof endpoint[m], m).toBe("function");
      expect((Object.getPrototypeOf(endpoint) as object), m).toBe(kind.served ? RemotePeer.prototype : Peer.prototype);
    }
    expect(f.p.query()).toBeInstanceOf(Promise);
    expect(f.p.recv({ seed: true })).toBeInstanceOf(Promise);
    const refused = f.p.send("bad" as never);
    expect(refused).toBeInstanceOf(Promise);
    expect(await refused.then(() => null, (e: unknown) => e)).toBeInstanceOf(Bus1Error);
    await expectUnchanged(f);
  });

  it("rejects a method called on something that is not a peer with EINVAL", async () => {
    const f = await fixture(kind);
    const proto = (kind.served ? RemotePeer.prototype : Peer.prototype) as unknown as Record<string, (...a: unknown[]) => unknown>;
    for (const m of ["send", "recv", "query"]) {
      let result: unknown;
      try {
        result = proto[m].call({}, 4);
      } catch (e) {
        result = Promise.reject(e);
      }
      const e = await (result as Promise<unknown>).then(() => null, (x: unknown) => x);
      expect(e, m).toBeInstanceOf(Bus1Error);
      expect((e as Bus1Error).code, m).toBe("EINVAL");
    }
    await expectUnchanged(f);
  });
});
