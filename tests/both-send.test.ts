// SPEC §5 (send) on both kinds of peer (issue 9): delivery, atomic multicast,
// continue, message size, copy once and the multicast flag, messages to
// destroyed nodes, the seed, forwarding. The peer under test is `p`; the
// other parties are local peers of the same bus.

import { describe, expect, it } from "vitest";
import {
  HANDLE_INVALID,
  UNKNOWN_REMOTE,
  bytesOf,
  dec,
  drainTexts as drainLocal,
  enc,
  expectCode,
  expectEmpty,
  expectNotification,
  expectRemoteId,
  firstDifference,
  makeBus,
  newBus,
  take as takeLocal,
  takeOne as takeOneLocal,
} from "./helpers.js";
import type { BusKind, Peer } from "./helpers.js";
import {
  aliasOf, drain, drainTexts, expectNothing, expectNote, kinds, rejects, take, takeOne,
  type PeerKind,
} from "./peer-kinds.js";

/** p sends: b and c (local) each own node 0x100; p holds hb (11) and hc (19) to them. */
async function senders(kind: PeerKind, busKind: BusKind = "private") {
  const bus = await makeBus(busKind);
  const s = bus.connect();
  const b = bus.connect();
  const c = bus.connect();
  const hb = b.transfer(0x100, s);
  const hc = c.transfer(0x100, s);
  const p = await kind.wrap(bus, s);
  return { bus, p, b, c, hb, hc };
}

/** p receives: it owns node 0x200, app (local) holds hp (11) to it; p holds ha (11) to app's node 0x100. */
async function receiver(kind: PeerKind, busKind: BusKind = "private", setup?: (s: Peer) => void) {
  const bus = await makeBus(busKind);
  const s = bus.connect();
  const app = bus.connect();
  const ha = app.transfer(0x100, s);
  const hp = s.transfer(0x200, app);
  setup?.(s);
  const p = await kind.wrap(bus, s);
  return { bus, p, app, ha, hp };
}

