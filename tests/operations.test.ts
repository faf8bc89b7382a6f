// SPEC §3: the operations (transfer, release, destroy, releaseSlice, reset,
// query, disconnect) and the life of a Peer reference (close).

import { describe, expect, it } from "vitest";
import {
  DEFAULT_LIMITS,
  HANDLE_INVALID,
  UNKNOWN_MANAGED,
  bytesOf,
  drain,
  drainTexts,
  enc,
  expectCode,
  expectCodeIn,
  expectEmpty,
  expectNotification,
  expectRemoteId,
  newBus,
  pad8,
  peers,
  take,
  takeOne,
} from "./helpers.js";
import type { Peer } from "./helpers.js";

describe("transfer", () => {
  it("lets the destination peer send to the node through the returned ID", async () => {
    const { peers: [a, b] } = await peers(2);
    const h = a.transfer(4, b);
    b.send(h, enc("through the handle"));
    const msg = takeOne(a);
    expect(msg.destination).toBe(4);
    expect(msg.text).toBe("through the handle");
    expectEmpty(b);
  });

  it("gives the handle to the caller itself when no peer is given", async () => {
    const { peers: [a, b] } = await peers(2);
    const h = a.transfer(4, b);
    expect(b.transfer(h)).toBe(h);
    b.release(h);
    b.release(h);
    expectCode(() => b.release(h), "ENXIO");
  });

  it("passes a remote handle on to a third peer", async () => {
    const { peers: [a, b, c] } = await peers(3);
    const hb = a.transfer(4, b);
    const hc = b.transfer(hb, c);
    expectRemoteId(hc);
    c.send(hc, enc("from c"));
    const msg = takeOne(a);
    expect(msg.destination).toBe(4);
    expect(msg.text).toBe("from c");
  });

  it("queues nothing on either peer", async () => {
    const { peers: [a, b] } = await peers(2);
    a.transfer(4, b);
    expectEmpty(a);
    expectEmpty(b);
  });

  it("returns HANDLE_INVALID for a destroyed node and gives no handle", async () => {
    const { peers: [a, b, c] } = await peers(3);
    const hb = a.transfer(4, b);
    a.destroy(4);
    expect(b.transfer(hb, c)).toBe(HANDLE_INVALID);
    expect(a.transfer(4, c)).toBe(HANDLE_INVALID);
    expectEmpty(c);
  });

  it("adds no reference when it returns HANDLE_INVALID", async () => {
    const { peers: [a, b] } = await peers(2);
    const hb = a.transfer(4, b);
    a.destroy(4);
    expect(b.transfer(hb)).toBe(HANDLE_INVALID);
    b.release(hb);
    expectCode(() => b.release(hb), "ENXIO");
  });

  it("fails with ENXIO for a source ID that names no handle", async () => {
    const { peers: [a, b] } = await peers(2);
    expectCode(() => a.transfer(UNKNOWN_MANAGED, b), "ENXIO");
    expectEmpty(b);
  });

  it("fails with ESHUTDOWN when the caller is disconnected", async () => {
    const { peers: [a, b] } = await peers(2);
    a.disconnect();
    expectCode(() => a.transfer(4, b), "ESHUTDOWN");
  });

  it("fails with ESHUTDOWN when the destination peer is disconnected, creating no node", async () => {
    const { peers: [a, b] } = await peers(2);
    b.disconnect();
    expectCode(() => a.transfer(4, b), "ESHUTDOWN");
    expectCode(() => a.release(4), "ENXIO");
  });

  it("fails with EDQUOT when the destination peer has no handle quota left, creating no node", async () => {
    const { peers: [a, b] } = await peers(2);
    b.reset({ limits: { maxHandles: 1 } });
    a.transfer(4, b);
    expectCode(() => a.transfer(8, b), "EDQUOT");
    expectCode(() => a.release(8), "ENXIO");
  });

  it("fails with EINVAL when the destination is not a Peer", async () => {
    const { peers: [a] } = await peers(1);
    expectCode(() => a.transfer(4, {} as any), "EINVAL");
    expectCode(() => a.transfer(4, 7 as any), "EINVAL");
    expectCode(() => a.release(4), "ENXIO");
  });

  it("fails with EINVAL when the destination is a Peer of another bus", async () => {
    const { peers: [a] } = await peers(1);
    const other = (await newBus()).connect();
    expectCode(() => a.transfer(4, other), "EINVAL");
    expectCode(() => a.release(4), "ENXIO");
    expectEmpty(other);
  });
});

