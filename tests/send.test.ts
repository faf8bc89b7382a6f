// SPEC §4: send — atomic multicast, continue, whole-call errors, copy once,
// slice layout, messages to destroyed nodes, the seed, forwarding.

import { describe, expect, it } from "vitest";
import {
  HANDLE_INVALID,
  UNKNOWN_REMOTE,
  bytesOf,
  dec,
  drain,
  drainTexts,
  enc,
  expectCode,
  expectEmpty,
  expectNotification,
  expectRemoteId,
  makeBus,
  newBus,
  newSharedBus,
  pad8,
  peers,
  sliceView,
  take,
  takeOne,
} from "./helpers.js";
import type { BusKind, Peer } from "./helpers.js";

/** a sends; b and c each own node 0x100, a holds handles hb and hc to them. */
async function trio(kind: BusKind = "private") {
  const bus = await makeBus(kind);
  const a = bus.connect();
  const b = bus.connect();
  const c = bus.connect();
  return { bus, a, b, c, hb: b.transfer(0x100, a), hc: c.transfer(0x100, a) };
}

/** Fills `peer`'s slice quota: limit it to `n` slices and queue `n` messages from `from`. */
function fillSlices(peer: Peer, from: Peer, handle: number, n = 1) {
  peer.reset({ limits: { maxSlices: n } });
  for (let i = 0; i < n; i++) from.send(handle, enc(`filler ${i}`));
}

describe("delivery", () => {
  it("delivers a unicast to the owner of the destination node, with the owner's ID", async () => {
    const { a, b, hb } = await trio();
    a.send(hb, enc("hi"));
    const msg = takeOne(b);
    expect(msg.type).toBe("data");
    expect(msg.destination).toBe(0x100);
    expect(msg.text).toBe("hi");
    expectEmpty(a);
  });

  it("delivers a multicast to the owners of every destination", async () => {
    const { a, b, c, hb, hc } = await trio();
    a.send([hb, hc], enc("all"));
    expect(drainTexts(b)).toEqual(["all"]);
    expect(drainTexts(c)).toEqual(["all"]);
  });

  it("returns one null error per destination without continue", async () => {
    const { a, hb, hc } = await trio();
    expect(a.send([hb, hc], enc("x")).errors).toEqual([null, null]);
    expect(a.send(hb, enc("x")).errors).toEqual([null]);
  });

  it("accepts any array-like of destinations", async () => {
    const { a, b, c, hb, hc } = await trio();
    a.send(new Float64Array([hb, hc]), enc("typed"));
    a.send({ length: 1, 0: hb } as ArrayLike<number>, enc("array-like"));
    expect(drainTexts(b)).toEqual(["typed", "array-like"]);
    expect(drainTexts(c)).toEqual(["typed"]);
  });

  it("allows zero destinations, delivering nothing", async () => {
    const { a, b, c } = await trio();
    expect(a.send([], enc("into the void")).errors).toEqual([]);
    expectEmpty(a);
    expectEmpty(b);
    expectEmpty(c);
  });

  it("allows an empty payload, given as nothing, an empty array or an empty vec list", async () => {
    const { peers: [a] } = await peers(1);
    a.send(4);
    a.send(4, new Uint8Array(0));
    a.send(4, []);
    const all = drain(a);
    expect(all).toHaveLength(3);
    for (const m of all) {
      expect(m.type).toBe("data");
      expect(m.bytes.length).toBe(0);
      expect(m.offset).toBeGreaterThanOrEqual(0);
    }
  });

  it("concatenates payload vecs in order", async () => {
    const { peers: [a] } = await peers(1);
    a.send(4, [enc("ab"), enc(""), enc("cde"), enc("f")]);
    expect(takeOne(a).text).toBe("abcdef");
  });

  it("sends only the bytes a subarray covers", async () => {
    const { peers: [a] } = await peers(1);
    a.send(4, enc("0123456789").subarray(3, 6));
    expect(takeOne(a).text).toBe("345");
  });

  it("copies the payload at send time", async () => {
    const { peers: [a] } = await peers(1);
    const payload = enc("original");
    a.send(4, payload);
    payload.fill(0x78);
    expect(takeOne(a).text).toBe("original");
  });

  it("accepts 1024 vecs", async () => {
    const { peers: [a] } = await peers(1);
    const vecs = Array.from({ length: 1024 }, (_, i) => new Uint8Array([i & 0xff]));
    a.send(4, vecs);
    const msg = takeOne(a);
    expect(msg.bytes.length).toBe(1024);
    expect(msg.bytes[0]).toBe(0);
    expect(msg.bytes[1023]).toBe(1023 & 0xff);
  });

  it("delivers a 1 MiB payload intact", async () => {
    const { peers: [a] } = await peers(1);
    const big = new Uint8Array(1 << 20);
    for (let i = 0; i < big.length; i++) big[i] = (i * 7) & 0xff;
    a.send(4, big);
    const msg = a.recv()!;
    expect(msg.payload.length).toBe(big.length);
    const got = msg.payload.slice();
    let firstDifference = -1;
    for (let i = 0; i < big.length && firstDifference < 0; i++) if (got[i] !== big[i]) firstDifference = i;
    expect(firstDifference).toBe(-1);
    msg.release();
  });
});

