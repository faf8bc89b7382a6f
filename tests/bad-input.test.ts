// Bad input: every refused call throws a Bus1Error with the right code and
// leaves the bus exactly as it was (SPEC §3: "Bad arguments ... change
// nothing"; API.md: Bus1Error also for arguments of the wrong type).

import { describe, expect, it } from "vitest";
import {
  Bus,
  dec,
  drainTexts,
  enc,
  expectCode,
  expectCodeAsync,
  expectCodeIn,
  expectEmpty,
  newBus,
} from "./helpers.js";
import type { Message, Peer } from "./helpers.js";

/**
 * b owns node 4; a holds hb to it. b holds one received slice ("held"), has
 * released another ("gone") and has one message still queued ("queued").
 * c is disconnected, d is closed. Nobody has a node 0x100: bad calls name it
 * so that a call which went half-way would show up as a created node.
 */
async function fixture() {
  const bus = await newBus();
  const a = bus.connect();
  const b = bus.connect();
  const c = bus.connect();
  const d = bus.connect();
  const hb = b.transfer(4, a);
  a.send(hb, enc("held"));
  a.send(hb, enc("gone"));
  a.send(hb, enc("queued"));
  const held = b.recv() as Message;
  const gone = b.recv() as Message;
  const goneOffset = gone.offset;
  gone.release();
  c.disconnect();
  d.close();
  return { bus, a, b, c, d, hb, held, goneOffset, limitsA: a.query(), limitsB: b.query() };
}

type Fixture = Awaited<ReturnType<typeof fixture>>;

function expectUnchanged(f: Fixture) {
  expect(f.a.query()).toEqual(f.limitsA);
  expect(f.b.query()).toEqual(f.limitsB);
  expect(dec(f.held.payload)).toBe("held");
  expectCode(() => f.a.release(0x100), "ENXIO");
  expectCode(() => f.b.release(0x100), "ENXIO");
  expect(f.a.recv()).toBeNull();
  expect(f.b.recv({ seed: true })).toBeNull();
  f.a.send(f.hb, enc("after"));
  expect(drainTexts(f.b)).toEqual(["queued", "after"]);
  f.held.release();
  expectCode(() => f.b.releaseSlice(f.goneOffset), "ENXIO");
  expectEmpty(f.a);
}

interface Case {
  name: string;
  codes: string[];
  call: (f: Fixture) => unknown;
}

const EINVAL = ["EINVAL"];
const TOO_MANY = ["EINVAL", "EMSGSIZE"];