describe("release", () => {
  it("drops exactly one user-reference", async () => {
    const { peers: [a, b] } = await peers(2);
    const h = a.transfer(4, b);
    a.transfer(4, b);
    b.release(h);
    b.send(h, enc("one left"));
    expect(takeOne(a).text).toBe("one left");
  });

  it("fails with EBUSY on the owner's last reference of a live node and changes nothing", async () => {
    const { peers: [a, b] } = await peers(2);
    const h = a.transfer(4, b);
    expectCode(() => a.release(4), "EBUSY");
    b.release(h);
    expectNotification(take(a), "node-release", 4);
  });
});

describe("destroy", () => {
  it("notifies every holder with its own handle ID, the owner included", async () => {
    const { peers: [a, b, c] } = await peers(3);
    const hb = a.transfer(4, b);
    const hc = a.transfer(4, c);
    a.destroy(4);
    expectNotification(take(a), "node-destroy", 4);
    expectNotification(take(b), "node-destroy", hb);
    expectNotification(take(c), "node-destroy", hc);
    expectEmpty(a);
    expectEmpty(b);
    expectEmpty(c);
  });

  it("does not flag the notification of a single-node destroy with continue", async () => {
    const { peers: [a, b] } = await peers(2);
    a.transfer(4, b);
    a.destroy(4);
    expect(takeOne(a).continue).toBe(false);
    expect(takeOne(b).continue).toBe(false);
  });

  it("flags every notification of a multi-node destroy with continue except each receiver's last", async () => {
    const { peers: [a, b] } = await peers(2);
    const held = [a.transfer(4, b), a.transfer(8, b), a.transfer(12, b)];
    a.destroy([4, 8, 12]);
    const atOwner = drain(a);
    expect(atOwner.map((m) => m.type)).toEqual(["node-destroy", "node-destroy", "node-destroy"]);
    expect(atOwner.map((m) => m.continue)).toEqual([true, true, false]);
    expect(atOwner.map((m) => m.destination).sort((x, y) => x - y)).toEqual([4, 8, 12]);
    const atHolder = drain(b);
    expect(atHolder.map((m) => m.continue)).toEqual([true, true, false]);
    expect(new Set(atHolder.map((m) => m.destination))).toEqual(new Set(held));
  });

  it("gives a holder of only one of the destroyed nodes a lone notification without continue", async () => {
    const { peers: [a, b, c] } = await peers(3);
    a.transfer(4, b);
    a.transfer(8, b);
    const hc = a.transfer(8, c);
    a.destroy([4, 8]);
    const atC = drain(c);
    expect(atC).toHaveLength(1);
    expectNotification(atC[0], "node-destroy", hc);
    expect(atC[0].continue).toBe(false);
  });

  it("makes later sends to the node fail with EHOSTUNREACH", async () => {
    const { peers: [a, b] } = await peers(2);
    const h = a.transfer(4, b);
    a.destroy(4);
    expectCode(() => b.send(h, enc("too late")), "EHOSTUNREACH");
    expectCode(() => a.send(4, enc("too late")), "EHOSTUNREACH");
  });

  it("delivers the node-destroy after data queued to the node before the destruction", async () => {
    const { peers: [a, b] } = await peers(2);
    const h = a.transfer(4, b);
    b.send(h, enc("before"));
    a.destroy(4);
    const all = drain(a);
    expect(all.map((m) => m.type)).toEqual(["data", "node-destroy"]);
    expect(all[0].text).toBe("before");
  });

  it("notifies a peer that receives the handle in a message ordered before the destruction, after that message", async () => {
    const { peers: [a, b] } = await peers(2);
    const toB = b.transfer(0x100, a);
    a.send(toB, enc("carrier"), { handles: [4] });
    a.destroy(4);
    const carrier = takeOne(b);
    expect(carrier.type).toBe("data");
    const h = carrier.handles[0];
    expectRemoteId(h);
    expectNotification(take(b), "node-destroy", h);
    expectEmpty(b);
  });

  it("with releaseHandles drops the owner's reference and sends it no notification", async () => {
    const { peers: [a, b] } = await peers(2);
    const hb = a.transfer(4, b);
    a.destroy(4, { releaseHandles: true });
    expectEmpty(a);
    expectCode(() => a.release(4), "ENXIO");
    expectNotification(take(b), "node-destroy", hb);
  });

  it("with releaseHandles drops only one reference of the owner handle", async () => {
    const { peers: [a] } = await peers(1);
    a.transfer(4);
    a.destroy(4, { releaseHandles: true });
    expectNotification(take(a), "node-destroy", 4);
    a.release(4);
    expectCode(() => a.release(4), "ENXIO");
  });

  it("with releaseHandles frees the caller-chosen ID for a fresh node", async () => {
    const { peers: [a, b] } = await peers(2);
    const hb = a.transfer(4, b);
    a.destroy(4, { releaseHandles: true });
    a.send(4, enc("fresh node"));
    const msg = takeOne(a);
    expect(msg.destination).toBe(4);
    expect(msg.text).toBe("fresh node");
    expectCode(() => b.send(hb), "EHOSTUNREACH");
  });

  it("does nothing for an empty list", async () => {
    const { peers: [a, b] } = await peers(2);
    const h = a.transfer(4, b);
    a.destroy([]);
    expectEmpty(a);
    expectEmpty(b);
    b.send(h, enc("alive"));
    expect(takeOne(a).text).toBe("alive");
  });

  it("fails with ENXIO for a managed ID that names no handle", async () => {
    const { peers: [a] } = await peers(1);
    expectCode(() => a.destroy(UNKNOWN_MANAGED), "ENXIO");
  });

  it("fails with EREMOTE for a node owned by another peer", async () => {
    const { peers: [a, b] } = await peers(2);
    const h = a.transfer(4, b);
    expectCode(() => b.destroy(h), "EREMOTE");
    b.send(h, enc("still alive"));
    expect(takeOne(a).text).toBe("still alive");
    expectEmpty(b);
  });

  it("fails with ESTALE for a node that is already destroyed", async () => {
    const { peers: [a] } = await peers(1);
    a.destroy(4);
    expectCode(() => a.destroy(4), "ESTALE");
  });

  it("fails with ENOTUNIQ for a node listed twice", async () => {
    const { peers: [a, b] } = await peers(2);
    const h = a.transfer(4, b);
    expectCode(() => a.destroy([4, 8, 4]), "ENOTUNIQ");
    expectEmpty(a);
    expectEmpty(b);
    b.send(h, enc("alive"));
    expect(takeOne(a).text).toBe("alive");
  });

  it("fails with EINVAL for an ID that is not valid", async () => {
    const { peers: [a] } = await peers(1);
    expectCode(() => a.destroy([4, 2.5]), "EINVAL");
    expectCode(() => a.release(4), "ENXIO");
  });

  it("destroys none of the listed nodes when one is remote", async () => {
    const { peers: [a, b, c] } = await peers(3);
    const hb = a.transfer(4, b);
    const hc = c.transfer(0x100, a);
    expectCode(() => a.destroy([4, hc]), "EREMOTE");
    expectEmpty(a);
    expectEmpty(b);
    expectEmpty(c);
    b.send(hb, enc("alive"));
    expect(takeOne(a).text).toBe("alive");
  });

  it("destroys none of the listed nodes when one is already destroyed", async () => {
    const { peers: [a, b] } = await peers(2);
    const hb = a.transfer(4, b);
    a.destroy(8);
    take(a);
    expectCode(() => a.destroy([4, 8]), "ESTALE");
    expectEmpty(a);
    expectEmpty(b);
    b.send(hb, enc("alive"));
    expect(takeOne(a).text).toBe("alive");
  });

  it("creates no node when the call fails", async () => {
    const { peers: [a] } = await peers(1);
    expectCode(() => a.destroy([0x100, UNKNOWN_MANAGED]), "ENXIO");
    expectCode(() => a.release(0x100), "ENXIO");
    expectEmpty(a);
  });
});