describe.each(kinds)("delivery ($name peer)", (kind) => {
  it("delivers a unicast to the owner of the destination node, with the owner's ID", async () => {
    const { p, b, hb } = await senders(kind);
    expect(hb).toBe(11);
    expect(await p.send(hb, enc("hi"))).toEqual({ errors: [null] });
    const msg = takeOneLocal(b);
    expect([msg.type, msg.destination, msg.text, msg.continue]).toEqual(["data", 0x100, "hi", false]);
    await expectNothing(p);
  });

  it("delivers a multicast to the owners of every destination", async () => {
    const { p, b, c, hb, hc } = await senders(kind);
    expect(await p.send([hb, hc], enc("all"))).toEqual({ errors: [null, null] });
    expect(drainLocal(b)).toEqual(["all"]);
    expect(drainLocal(c)).toEqual(["all"]);
  });

  it("accepts any array-like of destinations", async () => {
    const { p, b, c, hb, hc } = await senders(kind);
    await p.send(new Float64Array([hb, hc]), enc("typed"));
    await p.send({ length: 1, 0: hb } as ArrayLike<number>, enc("array-like"));
    expect(drainLocal(b)).toEqual(["typed", "array-like"]);
    expect(drainLocal(c)).toEqual(["typed"]);
  });

  it("allows zero destinations, delivering nothing", async () => {
    const { p, b, c } = await senders(kind);
    expect(await p.send([], enc("into the void"))).toEqual({ errors: [] });
    await expectNothing(p);
    expectEmpty(b);
    expectEmpty(c);
  });

  it("allows an empty payload, given as nothing, an empty array or an empty vec list", async () => {
    const { p } = await senders(kind);
    await p.send(4);
    await p.send(4, new Uint8Array(0));
    await p.send(4, []);
    const all = await drain(p);
    expect(all.map((m) => [m.type, m.destination, m.bytes.length])).toEqual([["data", 4, 0], ["data", 4, 0], ["data", 4, 0]]);
    for (const m of all) expect(m.offset).toBeGreaterThanOrEqual(0);
  });

  it("concatenates payload vecs in order", async () => {
    const { p, b, hb } = await senders(kind);
    await p.send(hb, [enc("ab"), enc(""), enc("cde"), enc("f")]);
    expect(takeOneLocal(b).text).toBe("abcdef");
  });

  it("sends only the bytes a subarray covers", async () => {
    const { p, b, hb } = await senders(kind);
    await p.send(hb, enc("0123456789").subarray(3, 6));
    expect(takeOneLocal(b).text).toBe("345");
  });

  it("copies the payload when send is called, before the promise settles", async () => {
    const { p, b, hb } = await senders(kind);
    const payload = enc("original");
    const sent = p.send(hb, payload);
    payload.fill(0x78);
    await sent;
    expect(takeOneLocal(b).text).toBe("original");
  });

  it("accepts 1024 vecs", async () => {
    const { p, b, hb } = await senders(kind);
    await p.send(hb, Array.from({ length: 1024 }, (_, i) => new Uint8Array([i & 0xff])));
    const msg = takeOneLocal(b);
    expect([msg.bytes.length, msg.bytes[0], msg.bytes[1023]]).toEqual([1024, 0, 1023 & 0xff]);
  });

  it("delivers a 1 MiB payload intact, both ways", async () => {
    const { p, app, ha, hp } = await receiver(kind);
    const big = new Uint8Array(1 << 20);
    for (let i = 0; i < big.length; i++) big[i] = (i * 7) & 0xff;
    await p.send(ha, big);
    const there = takeOneLocal(app);
    expect(there.bytes.length).toBe(big.length);
    expect(firstDifference(there.bytes, big)).toBe(-1);
    app.send(hp, big);
    const here = await takeOne(p);
    expect(here.bytes.length).toBe(big.length);
    expect(firstDifference(here.bytes, big)).toBe(-1);
  });

  it("receives a unicast to its own node with its owner ID", async () => {
    const { p, app, hp } = await receiver(kind);
    app.send(hp, enc("to the node"));
    const msg = await takeOne(p);
    expect([msg.type, msg.destination, msg.text, msg.continue, msg.handles, msg.objects])
      .toEqual(["data", 0x200, "to the node", false, [], []]);
    await expectNothing(p);
  });

  it("receives its copy of a multicast to it and another peer", async () => {
    const { bus, p, app, hp } = await receiver(kind);
    const other = bus.connect();
    const ho = other.transfer(4, app);
    app.send([ho, hp], enc("both"));
    expect(await drainTexts(p)).toEqual(["both"]);
    expect(drainLocal(other)).toEqual(["both"]);
  });
});

describe.each(kinds)("atomic multicast ($name peer)", (kind) => {
  it("fails the whole call with EHOSTUNREACH when one destination is destroyed, delivering to nobody", async () => {
    const { p, b, c, hb, hc } = await senders(kind);
    c.destroy(0x100);
    expectNote(await take(p), "node-destroy", hc);
    await rejects(() => p.send([hb, hc], enc("x")), "EHOSTUNREACH",
      "send: destinations[1] (19): the destination node is destroyed (EHOSTUNREACH)");
    expectEmpty(b);
  });

  it("fails the whole call with EDQUOT when one destination is over quota, delivering to nobody", async () => {
    const { p, b, c, hb, hc } = await senders(kind);
    b.reset({ limits: { maxSlices: 1 } });
    await p.send(hb, enc("filler"));
    await rejects(() => p.send([hc, hb], enc("x")), "EDQUOT", "send: destinations[1] (11): quota exceeded (EDQUOT)");
    expectEmpty(c);
    expect(drainLocal(b)).toEqual(["filler"]);
  });

  it("throws the error of the first failing destination", async () => {
    const { p, b, c, hb, hc } = await senders(kind);
    b.reset({ limits: { maxSlices: 1 } });
    await p.send(hb, enc("filler"));
    c.destroy(0x100);
    await rejects(() => p.send([hc, hb], enc("x")), "EHOSTUNREACH",
      "send: destinations[0] (19): the destination node is destroyed (EHOSTUNREACH)");
    await rejects(() => p.send([hb, hc], enc("x")), "EDQUOT", "send: destinations[0] (11): quota exceeded (EDQUOT)");
  });

  it("creates no node and gives no handle when the call fails", async () => {
    const { p, b, c, hb, hc } = await senders(kind);
    c.destroy(0x100);
    await rejects(() => p.send([hb, hc], enc("x"), { handles: [0x200] }), "EHOSTUNREACH");
    await rejects(() => p.release(0x200), "ENXIO", "release: handle (512): no such handle or slice (ENXIO)");
    expectEmpty(b);
  });
});