describe("atomic multicast", () => {
  it("fails the whole call with EHOSTUNREACH when one destination is destroyed, delivering to nobody", async () => {
    const { a, b, c, hb, hc } = await trio();
    c.destroy(0x100);
    drain(a);
    expectCode(() => a.send([hb, hc], enc("x")), "EHOSTUNREACH");
    expectEmpty(b);
  });

  it("fails the whole call with EDQUOT when one destination is over quota, delivering to nobody", async () => {
    const { a, b, c, hb, hc } = await trio();
    fillSlices(b, a, hb);
    expectCode(() => a.send([hc, hb], enc("x")), "EDQUOT");
    expectEmpty(c);
    expect(drainTexts(b)).toEqual(["filler 0"]);
  });

  it("throws the error of the first failing destination", async () => {
    const { a, b, c, hb, hc } = await trio();
    fillSlices(b, a, hb);
    c.destroy(0x100);
    expectCode(() => a.send([hc, hb], enc("x")), "EHOSTUNREACH");
    expectCode(() => a.send([hb, hc], enc("x")), "EDQUOT");
  });

  it("creates no node and gives no handle when the call fails", async () => {
    const { a, b, c, hb, hc } = await trio();
    c.destroy(0x100);
    expectCode(() => a.send([hb, hc], enc("x"), { handles: [0x200] }), "EHOSTUNREACH");
    expectCode(() => a.release(0x200), "ENXIO");
    expectEmpty(b);
  });
});