const cases: Case[] = [
  // send: destinations
  { name: "send to a negative ID", codes: EINVAL, call: (f) => f.a.send([0x100, -4]) },
  { name: "send to HANDLE_INVALID", codes: EINVAL, call: (f) => f.a.send([0x100, -1]) },
  { name: "send to 2^64", codes: EINVAL, call: (f) => f.a.send([0x100, 2 ** 64]) },
  { name: "send to Number.MAX_VALUE", codes: EINVAL, call: (f) => f.a.send([0x100, Number.MAX_VALUE]) },
  { name: "send to a bigint ID", codes: EINVAL, call: (f) => f.a.send([0x100, 4n] as any) },
  { name: "send to a boolean", codes: EINVAL, call: (f) => f.a.send(true as any) },
  { name: "send to a plain object", codes: EINVAL, call: (f) => f.a.send({} as any) },
  { name: "send to an array-like of negative length", codes: EINVAL, call: (f) => f.a.send({ length: -1 } as any) },
  { name: "send to an array-like of 2^32 destinations", codes: TOO_MANY, call: (f) => f.a.send({ length: 2 ** 32 } as any) },
  // send: payload
  { name: "send with a string payload", codes: EINVAL, call: (f) => f.a.send(0x100, "text" as any) },
  { name: "send with a number payload", codes: EINVAL, call: (f) => f.a.send(0x100, 42 as any) },
  { name: "send with an array of numbers as payload", codes: EINVAL, call: (f) => f.a.send(0x100, [1, 2, 3] as any) },
  { name: "send with a vec that is not a Uint8Array", codes: EINVAL, call: (f) => f.a.send(0x100, [enc("a"), "b"] as any) },
  { name: "send with 1025 vecs", codes: ["EMSGSIZE"], call: (f) => f.a.send(0x100, Array.from({ length: 1025 }, () => enc("v"))) },
  { name: "send with a sparse array of 100000 vecs", codes: TOO_MANY, call: (f) => f.a.send(0x100, new Array(100_000) as any) },
  // send: options
  { name: "send with options that are not an object", codes: EINVAL, call: (f) => f.a.send(0x100, enc("x"), 5 as any) },
  { name: "send with an unknown option", codes: EINVAL, call: (f) => f.a.send(0x100, enc("x"), { bogus: true } as any) },
  { name: "send with handles that are not array-like", codes: EINVAL, call: (f) => f.a.send(0x100, enc("x"), { handles: 5 } as any) },
  { name: "send with a string handle", codes: EINVAL, call: (f) => f.a.send(0x100, enc("x"), { handles: ["8"] } as any) },
  { name: "send with an array-like of 2^40 handles", codes: TOO_MANY, call: (f) => f.a.send(0x100, enc("x"), { handles: { length: 2 ** 40 } } as any) },
  { name: "send with objects that are not an array", codes: EINVAL, call: (f) => f.a.send(0x100, enc("x"), { objects: 5 } as any) },
  { name: "send with a non-boolean continue", codes: EINVAL, call: (f) => f.a.send(0x100, enc("x"), { continue: "yes" } as any) },
  { name: "send with a non-boolean seed", codes: EINVAL, call: (f) => f.a.send([], enc("x"), { seed: 1 } as any) },
  { name: "send with seed and a destination", codes: EINVAL, call: (f) => f.a.send(0x100, enc("x"), { seed: true }) },
  { name: "send with the Bus as an object", codes: ["EOPNOTSUPP"], call: (f) => f.a.send(0x100, enc("x"), { objects: [f.bus] }) },
  // recv
  { name: "recv with an unknown option", codes: EINVAL, call: (f) => f.b.recv({ bogus: true } as any) },
  { name: "recv with options that are not an object", codes: EINVAL, call: (f) => f.b.recv(5 as any) },
  { name: "recv with a non-boolean seed", codes: EINVAL, call: (f) => f.b.recv({ seed: "yes" } as any) },
  // transfer
  { name: "transfer of a fractional ID", codes: EINVAL, call: (f) => f.a.transfer(1.5, f.b) },
  { name: "transfer of a string ID", codes: EINVAL, call: (f) => f.a.transfer("256" as any, f.b) },
  { name: "transfer to a plain object", codes: EINVAL, call: (f) => f.a.transfer(0x100, {} as any) },
  { name: "transfer to a number", codes: EINVAL, call: (f) => f.a.transfer(0x100, 3 as any) },
  { name: "transfer to null", codes: EINVAL, call: (f) => f.a.transfer(0x100, null as any) },
  // release
  { name: "release of HANDLE_INVALID", codes: EINVAL, call: (f) => f.a.release(-1) },
  { name: "release of a string", codes: EINVAL, call: (f) => f.b.release("4" as any) },
  { name: "release with no argument", codes: EINVAL, call: (f) => (f.b.release as any)() },
  { name: "release of NaN", codes: EINVAL, call: (f) => f.b.release(NaN) },
  // destroy
  { name: "destroy with an unknown option", codes: EINVAL, call: (f) => f.a.destroy(0x100, { bogus: true } as any) },
  { name: "destroy with a non-boolean releaseHandles", codes: EINVAL, call: (f) => f.b.destroy(4, { releaseHandles: "yes" } as any) },
  { name: "destroy of an array-like of negative length", codes: EINVAL, call: (f) => f.a.destroy({ length: -1 } as any) },
  { name: "destroy of an array-like of 2^32 nodes", codes: TOO_MANY, call: (f) => f.a.destroy({ length: 2 ** 32 } as any) },
  { name: "destroy of a fractional ID", codes: EINVAL, call: (f) => f.a.destroy([0x100, 0.5]) },
  { name: "destroy of a string ID", codes: EINVAL, call: (f) => f.b.destroy(["4"] as any) },
  // releaseSlice
  { name: "releaseSlice of a negative offset", codes: EINVAL, call: (f) => f.b.releaseSlice(-8) },
  { name: "releaseSlice of -1, the notification offset", codes: EINVAL, call: (f) => f.b.releaseSlice(-1) },
  { name: "releaseSlice of a fractional offset", codes: EINVAL, call: (f) => f.b.releaseSlice(8.5) },
  { name: "releaseSlice of NaN", codes: EINVAL, call: (f) => f.b.releaseSlice(NaN) },
  { name: "releaseSlice of a string", codes: EINVAL, call: (f) => f.b.releaseSlice("0" as any) },
  { name: "releaseSlice of 2^60", codes: EINVAL, call: (f) => f.b.releaseSlice(2 ** 60) },
  { name: "releaseSlice of an offset already released", codes: ["ENXIO"], call: (f) => f.b.releaseSlice(f.goneOffset) },
  // reset
  { name: "reset with an unknown option", codes: EINVAL, call: (f) => f.b.reset({ bogus: true } as any) },
  { name: "reset with options that are not an object", codes: EINVAL, call: (f) => f.b.reset(5 as any) },
  { name: "reset with a non-boolean flush", codes: EINVAL, call: (f) => f.b.reset({ flush: "yes" } as any) },
  { name: "reset with a non-boolean flushSeed", codes: EINVAL, call: (f) => f.b.reset({ flushSeed: 1 } as any) },
  { name: "reset with limits that are not an object", codes: EINVAL, call: (f) => f.b.reset({ limits: 5 } as any) },
  { name: "reset with flush and a negative limit", codes: EINVAL, call: (f) => f.b.reset({ flush: true, limits: { maxSlices: -1 } }) },
  { name: "reset with an unknown limit", codes: EINVAL, call: (f) => f.b.reset({ limits: { maxNodes: 1 } } as any) },
  // wait
  { name: "wait with a string timeout", codes: EINVAL, call: (f) => f.b.wait("soon" as any) },
  // connect
  { name: "connect with a negative user", codes: EINVAL, call: (f) => f.bus.connect({ user: -1 }) },
  { name: "connect with user 2^31", codes: EINVAL, call: (f) => f.bus.connect({ user: 2 ** 31 }) },
  { name: "connect with a fractional user", codes: EINVAL, call: (f) => f.bus.connect({ user: 1.5 }) },
  { name: "connect with a string user", codes: EINVAL, call: (f) => f.bus.connect({ user: "1" } as any) },
  // a disconnected peer
  { name: "send by a disconnected peer", codes: ["ESHUTDOWN"], call: (f) => f.c.send(0x100, enc("x")) },
  { name: "transfer by a disconnected peer", codes: ["ESHUTDOWN"], call: (f) => f.c.transfer(0x100, f.b) },
  { name: "transfer to a disconnected peer", codes: ["ESHUTDOWN"], call: (f) => f.a.transfer(0x100, f.c) },
  { name: "recv by a disconnected peer", codes: ["ESHUTDOWN"], call: (f) => f.c.recv() },
  { name: "reset by a disconnected peer", codes: ["ESHUTDOWN"], call: (f) => f.c.reset({ flush: true }) },
  { name: "a second disconnect", codes: ["ESHUTDOWN"], call: (f) => f.c.disconnect() },
  // a closed reference
  { name: "send by a closed reference", codes: ["EBADF"], call: (f) => f.d.send(0x100, enc("x")) },
  { name: "recv by a closed reference", codes: ["EBADF"], call: (f) => f.d.recv() },
  { name: "transfer by a closed reference", codes: ["EBADF"], call: (f) => f.d.transfer(0x100, f.b) },
  { name: "transfer to a closed reference", codes: ["EBADF", "ESHUTDOWN"], call: (f) => f.a.transfer(0x100, f.d) },
  { name: "query by a closed reference", codes: ["EBADF"], call: (f) => f.d.query() },
];