describe.each(kinds)("continue ($name peer)", (kind) => {
  it("delivers to the other destinations and reports EHOSTUNREACH for a destroyed one", async () => {
    const { p, b, c, hb, hc } = await senders(kind);
    c.destroy(0x100);
    expect(await p.send([hb, hc], enc("partial"), { continue: true })).toEqual({ errors: [null, "EHOSTUNREACH"] });
    expect(drainLocal(b)).toEqual(["partial"]);
  });

  it("reports EDQUOT for a destination over quota and delivers to the rest", async () => {
    const { p, b, c, hb, hc } = await senders(kind);
    b.reset({ limits: { maxSlices: 1 } });
    await p.send(hb, enc("filler"));
    expect(await p.send([hb, hc], enc("partial"), { continue: true })).toEqual({ errors: ["EDQUOT", null] });
    expect(drainLocal(c)).toEqual(["partial"]);
    expect(drainLocal(b)).toEqual(["filler"]);
  });

  it("reports EHOSTUNREACH for a node whose owner disconnected", async () => {
    const { p, b, c, hb, hc } = await senders(kind);
    b.disconnect();
    expect(await p.send([hb, hc], enc("partial"), { continue: true })).toEqual({ errors: ["EHOSTUNREACH", null] });
    expect(drainLocal(c)).toEqual(["partial"]);
  });

  it("returns all-null errors when every destination succeeds", async () => {
    const { p, hb, hc } = await senders(kind);
    expect(await p.send([hb, hc], enc("x"), { continue: true })).toEqual({ errors: [null, null] });
  });

  it("succeeds when every destination fails, reporting each error", async () => {
    const { p, b, c, hb, hc } = await senders(kind);
    b.reset({ limits: { maxSlices: 1 } });
    await p.send(hb, enc("filler"));
    c.destroy(0x100);
    expect(await p.send([hb, hc], enc("x"), { continue: true })).toEqual({ errors: ["EDQUOT", "EHOSTUNREACH"] });
  });

  it("fails the whole call with ENXIO for an unknown destination", async () => {
    const { p, b, hb } = await senders(kind);
    await rejects(() => p.send([hb, UNKNOWN_REMOTE], enc("x"), { continue: true }), "ENXIO",
      `send: destinations[1] (${UNKNOWN_REMOTE}): no such handle or slice (ENXIO)`);
    expectEmpty(b);
  });

  it("fails the whole call with ENXIO for an unknown attached handle", async () => {
    const { p, b, hb } = await senders(kind);
    await rejects(() => p.send([hb], enc("x"), { continue: true, handles: [UNKNOWN_REMOTE] }), "ENXIO",
      `send: handles[0] (${UNKNOWN_REMOTE}): no such handle or slice (ENXIO)`);
    expectEmpty(b);
  });

  it("fails the whole call with ENOTUNIQ for a destination listed twice", async () => {
    const { p, b, c, hb, hc } = await senders(kind);
    await rejects(() => p.send([hb, hc, hb], enc("x"), { continue: true }), "ENOTUNIQ",
      "send: destinations[2] (11): listed twice (ENOTUNIQ)");
    expectEmpty(b);
    expectEmpty(c);
  });

  it("fails with ENOTUNIQ for a caller-chosen destination listed twice, creating no node", async () => {
    const { p } = await senders(kind);
    await rejects(() => p.send([4, 4], enc("x")), "ENOTUNIQ", "send: destinations[1] (4): listed twice (ENOTUNIQ)");
    await rejects(() => p.release(4), "ENXIO", "release: handle (4): no such handle or slice (ENXIO)");
    await expectNothing(p);
  });

  it("fails the whole call with EMSGSIZE for 1025 vecs", async () => {
    const { p, b, hb } = await senders(kind);
    const vecs = Array.from({ length: 1025 }, () => new Uint8Array(1));
    await rejects(() => p.send([hb], vecs, { continue: true }), "EMSGSIZE",
      "send: payload: 1025 vecs, more than 1024: message too large (EMSGSIZE)");
    expectEmpty(b);
  });

  it("fails the whole call with EMSGSIZE for 257 objects", async () => {
    const { p, b, hb } = await senders(kind);
    const objects = Array.from({ length: 257 }, () => ({}));
    await rejects(() => p.send([hb], enc("x"), { continue: true, objects }), "EMSGSIZE",
      "send: objects: 257 entries, more than 256: message too large (EMSGSIZE)");
    expectEmpty(b);
  });

  it("fails the whole call with EMSGSIZE for a payload larger than a receiver's maxInflightBytes", async () => {
    const { p, b, c, hb, hc } = await senders(kind);
    b.reset({ limits: { maxInflightBytes: 64 } });
    await rejects(() => p.send([hc, hb], bytesOf(65, 1), { continue: true }), "EMSGSIZE",
      "send: payload: message too large (EMSGSIZE)");
    expectEmpty(b);
    expectEmpty(c);
  });

  it("fails the whole call with ESHUTDOWN when the caller is disconnected", async () => {
    const { p, hb } = await senders(kind);
    await p.disconnect();
    await rejects(() => p.send([hb], enc("x"), { continue: true }), "ESHUTDOWN", "send: the peer is disconnected (ESHUTDOWN)");
  });
});