describe("continue", () => {
  it("delivers to the other destinations and reports EHOSTUNREACH for a destroyed one", async () => {
    const { a, b, c, hb, hc } = await trio();
    c.destroy(0x100);
    expect(a.send([hb, hc], enc("partial"), { continue: true }).errors).toEqual([null, "EHOSTUNREACH"]);
    expect(drainTexts(b)).toEqual(["partial"]);
  });

  it("reports EDQUOT for a destination over quota and delivers to the rest", async () => {
    const { a, b, c, hb, hc } = await trio();
    fillSlices(b, a, hb);
    expect(a.send([hb, hc], enc("partial"), { continue: true }).errors).toEqual(["EDQUOT", null]);
    expect(drainTexts(c)).toEqual(["partial"]);
    expect(drainTexts(b)).toEqual(["filler 0"]);
  });

  it("reports EHOSTUNREACH for a node whose owner disconnected", async () => {
    const { a, c, b, hb, hc } = await trio();
    b.disconnect();
    expect(a.send([hb, hc], enc("partial"), { continue: true }).errors).toEqual(["EHOSTUNREACH", null]);
    expect(drainTexts(c)).toEqual(["partial"]);
  });

  it("returns all-null errors when every destination succeeds", async () => {
    const { a, hb, hc } = await trio();
    expect(a.send([hb, hc], enc("x"), { continue: true }).errors).toEqual([null, null]);
  });

  it("succeeds when every destination fails, reporting each error", async () => {
    const { a, b, c, hb, hc } = await trio();
    fillSlices(b, a, hb);
    c.destroy(0x100);
    expect(a.send([hb, hc], enc("x"), { continue: true }).errors).toEqual(["EDQUOT", "EHOSTUNREACH"]);
  });

  it("fails the whole call with ENXIO for an unknown destination", async () => {
    const { a, b, hb } = await trio();
    expectCode(() => a.send([hb, UNKNOWN_REMOTE], enc("x"), { continue: true }), "ENXIO");
    expectEmpty(b);
  });

  it("fails the whole call with ENXIO for an unknown attached handle", async () => {
    const { a, b, hb } = await trio();
    expectCode(() => a.send([hb], enc("x"), { continue: true, handles: [UNKNOWN_REMOTE] }), "ENXIO");
    expectEmpty(b);
  });

  it("fails the whole call with ENOTUNIQ for a destination listed twice", async () => {
    const { a, b, c, hb, hc } = await trio();
    expectCode(() => a.send([hb, hc, hb], enc("x"), { continue: true }), "ENOTUNIQ");
    expectEmpty(b);
    expectEmpty(c);
  });

  it("fails with ENOTUNIQ for a caller-chosen destination listed twice, creating no node", async () => {
    const { peers: [a] } = await peers(1);
    expectCode(() => a.send([4, 4], enc("x")), "ENOTUNIQ");
    expectCode(() => a.release(4), "ENXIO");
    expectEmpty(a);
  });

  it("fails the whole call with EMSGSIZE for 1025 vecs", async () => {
    const { a, b, hb } = await trio();
    const vecs = Array.from({ length: 1025 }, () => new Uint8Array(1));
    expectCode(() => a.send([hb], vecs, { continue: true }), "EMSGSIZE");
    expectEmpty(b);
  });

  it("fails the whole call with EMSGSIZE for 257 objects", async () => {
    const { a, b, hb } = await trio();
    const objects = Array.from({ length: 257 }, () => ({}));
    expectCode(() => a.send([hb], enc("x"), { continue: true, objects }), "EMSGSIZE");
    expectEmpty(b);
  });

  it("fails the whole call with EMSGSIZE for a payload larger than a receiver's maxInflightBytes", async () => {
    const { a, b, c, hb, hc } = await trio();
    b.reset({ limits: { maxInflightBytes: 64 } });
    expectCode(() => a.send([hc, hb], bytesOf(65, 1), { continue: true }), "EMSGSIZE");
    expectEmpty(b);
    expectEmpty(c);
  });

  it("fails the whole call with ESHUTDOWN when the caller is disconnected", async () => {
    const { a, hb } = await trio();
    a.disconnect();
    expectCode(() => a.send([hb], enc("x"), { continue: true }), "ESHUTDOWN");
  });
});