describe("releaseSlice", () => {
  it("frees a received slice once; a second release is ENXIO", async () => {
    const { peers: [a] } = await peers(1);
    a.send(4, enc("slice"));
    const msg = a.recv()!;
    a.releaseSlice(msg.offset);
    expectCode(() => a.releaseSlice(msg.offset), "ENXIO");
  });

  it("is what message.release() does", async () => {
    const { peers: [a] } = await peers(1);
    a.send(4, enc("slice"));
    const msg = a.recv()!;
    msg.release();
    expectCode(() => msg.release(), "ENXIO");
    expectCode(() => a.releaseSlice(msg.offset), "ENXIO");
  });

  it("makes message.release() a no-op for notifications", async () => {
    const { peers: [a] } = await peers(1);
    a.destroy(4);
    const msg = a.recv()!;
    expect(msg.offset).toBe(-1);
    msg.release();
    msg.release();
  });

  it("fails with ENXIO for an offset inside a slice that is not its start", async () => {
    const { peers: [a] } = await peers(1);
    a.send(4, bytesOf(64, 1));
    const msg = a.recv()!;
    expectCode(() => a.releaseSlice(msg.offset + 8), "ENXIO");
    expectCode(() => a.releaseSlice(msg.offset + 1), "ENXIO");
    a.releaseSlice(msg.offset);
  });

  it("fails with ENXIO for an offset when no slice is held", async () => {
    const { peers: [a] } = await peers(1);
    expectCode(() => a.releaseSlice(0), "ENXIO");
    expectCode(() => a.releaseSlice(8), "ENXIO");
  });

  it("fails with ENXIO for another peer's slice offset", async () => {
    const { peers: [a, b] } = await peers(2);
    a.send(4, bytesOf(64, 1));
    const msg = a.recv()!;
    expectCode(() => b.releaseSlice(msg.offset), "ENXIO");
    a.releaseSlice(msg.offset);
  });

  it("hands out offsets that are multiples of 8", async () => {
    const { peers: [a] } = await peers(1);
    for (const n of [1, 3, 8, 9, 17, 100]) a.send(4, bytesOf(n, n), { handles: n % 2 ? [8] : [] });
    const all = drain(a, { keep: true });
    expect(all).toHaveLength(6);
    for (const m of all) {
      expect(Number.isSafeInteger(m.offset)).toBe(true);
      expect(m.offset).toBeGreaterThanOrEqual(0);
      expect(m.offset % 8).toBe(0);
    }
  });

  it("keeps the slices held at one time disjoint and their payloads intact", async () => {
    const { peers: [a] } = await peers(1);
    const texts = ["a", "bbbbbbbbbbb", "cc", "d".repeat(40), ""];
    for (const t of texts) a.send(4, enc(t), { handles: [8] });
    const held = texts.map(() => a.recv()!);
    expect(held.map((m) => new TextDecoder().decode(m.payload.slice()))).toEqual(texts);
    const ranges = held.map((m) => [m.offset, m.offset + pad8(m.payload.length) + 8 * m.handles.length]);
    ranges.sort((x, y) => x[0] - y[0]);
    for (let i = 1; i < ranges.length; i++) expect(ranges[i][0]).toBeGreaterThanOrEqual(ranges[i - 1][1]);
    for (const m of held) m.release();
  });
});