describe.each(kinds)("message size ($name peer)", (kind) => {
  it("uses EDQUOT, not EMSGSIZE, for a message that fits the limit but not the space left", async () => {
    const { p, b, hb } = await senders(kind);
    b.reset({ limits: { maxInflightBytes: 64 } });
    await p.send(hb, bytesOf(40, 1));
    await rejects(() => p.send(hb, bytesOf(40, 2)), "EDQUOT", "send: destinations[0] (11): quota exceeded (EDQUOT)");
  });

  it("accepts a message whose slice exactly fills maxInflightBytes", async () => {
    const { p, b, hb } = await senders(kind);
    b.reset({ limits: { maxInflightBytes: 64 } });
    await p.send(hb, bytesOf(56, 1), { handles: [4] });
    const msg = takeOneLocal(b);
    expect(msg.bytes.length).toBe(56);
    expect(msg.handles).toHaveLength(1);
  });

  it("counts the padding and the handle array in the size that must fit, creating no node", async () => {
    const { p, b, hb } = await senders(kind);
    b.reset({ limits: { maxInflightBytes: 64 } });
    // 57 bytes pad to 64, plus 8 for the handle: 72
    await rejects(() => p.send(hb, bytesOf(57, 1), { handles: [4] }), "EMSGSIZE", "send: payload: message too large (EMSGSIZE)");
    await rejects(() => p.release(4), "ENXIO");
  });

  it("fails with EMSGSIZE for a payload larger than the receiving user's maxInflightBytes", async () => {
    const bus = await newBus({ limits: { maxInflightBytes: 256 } });
    const s = bus.connect();
    const b = bus.connect();
    const hb = b.transfer(4, s);
    const p = await kind.wrap(bus, s);
    await rejects(() => p.send(hb, bytesOf(300, 1)), "EMSGSIZE", "send: payload: message too large (EMSGSIZE)");
    expectEmpty(b);
  });

  it("bounds what reaches it by the maxInflightBytes it set itself", async () => {
    const { p, app, hp } = await receiver(kind);
    await p.reset({ limits: { maxInflightBytes: 64 } });
    expectCode(() => app.send(hp, bytesOf(65, 1)), "EMSGSIZE");
    app.send(hp, bytesOf(64, 2));
    expect((await takeOne(p)).bytes.length).toBe(64);
  });
});