describe("message size", () => {
  it("uses EDQUOT, not EMSGSIZE, for a message that fits the limit but not the space left", async () => {
    const { a, b, hb } = await trio();
    b.reset({ limits: { maxInflightBytes: 64 } });
    a.send(hb, bytesOf(40, 1));
    expectCode(() => a.send(hb, bytesOf(40, 2)), "EDQUOT");
  });

  it("accepts a message whose slice exactly fills maxInflightBytes", async () => {
    const { a, b, hb } = await trio();
    b.reset({ limits: { maxInflightBytes: 64 } });
    a.send(hb, bytesOf(56, 1), { handles: [4] });
    const msg = takeOne(b);
    expect(msg.bytes.length).toBe(56);
    expect(msg.handles).toHaveLength(1);
  });

  it("counts the padding and the handle array in the size that must fit", async () => {
    const { a, b, hb } = await trio();
    b.reset({ limits: { maxInflightBytes: 64 } });
    // 57 bytes pad to 64, plus 8 for the handle: 72
    expectCode(() => a.send(hb, bytesOf(57, 1), { handles: [4] }), "EMSGSIZE");
    expectCode(() => a.release(4), "ENXIO");
  });

  it("fails with EMSGSIZE for a payload larger than the receiving user's maxInflightBytes", async () => {
    const bus = await newBus({ limits: { maxInflightBytes: 256 } });
    const a = bus.connect();
    const b = bus.connect();
    const hb = b.transfer(4, a);
    expectCode(() => a.send(hb, bytesOf(300, 1)), "EMSGSIZE");
    expectEmpty(b);
  });
});

describe.each(["private", "shared"] as BusKind[])("copy once (%s memory)", (kind) => {
  it("gives a peer that owns two destinations two messages in distinct slices, the first flagged continue", async () => {
    const { a, b } = await trio(kind);
    const h1 = b.transfer(4, a);
    const h2 = b.transfer(8, a);
    a.send([h1, h2], enc("twice"));
    const m1 = b.recv()!;
    const m2 = b.recv()!;
    expect(m1.continue).toBe(true);
    expect(m2.continue).toBe(false);
    expect(m1.offset).not.toBe(m2.offset);
    expect(new Set([m1.destination, m2.destination])).toEqual(new Set([4, 8]));
    expect(dec(m1.payload)).toBe("twice");
    expect(dec(m2.payload)).toBe("twice");
    m1.release();
    m2.release();
    expectEmpty(b);
  });

  it("keeps each delivered copy independent of the others", async () => {
    const { a, b } = await trio(kind);
    const h1 = b.transfer(4, a);
    const h2 = b.transfer(8, a);
    a.send([h1, h2], enc("same"));
    const m1 = b.recv()!;
    const m2 = b.recv()!;
    m1.payload[0] = "S".charCodeAt(0);
    expect(dec(m1.payload)).toBe("Same");
    expect(dec(m2.payload)).toBe("same");
    m1.release();
    m2.release();
  });

  it("flags continue only within one transaction", async () => {
    const { a, b } = await trio(kind);
    const h1 = b.transfer(4, a);
    const h2 = b.transfer(8, a);
    a.send(h1, enc("one"));
    a.send([h1, h2], enc("two"));
    a.send(h2, enc("three"));
    const all = drain(b);
    expect(all.map((m) => m.text)).toEqual(["one", "two", "two", "three"]);
    expect(all.map((m) => m.continue)).toEqual([false, true, false, false]);
  });

  it("does not flag continue for a receiver that owns one destination of a multicast", async () => {
    const { a, b, c, hb, hc } = await trio(kind);
    a.send([hb, hc], enc("x"));
    expect(takeOne(b).continue).toBe(false);
    expect(takeOne(c).continue).toBe(false);
  });
});