describe("reset", () => {
  it("sets per-peer limits that query reports", async () => {
    const { peers: [a] } = await peers(1);
    const limits = { maxSlices: 3, maxHandles: 5, maxInflightBytes: 1024, maxInflightObjects: 2 };
    a.reset({ limits });
    expect(a.query()).toMatchObject(limits);
  });

  it("keeps the limits a partial update does not name", async () => {
    const { peers: [a] } = await peers(1);
    a.reset({ limits: { maxSlices: 3 } });
    a.reset({ limits: { maxHandles: 7 } });
    expect(a.query()).toMatchObject({
      maxSlices: 3,
      maxHandles: 7,
      maxInflightBytes: DEFAULT_LIMITS.maxInflightBytes,
      maxInflightObjects: DEFAULT_LIMITS.maxInflightObjects,
    });
  });

  it("sets the limits of the calling peer only", async () => {
    const { peers: [a, b] } = await peers(2);
    a.reset({ limits: { maxSlices: 3 } });
    expect(b.query()).toMatchObject(DEFAULT_LIMITS);
  });

  it("without flush keeps the queue, the held slices and the handles", async () => {
    const { peers: [a, b] } = await peers(2);
    const hb = b.transfer(0x100, a);
    a.send(4, enc("held"));
    a.send(4, enc("queued"));
    const held = a.recv()!;
    a.reset();
    a.reset({ limits: { maxSlices: 100 } });
    expect(takeOne(a).text).toBe("queued");
    a.releaseSlice(held.offset);
    a.send(hb, enc("handle kept"));
    expect(takeOne(b).text).toBe("handle kept");
  });

  it("with flush drops every queued message", async () => {
    const { peers: [a, b] } = await peers(2);
    const h = a.transfer(4, b);
    b.send(h, enc("1"));
    b.send(h, enc("2"));
    a.reset({ flush: true });
    expectEmpty(a);
  });

  it("with flush destroys every node and notifies the other holders in one transaction", async () => {
    const { peers: [a, b] } = await peers(2);
    const h4 = a.transfer(4, b);
    const h8 = a.transfer(8, b);
    a.reset({ flush: true });
    const all = drain(b);
    expect(all.map((m) => m.type)).toEqual(["node-destroy", "node-destroy"]);
    expect(all.map((m) => m.continue)).toEqual([true, false]);
    expect(new Set(all.map((m) => m.destination))).toEqual(new Set([h4, h8]));
    expectCode(() => b.send(h4), "EHOSTUNREACH");
    expectEmpty(a);
  });

  it("with flush releases every handle the peer held", async () => {
    const { peers: [a, c] } = await peers(2);
    const hc = c.transfer(0x100, a);
    a.reset({ flush: true });
    expectCode(() => a.send(hc), "ENXIO");
    expectNotification(take(c), "node-release", 0x100);
  });

  it("with flush frees the pool: slices held before are gone", async () => {
    const { peers: [a] } = await peers(1);
    a.send(4, enc("held"));
    const held = a.recv()!;
    a.reset({ flush: true });
    expectCode(() => a.releaseSlice(held.offset), "ENXIO");
  });

  it("with flush frees the caller-chosen IDs for fresh nodes", async () => {
    const { peers: [a, b] } = await peers(2);
    const old = a.transfer(4, b);
    a.reset({ flush: true });
    a.send(4, enc("fresh"));
    expect(takeOne(a).destination).toBe(4);
    expect(a.transfer(4, b)).not.toBe(old);
  });

  it("with flush keeps the peer connected", async () => {
    const { peers: [a, b] } = await peers(2);
    a.reset({ flush: true });
    const h = a.transfer(4, b);
    b.send(h, enc("after flush"));
    expect(takeOne(a).text).toBe("after flush");
  });

  it("with flush keeps the limits", async () => {
    const { peers: [a] } = await peers(1);
    a.reset({ limits: { maxSlices: 9 } });
    a.reset({ flush: true });
    expect(a.query().maxSlices).toBe(9);
  });

  it("with flushSeed alone keeps the queue", async () => {
    const { peers: [a] } = await peers(1);
    a.send([], enc("seed"), { seed: true });
    a.send(4, enc("queued"));
    a.reset({ flushSeed: true });
    expect(a.recv({ seed: true })).toBeNull();
    expect(takeOne(a).text).toBe("queued");
  });

  it.each([
    ["a negative limit", { maxSlices: -1 }],
    ["a fractional limit", { maxHandles: 2.5 }],
    ["a NaN limit", { maxInflightBytes: NaN }],
    ["an infinite limit", { maxInflightObjects: Infinity }],
    ["a string limit", { maxSlices: "3" }],
    ["an unknown limit", { maxPeers: 3 }],
  ])("rejects %s with EINVAL and keeps the old limits", async (_, limits) => {
    const { peers: [a] } = await peers(1);
    a.reset({ limits: { maxSlices: 5 } });
    const before = a.query();
    expectCode(() => a.reset({ limits: limits as any }), "EINVAL");
    expect(a.query()).toEqual(before);
  });

  it("rejects bad limits without flushing anything", async () => {
    const { peers: [a] } = await peers(1);
    a.send(4, enc("kept"));
    a.send([], enc("seed"), { seed: true });
    expectCode(() => a.reset({ flush: true, flushSeed: true, limits: { maxSlices: -1 } }), "EINVAL");
    expect(takeOne(a).text).toBe("kept");
    expect(a.recv({ seed: true })).not.toBeNull();
  });
});