describe.each(kinds)("copy once ($name peer)", (kind) => {
  describe.each(["private", "shared"] as BusKind[])("%s memory", (busKind) => {
    /** p owns nodes 4 and 8; app holds h4 and h8 to them. */
    async function world() {
      const bus = await makeBus(busKind);
      const s = bus.connect();
      const app = bus.connect();
      const h4 = s.transfer(4, app);
      const h8 = s.transfer(8, app);
      const p = await kind.wrap(bus, s);
      return { bus, p, app, h4, h8 };
    }

    it("gives a peer that owns two destinations two messages in distinct slices, the first flagged continue", async () => {
      const { p, app, h4, h8 } = await world();
      app.send([h4, h8], enc("twice"));
      const m1 = (await p.recv())!;
      const m2 = (await p.recv())!;
      expect([m1.continue, m2.continue]).toEqual([true, false]);
      expect(m1.offset).not.toBe(m2.offset);
      expect(new Set([m1.destination, m2.destination])).toEqual(new Set([4, 8]));
      expect([dec(m1.payload), dec(m2.payload)]).toEqual(["twice", "twice"]);
      m1.release();
      m2.release();
      await expectNothing(p);
    });

    it("keeps each delivered copy independent of the others", async () => {
      const { p, app, h4, h8 } = await world();
      app.send([h4, h8], enc("same"));
      const m1 = (await p.recv())!;
      const m2 = (await p.recv())!;
      m1.payload[0] = "S".charCodeAt(0);
      expect([dec(m1.payload), dec(m2.payload)]).toEqual(["Same", "same"]);
      m1.release();
      m2.release();
    });

    it("flags continue only within one transaction", async () => {
      const { p, app, h4, h8 } = await world();
      app.send(h4, enc("one"));
      app.send([h4, h8], enc("two"));
      app.send(h8, enc("three"));
      const all = await drain(p);
      expect(all.map((m) => [m.text, m.continue])).toEqual([["one", false], ["two", true], ["two", false], ["three", false]]);
    });

    it("flags continue on its own multicast to two of its own nodes", async () => {
      const { p } = await world();
      await p.send([4, 8], enc("to myself twice"));
      const all = await drain(p);
      expect(all.map((m) => [m.destination, m.continue])).toEqual([[4, true], [8, false]]);
    });

    it("does not flag continue for a receiver that owns one destination of a multicast", async () => {
      const { bus, p, app, h4 } = await world();
      const other = bus.connect();
      const ho = other.transfer(4, app);
      app.send([h4, ho], enc("x"));
      expect((await takeOne(p)).continue).toBe(false);
      expect(takeOneLocal(other).continue).toBe(false);
    });

    it("gives received payloads on the memory each kind promises", async () => {
      const { p, app, h4 } = await world();
      app.send(h4, enc("where am I"));
      const msg = (await p.recv())!;
      if (kind.served) {
        // a served peer's payload is its own copy, on an ArrayBuffer of its own (API.md "Sandboxed peers")
        expect(msg.payload.buffer).toBeInstanceOf(ArrayBuffer);
        expect(msg.payload.buffer).not.toBeInstanceOf(SharedArrayBuffer);
        expect([msg.payload.byteOffset, msg.payload.buffer.byteLength]).toEqual([0, 10]);
      } else if (busKind === "shared") {
        expect(msg.payload.buffer).toBeInstanceOf(SharedArrayBuffer);
      } else {
        expect(msg.payload.buffer).not.toBeInstanceOf(SharedArrayBuffer);
        expect(msg.payload.buffer.byteLength).toBeGreaterThan(1 << 16); // a view of the bus's memory
      }
      expect(dec(msg.payload)).toBe("where am I");
      msg.release();
    });
  });
});

describe.each(kinds)("handles in messages ($name peer)", (kind) => {
  it("receives a handle to a node destroyed before the send as HANDLE_INVALID, with no notification", async () => {
    const { p, app, hp } = await receiver(kind);
    app.destroy(0x300);
    takeLocal(app);
    app.send(hp, undefined, { handles: [0x300] });
    expect((await takeOne(p)).handles).toEqual([HANDLE_INVALID]);
    await expectNothing(p);
  });

  it("sends a handle to its own destroyed node as HANDLE_INVALID", async () => {
    const { p, app, ha } = await receiver(kind);
    await p.destroy(0x300);
    expectNote(await take(p), "node-destroy", 0x300);
    await p.send(ha, undefined, { handles: [0x300] });
    expect(takeOneLocal(app).handles).toEqual([HANDLE_INVALID]);
    expectEmpty(app);
  });

  it("receives handles in the order they were attached, and can send to each", async () => {
    const { p, app, hp } = await receiver(kind);
    app.send(hp, undefined, { handles: [0x300, 0x100, 0x400] });
    const handles = (await takeOne(p)).handles;
    // core-assigned IDs in the order received: the second handle to app's node 0x100 coalesces with ha (11)
    expect(handles).toEqual([19, 11, 27]);
    for (let i = 0; i < handles.length; i++) await p.send(handles[i], enc(String(i)));
    expect(drainLocal(app)).toEqual(["0", "1", "2"]);
  });

  it("attaches handles in order, and the receiver can send to each", async () => {
    const { p, app, ha } = await receiver(kind);
    await p.send(ha, enc("take these"), { handles: [0x300, 0x200, 0x400] });
    const msg = takeOneLocal(app);
    expect(msg.handles).toHaveLength(3);
    msg.handles.forEach(expectRemoteId);
    expect(msg.handles[1]).toBe(11); // app already holds hp to node 0x200
    msg.handles.forEach((h, i) => app.send(h, enc(String(i))));
    expect((await drain(p)).map((m) => [m.destination, m.text])).toEqual([[0x300, "0"], [0x200, "1"], [0x400, "2"]]);
  });
});