describe.each(["private", "shared"] as BusKind[])("slice layout (%s memory)", (kind) => {
  it("stores the payload, zero padding to 8, then the handle IDs as u64 LE in the receiver's ID space", async () => {
    const { a, b } = await trio(kind);
    const toB = b.transfer(4, a);
    const bOwn = b.transfer(8, a);
    a.destroy(0x300);
    a.send(toB, enc("abc"), { handles: [0x200, bOwn, 0x300] });
    const msg = b.recv()!;
    expect(msg.handles).toHaveLength(3);
    const [remote, own, dead] = msg.handles;
    expectRemoteId(remote);
    expect(own).toBe(8);
    expect(dead).toBe(HANDLE_INVALID);

    const view = sliceView(msg);
    expect([0, 1, 2].map((i) => view.getUint8(i))).toEqual([0x61, 0x62, 0x63]);
    expect([3, 4, 5, 6, 7].map((i) => view.getUint8(i))).toEqual([0, 0, 0, 0, 0]);
    expect(view.getBigUint64(8, true)).toBe(BigInt(remote));
    expect(view.getBigUint64(16, true)).toBe(8n);
    expect(view.getBigUint64(24, true)).toBe(2n ** 64n - 1n);
    msg.release();
  });

  it("zero-pads even over pool memory that held an older payload", async () => {
    const { peers: [a] } = await peers(1, kind);
    a.send(4, bytesOf(64, 0xff));
    take(a);
    a.send(4, enc("abc"), { handles: [8] });
    const msg = a.recv()!;
    const view = sliceView(msg);
    expect([3, 4, 5, 6, 7].map((i) => view.getUint8(i))).toEqual([0, 0, 0, 0, 0]);
    expect(view.getBigUint64(8, true)).toBe(8n);
    msg.release();
  });

  it("places the handle array right after the payload when its length is a multiple of 8", async () => {
    const { peers: [a] } = await peers(1, kind);
    a.send(4, bytesOf(16, 0xee), { handles: [8, 12] });
    const msg = a.recv()!;
    expect(msg.handles).toEqual([8, 12]);
    const view = sliceView(msg);
    expect(view.getBigUint64(16, true)).toBe(8n);
    expect(view.getBigUint64(24, true)).toBe(12n);
    msg.release();
  });

  it("delivers a handle to a node destroyed before the send as HANDLE_INVALID, with no notification", async () => {
    const { a, b, hb } = await trio(kind);
    a.destroy(0x300);
    a.send(hb, undefined, { handles: [0x300] });
    expect(takeOne(b).handles).toEqual([HANDLE_INVALID]);
    expectEmpty(b);
  });

  it("lists the received handles in the order they were attached", async () => {
    const { a, b, hb } = await trio(kind);
    a.send(hb, undefined, { handles: [0x200, 0x100, 0x300] });
    const handles = takeOne(b).handles;
    expect(new Set(handles).size).toBe(3);
    handles.forEach((h, i) => b.send(h, enc(String(i))));
    expect(drain(a).map((m) => [m.destination, m.text])).toEqual([
      [0x200, "0"],
      [0x100, "1"],
      [0x300, "2"],
    ]);
  });
});

describe("messages to destroyed nodes", () => {
  it("delivers a message ordered before the destruction of its destination", async () => {
    const { a, b, hb } = await trio();
    a.send(hb, enc("first"));
    b.destroy(0x100);
    const all = drain(b);
    expect(all.map((m) => [m.type, m.text])).toEqual([
      ["data", "first"],
      ["node-destroy", ""],
    ]);
  });

  it("fails a send to a node whose destruction is already ordered with EHOSTUNREACH", async () => {
    const { a, b, hb } = await trio();
    b.destroy(0x100);
    expectCode(() => a.send(hb, enc("late")), "EHOSTUNREACH");
    expect(drain(b).map((m) => m.type)).toEqual(["node-destroy"]);
  });

  it("fails a send by the owner to its own destroyed node with EHOSTUNREACH", async () => {
    const { peers: [a] } = await peers(1);
    a.destroy(4);
    expectCode(() => a.send(4, enc("late")), "EHOSTUNREACH");
  });

  it("delivers nothing more for a destroyed node once the owner released its handle", async () => {
    const { a, b, hb } = await trio();
    a.send(hb, enc("queued"));
    b.destroy(0x100);
    b.release(0x100);
    expectEmpty(b);
  });
});