describe("query", () => {
  it("reports the default per-user limits", async () => {
    const { peers: [a] } = await peers(1);
    expect(a.query()).toMatchObject({
      maxSlices: 16384,
      maxHandles: 65536,
      maxInflightBytes: 16 * 1024 * 1024,
      maxInflightObjects: 4096,
    });
  });

  it("reports the bus option limits, defaulting the ones not given", async () => {
    const bus = await newBus({ limits: { maxSlices: 10, maxInflightObjects: 3 } });
    const a = bus.connect();
    expect(a.query()).toMatchObject({
      maxSlices: 10,
      maxHandles: 65536,
      maxInflightBytes: 16 * 1024 * 1024,
      maxInflightObjects: 3,
    });
  });

  it("reports the bus option limits for peers of every user", async () => {
    const bus = await newBus({ limits: { maxHandles: 33 } });
    expect(bus.connect({ user: 7 }).query().maxHandles).toBe(33);
  });

  it("returns a snapshot that does not change the peer when modified", async () => {
    const { peers: [a] } = await peers(1);
    const q = a.query();
    q.maxSlices = 1;
    expect(a.query().maxSlices).toBe(16384);
  });
});

describe("recv", () => {
  it("returns null when nothing is queued", async () => {
    const { peers: [a] } = await peers(1);
    expect(a.recv()).toBeNull();
  });

  it("returns data messages with their destination, offset, payload and no continue", async () => {
    const { peers: [a] } = await peers(1);
    a.send(4, enc("hello"));
    const msg = a.recv()!;
    expect(msg.type).toBe("data");
    expect(msg.destination).toBe(4);
    expect(msg.continue).toBe(false);
    expect(msg.offset % 8).toBe(0);
    expect(msg.payload).toBeInstanceOf(Uint8Array);
    expect(new TextDecoder().decode(msg.payload.slice())).toBe("hello");
    expect(msg.handles).toEqual([]);
    expect(msg.objects).toEqual([]);
    msg.release();
  });

  it("returns the messages of one sender in the order they were sent", async () => {
    const { peers: [a, b] } = await peers(2);
    const h = a.transfer(4, b);
    for (const t of ["1", "2", "3", "4"]) b.send(h, enc(t));
    expect(drainTexts(a)).toEqual(["1", "2", "3", "4"]);
  });

  it("removes each message from the queue", async () => {
    const { peers: [a] } = await peers(1);
    a.send(4, enc("once"));
    expect(takeOne(a).text).toBe("once");
    expect(a.recv()).toBeNull();
  });
});