describe.each(kinds)("messages to destroyed nodes ($name peer)", (kind) => {
  it("delivers a message ordered before the destruction of its destination", async () => {
    const { p, app, hp } = await receiver(kind);
    app.send(hp, enc("first"));
    await p.destroy(0x200);
    expect((await drain(p)).map((m) => [m.type, m.text])).toEqual([["data", "first"], ["node-destroy", ""]]);
  });

  it("fails a send to a node whose destruction is already ordered with EHOSTUNREACH", async () => {
    const { p, b, hb } = await senders(kind);
    b.destroy(0x100);
    await rejects(() => p.send(hb, enc("late")), "EHOSTUNREACH", "send: destinations[0] (11): the destination node is destroyed (EHOSTUNREACH)");
    expect((await drain(p)).map((m) => [m.type, m.destination])).toEqual([["node-destroy", hb]]);
    expect(takeOneLocal(b).type).toBe("node-destroy");
  });

  it("fails a send by the owner to its own destroyed node with EHOSTUNREACH", async () => {
    const { p } = await senders(kind);
    await p.destroy(4);
    await rejects(() => p.send(4, enc("late")), "EHOSTUNREACH", "send: destinations[0] (4): the destination node is destroyed (EHOSTUNREACH)");
  });

  it("makes the owner drop what it queued for a node once it released the destroyed node's handle", async () => {
    // the owner is local: what a served peer's serving side received is already pushed (see below)
    const { p, app, ha } = await receiver(kind);
    await p.send(ha, enc("queued"));
    app.destroy(0x100);
    app.release(0x100);
    expectEmpty(app);
    expectNote(await take(p), "node-destroy", ha);
  });

  it("drops queued data for its destroyed node once it released the handle, unless already pushed", async () => {
    const { p, app, hp } = await receiver(kind);
    app.send(hp, enc("queued"));
    await p.destroy(0x200);
    await p.release(0x200);
    if (kind.served) {
      // A served peer's messages are pushed to it as soon as they are ready (remote.ts "Receiving"): the serving
      // side received "queued" before the destroy reached the bus, and the node-destroy as soon as the destroy
      // was done, before the release arrived; so the plugin has both, in order.
      expect((await drain(p)).map((m) => [m.type, m.text])).toEqual([["data", "queued"], ["node-destroy", ""]]);
    } else {
      await expectNothing(p);
    }
  });
});