describe("seed", () => {
  it("stores a message sent with seed and no destinations as the caller's seed", async () => {
    const { peers: [a] } = await peers(1);
    expect(a.send([], enc("boot"), { seed: true }).errors).toEqual([]);
    const seed = a.recv({ seed: true })!;
    expect(seed).not.toBeNull();
    expect(seed.type).toBe("data");
    expect(seed.destination).toBe(HANDLE_INVALID);
    expect(dec(seed.payload)).toBe("boot");
    expect(seed.offset % 8).toBe(0);
  });

  it("does not queue the seed", async () => {
    const { peers: [a] } = await peers(1);
    a.send([], enc("boot"), { seed: true });
    expect(a.recv()).toBeNull();
  });

  it("returns the seed on every recv({ seed: true }) without removing it", async () => {
    const { peers: [a] } = await peers(1);
    a.send([], enc("boot"), { seed: true });
    const first = a.recv({ seed: true })!;
    const second = a.recv({ seed: true })!;
    expect(second.offset).toBe(first.offset);
    expect(dec(second.payload)).toBe("boot");
  });

  it("returns null from recv({ seed: true }) when there is no seed", async () => {
    const { peers: [a] } = await peers(1);
    a.send(4, enc("queued, not a seed"));
    expect(a.recv({ seed: true })).toBeNull();
  });

  it("replaces the old seed", async () => {
    const { peers: [a] } = await peers(1);
    a.send([], enc("one"), { seed: true });
    a.send([], enc("two"), { seed: true });
    expect(dec(a.recv({ seed: true })!.payload)).toBe("two");
  });

  it("is visible to its own peer only", async () => {
    const { peers: [a, b] } = await peers(2);
    a.send([], enc("mine"), { seed: true });
    expect(b.recv({ seed: true })).toBeNull();
  });

  it("installs the seed's handles in the caller when it is set", async () => {
    const { a, hc } = await trio();
    a.send([], enc("boot"), { seed: true, handles: [0x200, hc] });
    expect(a.recv({ seed: true })!.handles).toEqual([0x200, hc]);
  });

  it("holds the references of its handles until it is dropped, adding none on recv", async () => {
    const { a, c, hc } = await trio();
    a.send([], enc("boot"), { seed: true, handles: [hc] });
    a.recv({ seed: true });
    a.recv({ seed: true });
    a.release(hc);
    a.send(hc, enc("seed keeps the handle"));
    expect(drainTexts(c)).toEqual(["seed keeps the handle"]);
    a.reset({ flushSeed: true });
    expectNotification(take(c), "node-release", 0x100);
    expectCode(() => a.send(hc), "ENXIO");
  });

  it("drops the references of the old seed's handles when it is replaced", async () => {
    const { a, c, hc } = await trio();
    a.send([], enc("one"), { seed: true, handles: [hc] });
    a.release(hc);
    a.send([], enc("two"), { seed: true });
    expectNotification(take(c), "node-release", 0x100);
    expectCode(() => a.send(hc), "ENXIO");
  });

  it("refuses releaseSlice on the seed with EPERM and keeps it", async () => {
    const { peers: [a] } = await peers(1);
    a.send([], enc("boot"), { seed: true });
    const seed = a.recv({ seed: true })!;
    expectCode(() => a.releaseSlice(seed.offset), "EPERM");
    expectCode(() => seed.release(), "EPERM");
    expect(dec(a.recv({ seed: true })!.payload)).toBe("boot");
  });

  it("survives a flush", async () => {
    const { peers: [a] } = await peers(1);
    a.send([], enc("boot"), { seed: true });
    a.reset({ flush: true });
    expect(dec(a.recv({ seed: true })!.payload)).toBe("boot");
  });

  it("is dropped by flushSeed, freeing its slice", async () => {
    const { peers: [a] } = await peers(1);
    a.send([], enc("boot"), { seed: true });
    const offset = a.recv({ seed: true })!.offset;
    a.reset({ flushSeed: true });
    expect(a.recv({ seed: true })).toBeNull();
    expectCode(() => a.releaseSlice(offset), "ENXIO");
  });

  it("rejects seed with destinations with EINVAL, changing nothing", async () => {
    const { peers: [a] } = await peers(1);
    a.send([], enc("old"), { seed: true });
    expect(expectCode(() => a.send(4, enc("new"), { seed: true }), "EINVAL").message).toMatch(/seed.*no destinations/);
    expectCode(() => a.release(4), "ENXIO");
    expectEmpty(a);
    expect(dec(a.recv({ seed: true })!.payload)).toBe("old");
  });

  it("rejects seed with continue with EINVAL", async () => {
    const { peers: [a] } = await peers(1);
    expect(expectCode(() => a.send([], enc("new"), { seed: true, continue: true }), "EINVAL").message).toMatch(/^send: continue/);
    expect(a.recv({ seed: true })).toBeNull();
  });

  it("is charged to the caller's own limits", async () => {
    const { a, b, hb } = await trio();
    b.reset({ limits: { maxSlices: 1 } });
    b.send([], enc("boot"), { seed: true });
    expectCode(() => a.send(hb, enc("no room")), "EDQUOT");
    b.reset({ flushSeed: true });
    a.send(hb, enc("room again"));
    expect(drainTexts(b)).toEqual(["room again"]);
  });
});