/** Every call on a peer, for what a disconnected peer or a closed reference refuses. */
const EVERY_CALL: [string, (p: Peer, other: Peer) => unknown][] = [
  ["send", (p) => p.send(4, enc("x"))],
  ["send to nobody", (p) => p.send([])],
  ["recv", (p) => p.recv()],
  ["recv of the seed", (p) => p.recv({ seed: true })],
  ["transfer", (p, other) => p.transfer(4, other)],
  ["release", (p) => p.release(4)],
  ["destroy", (p) => p.destroy(4)],
  ["destroy of nothing", (p) => p.destroy([])],
  ["releaseSlice", (p) => p.releaseSlice(0)],
  ["reset", (p) => p.reset()],
  ["reset with flush", (p) => p.reset({ flush: true })],
  ["query", (p) => p.query()],
  ["disconnect", (p) => p.disconnect()],
  ["wait", (p) => p.wait(0)],
];

describe("disconnect", () => {
  it.each(EVERY_CALL)("makes a later %s fail with ESHUTDOWN", async (_, call) => {
    const { peers: [a, b] } = await peers(2);
    a.disconnect();
    expectCode(() => call(a, b), "ESHUTDOWN");
  });

  it("makes a transfer to the disconnected peer fail with ESHUTDOWN", async () => {
    const { peers: [a, b] } = await peers(2);
    b.disconnect();
    expectCode(() => a.transfer(4, b), "ESHUTDOWN");
  });

  it("keeps the messages it sent queued at their receivers", async () => {
    const { peers: [a, b] } = await peers(2);
    const toB = b.transfer(0x100, a);
    a.send(toB, enc("one"));
    a.send(toB, enc("two"));
    a.disconnect();
    // then the release of a's handle to b's node
    expect(drain(b).map((m) => [m.type, m.text])).toEqual([
      ["data", "one"],
      ["data", "two"],
      ["node-release", ""],
    ]);
  });

  it("notifies the holders of its nodes with node-destroy", async () => {
    const { peers: [a, b, c] } = await peers(3);
    const hb = a.transfer(4, b);
    const hc = a.transfer(8, c);
    a.disconnect();
    expectNotification(take(b), "node-destroy", hb);
    expectNotification(take(c), "node-destroy", hc);
  });

  it("orders the node-destroy after the messages it sent before disconnecting", async () => {
    const { peers: [a, b] } = await peers(2);
    const toB = b.transfer(0x100, a);
    const hb = a.transfer(4, b);
    a.send(toB, enc("last words"));
    a.disconnect();
    const [first, ...rest] = drain(b);
    expect([first.type, first.text]).toEqual(["data", "last words"]);
    // the node-destroy, and the node-release of a's handle to b's node
    expect(rest.map((m) => [m.type, m.destination]).sort()).toEqual([
      ["node-destroy", hb],
      ["node-release", 0x100],
    ]);
  });

  it("releases its handles, so owners get node-release", async () => {
    const { peers: [a, b] } = await peers(2);
    b.transfer(0x100, a);
    a.disconnect();
    expectNotification(take(b), "node-release", 0x100);
  });

  it("drops its queue, releasing the references carried by unreceived messages", async () => {
    const { peers: [a, b] } = await peers(2);
    const toA = a.transfer(4, b);
    b.send(toA, enc("unread"), { handles: [8] });
    a.disconnect();
    const all = drain(b);
    const release = all.find((m) => m.type === "node-release");
    expectNotification(release ?? null, "node-release", 8);
    const destroy = all.find((m) => m.type === "node-destroy");
    expectNotification(destroy ?? null, "node-destroy", toA);
    expect(all).toHaveLength(2);
  });

  it("makes sends to its nodes fail with EHOSTUNREACH", async () => {
    const { peers: [a, b] } = await peers(2);
    const h = a.transfer(4, b);
    a.disconnect();
    expectCode(() => b.send(h, enc("anyone?")), "EHOSTUNREACH");
    expect(b.send(h, enc("anyone?"), { continue: true }).errors).toEqual(["EHOSTUNREACH"]);
  });

  it("leaves the holders' handle IDs valid until they release them", async () => {
    const { peers: [a, b] } = await peers(2);
    const h = a.transfer(4, b);
    a.disconnect();
    b.release(h);
    expectCode(() => b.release(h), "ENXIO");
  });

  it("does not disturb other peers", async () => {
    const { peers: [a, b, c] } = await peers(3);
    const h = c.transfer(4, b);
    a.disconnect();
    b.send(h, enc("still here"));
    expect(takeOne(c).text).toBe("still here");
  });
});