describe.each(kinds)("seed ($name peer)", (kind) => {
  it("stores a message sent with seed and no destinations as the caller's seed", async () => {
    const { p } = await senders(kind);
    expect(await p.send([], enc("boot"), { seed: true })).toEqual({ errors: [] });
    const seed = (await p.recv({ seed: true }))!;
    expect([seed.type, seed.destination, dec(seed.payload), seed.continue]).toEqual(["data", HANDLE_INVALID, "boot", false]);
    expect(seed.offset % 8).toBe(0);
    // a served peer sees its seed under the alias 2^32 (remote.ts), never a bus address
    if (kind.served) expect(seed.offset).toBe(aliasOf(0));
    else expect(seed.offset).toBeLessThan(2 ** 32);
  });

  it("does not queue the seed", async () => {
    const { p } = await senders(kind);
    await p.send([], enc("boot"), { seed: true });
    expect(await p.recv()).toBeNull();
  });

  it("returns the seed on every recv({ seed: true }) without removing it", async () => {
    const { p } = await senders(kind);
    await p.send([], enc("boot"), { seed: true });
    const first = (await p.recv({ seed: true }))!;
    const second = (await p.recv({ seed: true }))!;
    expect(second.offset).toBe(first.offset);
    expect(dec(second.payload)).toBe("boot");
  });

  it("returns null from recv({ seed: true }) when there is no seed", async () => {
    const { p } = await senders(kind);
    await p.send(4, enc("queued, not a seed"));
    expect(await p.recv({ seed: true })).toBeNull();
    expect((await takeOne(p)).text).toBe("queued, not a seed");
  });

  it("replaces the old seed", async () => {
    const { p } = await senders(kind);
    await p.send([], enc("one"), { seed: true });
    await p.send([], enc("two"), { seed: true });
    expect(dec((await p.recv({ seed: true }))!.payload)).toBe("two");
  });

  it("is visible to its own peer only", async () => {
    const { p, b } = await senders(kind);
    await p.send([], enc("mine"), { seed: true });
    expect(b.recv({ seed: true })).toBeNull();
  });

  it("installs the seed's handles in the caller when it is set", async () => {
    const { p, hc } = await senders(kind);
    await p.send([], enc("boot"), { seed: true, handles: [0x200, hc] });
    expect((await p.recv({ seed: true }))!.handles).toEqual([0x200, hc]);
  });

  it("holds the references of its handles until it is dropped, adding none on recv", async () => {
    const { p, c, hc } = await senders(kind);
    await p.send([], enc("boot"), { seed: true, handles: [hc] });
    await p.recv({ seed: true });
    await p.recv({ seed: true });
    await p.release(hc);
    await p.send(hc, enc("seed keeps the handle"));
    expect(drainLocal(c)).toEqual(["seed keeps the handle"]);
    await p.reset({ flushSeed: true });
    expectNotification(takeLocal(c), "node-release", 0x100);
    await rejects(() => p.send(hc), "ENXIO", "send: destinations[0] (19): no such handle or slice (ENXIO)");
  });

  it("drops the references of the old seed's handles when it is replaced", async () => {
    const { p, c, hc } = await senders(kind);
    await p.send([], enc("one"), { seed: true, handles: [hc] });
    await p.release(hc);
    await p.send([], enc("two"), { seed: true });
    expectNotification(takeLocal(c), "node-release", 0x100);
    await rejects(() => p.send(hc), "ENXIO");
  });

  it("refuses releaseSlice on the seed with EPERM and keeps it", async () => {
    const { p } = await senders(kind);
    await p.send([], enc("boot"), { seed: true });
    const seed = (await p.recv({ seed: true }))!;
    await rejects(() => p.releaseSlice(seed.offset), "EPERM", `releaseSlice: offset (${seed.offset}): not permitted (EPERM)`);
    if (kind.served) {
      // a served peer's seed copy has no slice and no buffer to give back: release() does nothing, it cannot fail
      expect(seed.release()).toBeUndefined();
    } else {
      expectCode(() => seed.release(), "EPERM");
    }
    expect(dec((await p.recv({ seed: true }))!.payload)).toBe("boot");
  });

  it("survives a flush", async () => {
    const { p } = await senders(kind);
    await p.send([], enc("boot"), { seed: true });
    await p.reset({ flush: true });
    expect(dec((await p.recv({ seed: true }))!.payload)).toBe("boot");
  });

  it("is dropped by flushSeed, freeing its slice", async () => {
    const { p } = await senders(kind);
    await p.send([], enc("boot"), { seed: true });
    const offset = (await p.recv({ seed: true }))!.offset;
    await p.reset({ flushSeed: true });
    expect(await p.recv({ seed: true })).toBeNull();
    await rejects(() => p.releaseSlice(offset), "ENXIO", `releaseSlice: offset (${offset}): no such handle or slice (ENXIO)`);
  });

  it("rejects seed with destinations with EINVAL, changing nothing", async () => {
    const { p } = await senders(kind);
    await p.send([], enc("old"), { seed: true });
    await rejects(() => p.send(4, enc("new"), { seed: true }), "EINVAL",
      "send: seed: a seed has no destinations, got 1: invalid argument (EINVAL)");
    await rejects(() => p.release(4), "ENXIO");
    await expectNothing(p);
    expect(dec((await p.recv({ seed: true }))!.payload)).toBe("old");
  });

  it("rejects seed with continue with EINVAL", async () => {
    const { p } = await senders(kind);
    await rejects(() => p.send([], enc("new"), { seed: true, continue: true }), "EINVAL",
      "send: continue: a seed is set, not sent, so continue has no meaning: invalid argument (EINVAL)");
    expect(await p.recv({ seed: true })).toBeNull();
  });

  it("is charged to the caller's own limits", async () => {
    const { p, app, hp } = await receiver(kind);
    await p.reset({ limits: { maxSlices: 1 } });
    await p.send([], enc("boot"), { seed: true });
    expectCode(() => app.send(hp, enc("no room")), "EDQUOT");
    await p.reset({ flushSeed: true });
    app.send(hp, enc("room again"));
    expect(await drainTexts(p)).toEqual(["room again"]);
  });

  it("keeps its objects and gives them on every read", async () => {
    const { p } = await senders(kind);
    const obj = { boot: [1, 2] };
    await p.send([], enc("boot"), { seed: true, objects: [obj] });
    const first = (await p.recv({ seed: true }))!;
    const second = (await p.recv({ seed: true }))!;
    expect(first.objects).toEqual([obj]);
    expect(second.objects).toEqual([obj]);
    // a local peer gets the value itself each time; a served peer a clone of it (it crossed a port)
    if (kind.served) expect(first.objects[0]).not.toBe(obj);
    else expect([first.objects[0], second.objects[0]]).toEqual([obj, obj]);
  });
});

