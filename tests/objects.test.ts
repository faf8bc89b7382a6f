// SPEC §7: host objects travel with messages, the file-descriptor analogue.

import { describe, expect, it } from "vitest";
import { drain, enc, expectCode, expectEmpty, newBus, peers, take, takeOne } from "./helpers.js";

/** a sends; b owns node 4, a holds hb to it. */
async function pair() {
  const { bus, peers: [a, b] } = await peers(2);
  return { bus, a, b, hb: b.transfer(4, a) };
}

describe("delivery", () => {
  it("delivers objects with the same identity", async () => {
    const { a, b, hb } = await pair();
    const plain = { name: "plain" };
    const fn = () => 42;
    const buffer = new ArrayBuffer(16);
    const { port1, port2 } = new MessageChannel();
    try {
      a.send(hb, enc("with objects"), { objects: [plain, fn, buffer, port1] });
      const msg = takeOne(b);
      expect(msg.objects).toHaveLength(4);
      expect(msg.objects[0]).toBe(plain);
      expect(msg.objects[1]).toBe(fn);
      expect(msg.objects[2]).toBe(buffer);
      expect(msg.objects[3]).toBe(port1);
      expect(buffer.byteLength).toBe(16);
    } finally {
      port1.close();
      port2.close();
    }
  });

  it("delivers objects in the order they were attached", async () => {
    const { a, b, hb } = await pair();
    const objects = Array.from({ length: 10 }, (_, i) => ({ i }));
    a.send(hb, undefined, { objects });
    const got = takeOne(b).objects as { i: number }[];
    expect(got.map((o) => o.i)).toEqual([0, 1, 2, 3, 4, 5, 6, 7, 8, 9]);
    got.forEach((o, i) => expect(o).toBe(objects[i]));
  });

  it("delivers objects together with the payload and handles of their message", async () => {
    const { a, b, hb } = await pair();
    const obj = {};
    a.send(hb, enc("all three"), { handles: [0x100], objects: [obj] });
    const msg = takeOne(b);
    expect(msg.text).toBe("all three");
    expect(msg.handles).toHaveLength(1);
    expect(msg.objects).toEqual([obj]);
    expect(msg.objects[0]).toBe(obj);
  });

  it("delivers the objects to every receiver of a multicast", async () => {
    const { peers: [a, b, c] } = await peers(3);
    const hb = b.transfer(4, a);
    const hc = c.transfer(4, a);
    const obj = { shared: true };
    a.send([hb, hc], undefined, { objects: [obj] });
    expect(takeOne(b).objects[0]).toBe(obj);
    expect(takeOne(c).objects[0]).toBe(obj);
  });

  it("delivers objects only with their own message", async () => {
    const { a, b, hb } = await pair();
    const obj = {};
    a.send(hb, enc("first"), { objects: [obj] });
    a.send(hb, enc("second"));
    const [first, second] = drain(b);
    expect(first.objects).toEqual([obj]);
    expect(second.objects).toEqual([]);
  });

  it("accepts 256 objects", async () => {
    const { a, b, hb } = await pair();
    const objects = Array.from({ length: 256 }, () => ({}));
    a.send(hb, undefined, { objects });
    const got = takeOne(b).objects;
    expect(got).toHaveLength(256);
    expect(got[255]).toBe(objects[255]);
  });

  it("rejects 257 objects with EMSGSIZE", async () => {
    const { a, b, hb } = await pair();
    expectCode(() => a.send(hb, undefined, { objects: Array.from({ length: 257 }, () => ({})) }), "EMSGSIZE");
    expectEmpty(b);
  });

  it("delivers no objects with a notification", async () => {
    const { a, b, hb } = await pair();
    b.destroy(4);
    const msg = takeOne(a);
    expect(msg.type).toBe("node-destroy");
    expect(msg.destination).toBe(hb);
    expect(msg.objects).toEqual([]);
  });
});