describe.each(["private", "shared"] as BusKind[])("forwarding a received payload (%s memory)", (kind) => {
  it("forwards a received payload view to another peer", async () => {
    const { a, b, c, hb } = await trio(kind);
    const bToC = c.transfer(4, b);
    a.send(hb, enc("pass it on"));
    const msg = b.recv()!;
    b.send(bToC, msg.payload);
    msg.release();
    expect(takeOne(c).text).toBe("pass it on");
  });

  it("forwards a received payload view into the receiver's own pool", async () => {
    const { a, b, hb } = await trio(kind);
    a.send(hb, enc("echo"));
    const msg = b.recv()!;
    b.send(0x100, msg.payload);
    const copy = b.recv()!;
    expect(copy.offset).not.toBe(msg.offset);
    expect(dec(copy.payload)).toBe("echo");
    expect(dec(msg.payload)).toBe("echo");
    msg.release();
    copy.release();
  });

  it("keeps the forwarded copy intact after the original slice is released and reused", async () => {
    const { a, b, c, hb } = await trio(kind);
    const bToC = c.transfer(4, b);
    a.send(hb, bytesOf(32, 0x41));
    const msg = b.recv()!;
    b.send(bToC, msg.payload);
    msg.release();
    a.send(hb, bytesOf(32, 0x42));
    const reused = takeOne(b);
    expect(reused.text).toBe("B".repeat(32));
    expect(takeOne(c).text).toBe("A".repeat(32));
  });

  it("forwards a subarray of a received payload", async () => {
    const { a, b, c, hb } = await trio(kind);
    const bToC = c.transfer(4, b);
    a.send(hb, enc("0123456789"));
    const msg = b.recv()!;
    b.send(bToC, msg.payload.subarray(2, 5));
    msg.release();
    expect(takeOne(c).text).toBe("234");
  });

  it("forwards a received payload view as one of several vecs", async () => {
    const { a, b, c, hb } = await trio(kind);
    const bToC = c.transfer(4, b);
    a.send(hb, enc("middle"));
    const msg = b.recv()!;
    b.send(bToC, [enc("<"), msg.payload, enc(">")]);
    msg.release();
    expect(takeOne(c).text).toBe("<middle>");
  });
});

describe("memory", () => {
  it("hands out payload views into shared memory on a default bus", async () => {
    const bus = await newSharedBus();
    const a = bus.connect();
    a.send(4, enc("x"));
    const msg = a.recv()!;
    expect(msg.payload.buffer).toBeInstanceOf(SharedArrayBuffer);
    msg.release();
  });

  it("hands out payload views into non-shared memory with shared: false", async () => {
    const { peers: [a] } = await peers(1);
    a.send(4, enc("x"));
    const msg = a.recv()!;
    expect(msg.payload.buffer).toBeInstanceOf(ArrayBuffer);
    expect(msg.payload.buffer).not.toBeInstanceOf(SharedArrayBuffer);
    msg.release();
  });
});