describe.each(kinds)("forwarding a received payload ($name peer)", (kind) => {
  describe.each(["private", "shared"] as BusKind[])("%s memory", (busKind) => {
    /** p receives from app (on node 0x200) and holds pc to c's node 4. */
    async function relay() {
      const bus = await makeBus(busKind);
      const s = bus.connect();
      const app = bus.connect();
      const c = bus.connect();
      const hp = s.transfer(0x200, app);
      const pc = c.transfer(4, s);
      const p = await kind.wrap(bus, s);
      return { p, app, c, hp, pc };
    }

    it("forwards a received payload to another peer", async () => {
      const { p, app, c, hp, pc } = await relay();
      app.send(hp, enc("pass it on"));
      const msg = (await p.recv())!;
      await p.send(pc, msg.payload);
      msg.release();
      expect(takeOneLocal(c).text).toBe("pass it on");
    });

    it("forwards a received payload into its own pool", async () => {
      const { p, app, hp } = await relay();
      app.send(hp, enc("echo"));
      const msg = (await p.recv())!;
      await p.send(0x200, msg.payload);
      const again = (await p.recv())!;
      expect(again.offset).not.toBe(msg.offset);
      expect([dec(again.payload), dec(msg.payload)]).toEqual(["echo", "echo"]);
      msg.release();
      again.release();
    });

    it("keeps the forwarded copy intact after the original slice is released and reused", async () => {
      const { p, app, c, hp, pc } = await relay();
      app.send(hp, bytesOf(32, 0x41));
      const msg = (await p.recv())!;
      await p.send(pc, msg.payload);
      msg.release();
      app.send(hp, bytesOf(32, 0x42));
      expect((await takeOne(p)).text).toBe("B".repeat(32));
      expect(takeOneLocal(c).text).toBe("A".repeat(32));
    });

    it("forwards a subarray of a received payload", async () => {
      const { p, app, c, hp, pc } = await relay();
      app.send(hp, enc("0123456789"));
      const msg = (await p.recv())!;
      await p.send(pc, msg.payload.subarray(2, 5));
      msg.release();
      expect(takeOneLocal(c).text).toBe("234");
    });

    it("forwards a received payload as one of several vecs", async () => {
      const { p, app, c, hp, pc } = await relay();
      app.send(hp, enc("middle"));
      const msg = (await p.recv())!;
      await p.send(pc, [enc("<"), msg.payload, enc(">")]);
      msg.release();
      expect(takeOneLocal(c).text).toBe("<middle>");
    });
  });
});