describe("close", () => {
  it.each(EVERY_CALL)("makes a later %s on the closed reference fail with EBADF", async (_, call) => {
    const { peers: [a, b] } = await peers(2);
    a.close();
    expectCode(() => call(a, b), "EBADF");
  });

  it("disconnects the peer when its last reference is closed", async () => {
    const { peers: [a, b] } = await peers(2);
    const h = a.transfer(4, b);
    a.close();
    expectNotification(take(b), "node-destroy", h);
    expectCode(() => b.send(h), "EHOSTUNREACH");
  });

  it("makes a transfer to a closed reference fail, creating no node", async () => {
    const { peers: [a, b] } = await peers(2);
    b.close();
    expectCodeIn(() => a.transfer(4, b), ["EBADF", "ESHUTDOWN"]);
    expectCode(() => a.release(4), "ENXIO");
  });

  it("is what Symbol.dispose does", async () => {
    const { peers: [a, b] } = await peers(2);
    const h = a.transfer(4, b);
    a[Symbol.dispose]();
    expectCode(() => a.recv(), "EBADF");
    expectNotification(take(b), "node-destroy", h);
  });

  it("happens to every peer reference of the thread when the bus is closed", async () => {
    const { bus, peers: [a, b] } = await peers(2);
    bus.close();
    expectCode(() => a.recv(), "EBADF");
    expectCode(() => b.send([]), "EBADF");
  });
});