describe("quota", () => {
  it("fails with EDQUOT once the receiver's maxInflightObjects would be exceeded", async () => {
    const { a, b, hb } = await pair();
    b.reset({ limits: { maxInflightObjects: 2 } });
    a.send(hb, undefined, { objects: [{}, {}] });
    expectCode(() => a.send(hb, undefined, { objects: [{}] }), "EDQUOT");
    a.send(hb, enc("no objects still fit"));
    expect(drain(b).map((m) => m.objects.length)).toEqual([2, 0]);
  });

  it("counts the objects of each delivered copy", async () => {
    const { peers: [a, b] } = await peers(2);
    const h1 = b.transfer(4, a);
    const h2 = b.transfer(8, a);
    b.reset({ limits: { maxInflightObjects: 1 } });
    expectCode(() => a.send([h1, h2], undefined, { objects: [{}] }), "EDQUOT");
    expectEmpty(b);
  });

  it("applies the bus option maxInflightObjects per user", async () => {
    const bus = await newBus({ limits: { maxInflightObjects: 3 } });
    const a = bus.connect();
    const b = bus.connect();
    const hb = b.transfer(4, a);
    a.send(hb, undefined, { objects: [{}, {}, {}] });
    expectCode(() => a.send(hb, undefined, { objects: [{}] }), "EDQUOT");
  });

  it("gives the objects' charge back when the slice is released", async () => {
    const { a, b, hb } = await pair();
    b.reset({ limits: { maxInflightObjects: 1 } });
    for (let i = 0; i < 5; i++) {
      const obj = { i };
      a.send(hb, undefined, { objects: [obj] });
      expectCode(() => a.send(hb, undefined, { objects: [{}] }), "EDQUOT");
      expect(takeOne(b).objects[0]).toBe(obj);
    }
  });

  it("charges the objects' slots in the slice and their records in the bus memory as bytes", async () => {
    const { a, b, hb } = await pair();
    // on a single-thread bus a record is its 24-byte header (no serialized form)
    b.reset({ limits: { maxInflightBytes: 112 } });
    // 56 bytes of payload + 2 slots padded to 8 + 2 records of 24 = 112: fits
    a.send(hb, new Uint8Array(56), { objects: [{}, {}] });
    const m = b.recv()!;
    expect(b.stats().bytes).toBe(112);
    expect(m.objects).toHaveLength(2);
    m.release();
    expect(b.stats().bytes).toBe(0);
    // 56 + 3 slots padded to 16 + 3 records = 144: never fits
    expectCode(() => a.send(hb, new Uint8Array(56), { objects: [{}, {}, {}] }), "EMSGSIZE");
  });
});

describe("dropping", () => {
  it("drops the objects of queued messages when the receiver flushes", async () => {
    const { a, b } = await pair();
    b.reset({ limits: { maxInflightObjects: 1 } });
    const old = b.transfer(8, a);
    a.send(old, undefined, { objects: [{ dropped: true }] });
    b.reset({ flush: true });
    expectEmpty(b);
    const hb = b.transfer(12, a);
    const obj = { kept: true };
    a.send(hb, undefined, { objects: [obj] });
    expect(takeOne(b).objects).toEqual([obj]);
  });

  it("drops the objects of a message that is never delivered", async () => {
    const { peers: [a, b] } = await peers(2);
    const h4 = b.transfer(4, a);
    const h8 = b.transfer(8, a);
    b.reset({ limits: { maxInflightObjects: 1 } });
    a.send(h4, undefined, { objects: [{ dropped: true }] });
    b.destroy(4, { releaseHandles: true });
    expectEmpty(b);
    const obj = {};
    a.send(h8, undefined, { objects: [obj] });
    expect(takeOne(b).objects[0]).toBe(obj);
  });

  it("drops the objects of a message whose receiver disconnects", async () => {
    const bus = await newBus({ limits: { maxInflightObjects: 1 } });
    const a = bus.connect();
    const b = bus.connect();
    const c = bus.connect();
    const hb = b.transfer(4, a);
    a.send(hb, undefined, { objects: [{}] });
    b.disconnect();
    // user 0's only object was in b's queue
    const hc = c.transfer(4, a);
    a.send(hc, undefined, { objects: [{}] });
    expect(take(c)!.objects).toHaveLength(1);
  });
});

describe("what cannot travel", () => {
  it("rejects the Bus itself with EOPNOTSUPP", async () => {
    const { bus, a, b, hb } = await pair();
    expectCode(() => a.send(hb, undefined, { objects: [bus] }), "EOPNOTSUPP");
    expectEmpty(b);
  });

  it("rejects a Peer with EOPNOTSUPP", async () => {
    const { a, b, hb } = await pair();
    expectCode(() => a.send(hb, undefined, { objects: [b] }), "EOPNOTSUPP");
    expectEmpty(b);
  });

  it("rejects bus.handle with EOPNOTSUPP", async () => {
    const { bus, a, b, hb } = await pair();
    expectCode(() => a.send(hb, undefined, { objects: [bus.handle] }), "EOPNOTSUPP");
    expectEmpty(b);
  });

  it("rejects peer.ref with EOPNOTSUPP", async () => {
    const { a, b, hb } = await pair();
    expectCode(() => a.send(hb, undefined, { objects: [a.ref] }), "EOPNOTSUPP");
    expectEmpty(b);
  });

  it("rejects a Peer of another bus with EOPNOTSUPP", async () => {
    const { a, b, hb } = await pair();
    const stranger = (await newBus()).connect();
    expectCode(() => a.send(hb, undefined, { objects: [stranger] }), "EOPNOTSUPP");
    expectEmpty(b);
  });

  it("fails the whole call even with continue, creating nothing", async () => {
    const { peers: [a, b, c] } = await peers(3);
    const hb = b.transfer(4, a);
    const hc = c.transfer(4, a);
    expectCode(
      () => a.send([hb, hc], enc("x"), { continue: true, handles: [0x200], objects: [{}, b] }),
      "EOPNOTSUPP",
    );
    expectEmpty(b);
    expectEmpty(c);
    expectCode(() => a.release(0x200), "ENXIO");
  });

  it("rejects them in a seed too", async () => {
    const { bus, peers: [a] } = await peers(1);
    expectCode(() => a.send([], enc("seed"), { seed: true, objects: [bus] }), "EOPNOTSUPP");
    expect(a.recv({ seed: true })).toBeNull();
  });
});