describe("bad input", () => {
  for (const c of cases) {
    it(`rejects ${c.name} with ${c.codes.join(" or ")} and changes nothing`, async () => {
      const f = await fixture();
      expectCodeIn(() => c.call(f), c.codes);
      expectUnchanged(f);
    });
  }

  it("rejects a second release of a released message with ENXIO and changes nothing", async () => {
    const f = await fixture();
    const msg = f.b.recv() as Message;
    const copy = dec(msg.payload);
    msg.release();
    expectCode(() => msg.release(), "ENXIO");
    expect(copy).toBe("queued");
    f.a.send(f.hb, enc("queued"));
    expectUnchanged(f);
  });

  it("never throws anything but a Bus1Error for arguments of the wrong type", async () => {
    const f = await fixture();
    const junk: unknown[] = [undefined, null, 0.5, -1, NaN, "x", {}, [], Symbol("s"), () => 0, 10n, true];
    const calls: ((p: Peer, x: any) => unknown)[] = [
      (p, x) => p.release(x),
      (p, x) => p.releaseSlice(x),
      (p, x) => p.destroy([x]),
      (p, x) => p.send([x]),
      // a payload may be omitted (undefined) or an empty vec list ([]): not junk there
      (p, x) => p.send(0x100, x == null || (Array.isArray(x) && x.length === 0) ? "x" : x),
      (p, x) => p.transfer(x, p),
      (p, x) => p.send(0x100, undefined, { handles: [x] }),
    ];
    for (const call of calls) {
      for (const x of junk) expectCodeIn(() => call(f.a, x), ["EINVAL"]);
    }
    expectUnchanged(f);
  });
});

describe("bad bus options", () => {
  it("rejects a negative limit with EINVAL", async () => {
    await expectCodeAsync(() => Bus.create({ shared: false, limits: { maxSlices: -1 } }), "EINVAL");
  });

  it("rejects a fractional limit with EINVAL", async () => {
    await expectCodeAsync(() => Bus.create({ shared: false, limits: { maxHandles: 0.5 } }), "EINVAL");
  });

  it("rejects an unknown limit with EINVAL", async () => {
    await expectCodeAsync(() => Bus.create({ shared: false, limits: { maxPeers: 1 } } as any), "EINVAL");
  });

  it("rejects a negative maxMemoryBytes with EINVAL", async () => {
    await expectCodeAsync(() => Bus.create({ shared: false, maxMemoryBytes: -1 }), "EINVAL");
  });

  it("leaves other buses working after a refused create", async () => {
    const bus = await newBus();
    const a = bus.connect();
    await expectCodeAsync(() => Bus.create({ shared: false, limits: { maxSlices: -1 } }), "EINVAL");
    a.send(4, enc("fine"));
    expect(drainTexts(a)).toEqual(["fine"]);
  });
});
