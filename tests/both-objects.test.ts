// SPEC §9 (host objects) on both kinds of peer (issue 9). A local peer in the
// sending thread gets each value itself (same identity, functions included);
// a served peer is another realm behind a port: it gets structured clones,
// ports by transfer, and a value that cannot cross (a function, shared
// memory) as a Bus1Error EOPNOTSUPP in its place (API.md "Sandboxed peers",
// PLUGINS.md). Tests branch on `kind.served` exactly there.

import { afterEach, describe, expect, it } from "vitest";
import {
  Bus1Error,
  HOST_MOVES_OBJECTS,
  nextMessage,
  enc,
  expectCode,
  expectEmpty,
  makeBus,
  newBus,
  take as takeLocal,
  takeOne as takeOneLocal,
} from "./helpers.js";
import type { BusKind, Peer } from "./helpers.js";
import { ENDPOINT, drain, expectNothing, kinds, rejects, takeOne, type PeerKind } from "./peer-kinds.js";

const ports: MessagePort[] = [];
afterEach(() => {
  for (const port of ports.splice(0)) port.close();
});

function channel() {
  const { port1, port2 } = new MessageChannel();
  ports.push(port1, port2);
  return { port1, port2 };
}

/** p owns node 0x200 (app holds hp = 11); p holds ha (11) to app's node 0x100. */
async function pair(kind: PeerKind, busOptions?: Record<string, unknown>, setup?: (s: Peer, app: Peer) => void,
                    busKind: BusKind = "private") {
  const bus = await makeBus(busKind, busOptions);
  const s = bus.connect();
  const app = bus.connect();
  const ha = app.transfer(0x100, s);
  const hp = s.transfer(0x200, app);
  setup?.(s, app);
  const p = await kind.wrap(bus, s);
  return { bus, p, app, ha, hp };
}

/** `got` is `sent` itself (local peer) or an equal clone of it (served peer). */
function expectSameValue(kind: PeerKind, got: unknown, sent: unknown) {
  expect(got).toEqual(sent);
  if (kind.served) expect(got).not.toBe(sent);
  else expect(got).toBe(sent);
}

describe.each(kinds)("receiving objects ($name peer)", (kind) => {
  describe.each(["private", "shared"] as BusKind[])("%s memory", (busKind) => {
    it("receives plain values: themselves on a local peer, clones on a served one", async () => {
      const { p, app, hp } = await pair(kind, undefined, undefined, busKind);
      const plain = { name: "plain", list: [1, "two", { three: 3 }], when: new Date(0), map: new Map([[1, 2]]) };
      const buffer = new ArrayBuffer(16);
      app.send(hp, enc("with objects"), { objects: [plain, buffer, 42, "text", null] });
      const msg = await takeOne(p);
      expect(msg.objects).toHaveLength(5);
      expectSameValue(kind, msg.objects[0], plain);
      expectSameValue(kind, msg.objects[1], buffer);
      expect(msg.objects.slice(2)).toEqual([42, "text", null]);
      expect(buffer.byteLength).toBe(16); // the sender's buffer is never taken from it
    });

    it("receives a function itself on a local peer, and as Bus1Error EOPNOTSUPP on a served one", async () => {
      const { p, app, hp } = await pair(kind, undefined, undefined, busKind);
      const fn = () => 42;
      app.send(hp, enc("fn"), { objects: [fn, { after: true }] });
      const msg = await takeOne(p);
      if (kind.served) {
        // a function cannot be cloned into another realm: the message arrives, with the error in its place
        expect(msg.objects[0]).toBeInstanceOf(Bus1Error);
        expect((msg.objects[0] as Bus1Error).code).toBe("EOPNOTSUPP");
        expect((msg.objects[0] as Bus1Error).message).toMatch(/^recv: objects\[0\] \(a function\)/);
      } else {
        expect(msg.objects[0]).toBe(fn);
      }
      expect(msg.objects[1]).toEqual({ after: true });
      expect(msg.text).toBe("fn");
    });

    it("receives shared memory itself on a local peer, and as Bus1Error EOPNOTSUPP on a served one", async () => {
      const { p, app, hp } = await pair(kind, undefined, undefined, busKind);
      const sab = new SharedArrayBuffer(8);
      app.send(hp, undefined, { objects: [sab, new Uint8Array(sab)] });
      const msg = await takeOne(p);
      if (kind.served) {
        // the bus's memory, or any shared memory, never reaches a served peer (PLUGINS.md)
        for (const o of msg.objects) expect([o instanceof Bus1Error, (o as Bus1Error).code]).toEqual([true, "EOPNOTSUPP"]);
      } else {
        expect(msg.objects[0]).toBe(sab);
      }
    });

    it("receives a MessagePort that works", async () => {
      const { p, app, hp } = await pair(kind, undefined, undefined, busKind);
      const { port1, port2 } = channel();
      app.send(hp, undefined, { objects: [port1] });
      const port = (await takeOne(p)).objects[0] as MessagePort;
      if (kind.served && !HOST_MOVES_OBJECTS) {
        // no Courier: the port stays in the serving thread, and the plugin gets EOPNOTSUPP in its place
        expect(port).toBeInstanceOf(Bus1Error);
        expect((port as unknown as Bus1Error).code).toBe("EOPNOTSUPP");
        port1.postMessage("still here");
        expect(await nextMessage(port2)).toBe("still here");
        return;
      }
      ports.push(port);
      if (!kind.served) expect(port).toBe(port1);
      const got = nextMessage(port2);
      port.postMessage("through the port");
      expect(await got).toBe("through the port");
    });

    it("receives objects in the order they were attached", async () => {
      const { p, app, hp } = await pair(kind, undefined, undefined, busKind);
      const objects = Array.from({ length: 10 }, (_, i) => ({ i }));
      app.send(hp, undefined, { objects });
      const got = (await takeOne(p)).objects as { i: number }[];
      expect(got.map((o) => o.i)).toEqual([0, 1, 2, 3, 4, 5, 6, 7, 8, 9]);
      got.forEach((o, i) => expectSameValue(kind, o, objects[i]));
    });

    it("receives objects together with the payload and handles of their message", async () => {
      const { p, app, hp } = await pair(kind, undefined, undefined, busKind);
      const obj = { with: "handles" };
      app.send(hp, enc("all three"), { handles: [0x300], objects: [obj] });
      const msg = await takeOne(p);
      expect([msg.text, msg.handles]).toEqual(["all three", [19]]);
      expectSameValue(kind, msg.objects[0], obj);
    });

    it("receives the objects of a multicast like every other receiver", async () => {
      const { bus, p, app, hp } = await pair(kind, undefined, undefined, busKind);
      const c = bus.connect();
      const hc = c.transfer(4, app);
      const obj = { shared: true };
      app.send([hc, hp], undefined, { objects: [obj] });
      expect(takeOneLocal(c).objects[0]).toBe(obj);
      expectSameValue(kind, (await takeOne(p)).objects[0], obj);
    });

    it("receives objects only with their own message", async () => {
      const { p, app, hp } = await pair(kind, undefined, undefined, busKind);
      app.send(hp, enc("first"), { objects: [{ one: 1 }] });
      app.send(hp, enc("second"));
      expect((await drain(p)).map((m) => [m.text, m.objects])).toEqual([["first", [{ one: 1 }]], ["second", []]]);
    });

    it("receives 256 objects", async () => {
      const { p, app, hp } = await pair(kind, undefined, undefined, busKind);
      const objects = Array.from({ length: 256 }, (_, i) => ({ i }));
      app.send(hp, undefined, { objects });
      const got = (await takeOne(p)).objects;
      expect(got).toHaveLength(256);
      expectSameValue(kind, got[255], objects[255]);
    });

    it("receives no objects with a notification", async () => {
      const { p, app, ha } = await pair(kind, undefined, undefined, busKind);
      app.destroy(0x100);
      const msg = await takeOne(p);
      expect([msg.type, msg.destination, msg.objects]).toEqual(["node-destroy", ha, []]);
    });
  });
});

describe.each(kinds)("sending objects ($name peer)", (kind) => {
  describe.each(["private", "shared"] as BusKind[])("%s memory", (busKind) => {
    it("sends plain values: the receiver in this thread gets them themselves from a local peer, clones from a served one", async () => {
      const { p, app, ha } = await pair(kind, undefined, undefined, busKind);
      const plain = { name: "plain", nested: { list: [1, 2] } };
      await p.send(ha, enc("objects"), { objects: [plain, 7, "s"] });
      const msg = takeOneLocal(app);
      expectSameValue(kind, msg.objects[0], plain);
      expect(msg.objects.slice(1)).toEqual([7, "s"]);
    });

    it("sends a MessagePort that works", async () => {
      const { p, app, ha } = await pair(kind, undefined, undefined, busKind);
      const { port1, port2 } = channel();
      await p.send(ha, enc("here is a port"), { objects: [port1] });
      const port = takeOneLocal(app).objects[0] as MessagePort;
      ports.push(port);
      const got = nextMessage(port2);
      port.postMessage("hello from the app");
      expect(await got).toBe("hello from the app");
    });

    it("sends a function: itself from a local peer; a served peer refuses it with EOPNOTSUPP", async () => {
      const { p, app, ha } = await pair(kind, undefined, undefined, busKind);
      const fn = () => 42;
      if (kind.served) {
        // the plugin's values are cloned to the serving side: a function cannot be
        await rejects(() => p.send(ha, undefined, { objects: [fn] }), "EOPNOTSUPP",
          "send: objects[0] (a function) cannot be cloned to the serving side: cannot be transferred as an object (EOPNOTSUPP)");
        expectEmpty(app);
      } else {
        await p.send(ha, undefined, { objects: [fn] });
        expect(takeOneLocal(app).objects[0]).toBe(fn);
      }
    });

    it("sends a value that holds a function: a served peer refuses that call only, and goes on", async () => {
      const { p, app, ha } = await pair(kind, undefined, undefined, busKind);
      const holder = { callback: () => 42 };
      if (kind.served) {
        await rejects(() => p.send(ha, undefined, { objects: [holder] }), "EOPNOTSUPP", /^send: objects\[0\]/);
        expectEmpty(app);
      } else {
        await p.send(ha, undefined, { objects: [holder] });
        expect(takeOneLocal(app).objects[0]).toBe(holder);
      }
      await p.send(ha, enc("still here"));
      expect(takeOneLocal(app).text).toBe("still here");
    });

    it("sends 256 objects", async () => {
      const { p, app, ha } = await pair(kind, undefined, undefined, busKind);
      await p.send(ha, undefined, { objects: Array.from({ length: 256 }, (_, i) => i) });
      expect(takeOneLocal(app).objects).toEqual(Array.from({ length: 256 }, (_, i) => i));
    });

    it("rejects 257 objects with EMSGSIZE", async () => {
      const { p, app, ha } = await pair(kind, undefined, undefined, busKind);
      await rejects(() => p.send(ha, undefined, { objects: Array.from({ length: 257 }, () => ({})) }), "EMSGSIZE",
        "send: objects: 257 entries, more than 256: message too large (EMSGSIZE)");
      expectEmpty(app);
    });

    it("gives its seed's objects on every read", async () => {
      const { p } = await pair(kind, undefined, undefined, busKind);
      await p.send([], undefined, { seed: true, objects: [{ seeded: 1 }, "two"] });
      expect((await p.recv({ seed: true }))!.objects).toEqual([{ seeded: 1 }, "two"]);
      expect((await p.recv({ seed: true }))!.objects).toEqual([{ seeded: 1 }, "two"]);
    });
  });
});

describe.each(kinds)("object quota ($name peer)", (kind) => {
  it("refuses objects past the maxInflightObjects it set itself", async () => {
    const { p, app, hp } = await pair(kind);
    await p.reset({ limits: { maxInflightObjects: 2 } });
    app.send(hp, undefined, { objects: [{}, {}] });
    expectCode(() => app.send(hp, undefined, { objects: [{}] }), "EDQUOT");
    app.send(hp, enc("no objects still fit"));
    expect((await drain(p)).map((m) => m.objects.length)).toEqual([2, 0]);
  });

  it("counts the objects of each delivered copy", async () => {
    const { p, app } = await pair(kind, undefined, (s, app) => {
      s.transfer(4, app);
      s.transfer(8, app);
    });
    await p.reset({ limits: { maxInflightObjects: 1 } });
    expectCode(() => app.send([19, 27], undefined, { objects: [{}] }), "EDQUOT");
    await expectNothing(p);
  });

  it("is refused by a receiver past the bus option maxInflightObjects", async () => {
    const bus = await newBus({ limits: { maxInflightObjects: 3 } });
    const s = bus.connect();
    const b = bus.connect();
    const hb = b.transfer(4, s);
    const p = await kind.wrap(bus, s);
    await p.send(hb, undefined, { objects: [{}, {}, {}] });
    await rejects(() => p.send(hb, undefined, { objects: [{}] }), "EDQUOT", "send: destinations[0] (11): quota exceeded (EDQUOT)");
    expect(takeOneLocal(b).objects).toHaveLength(3);
  });

  it("gives the objects' charge back when the slice is released", async () => {
    const { p, app, hp } = await pair(kind);
    await p.reset({ limits: { maxInflightObjects: 1 } });
    for (let i = 0; i < 5; i++) {
      app.send(hp, undefined, { objects: [{ i }] });
      expectCode(() => app.send(hp, undefined, { objects: [{}] }), "EDQUOT");
      expect((await takeOne(p)).objects).toEqual([{ i }]);
    }
  });

  it("charges the objects' slots in the slice and their records in the bus memory as bytes", async () => {
    const { p, app, hp } = await pair(kind);
    // on a single-thread bus a record is its 24-byte header (no serialized form)
    await p.reset({ limits: { maxInflightBytes: 112 } });
    // 56 bytes of payload + 2 slots padded to 8 + 2 records of 24 = 112: fits
    app.send(hp, new Uint8Array(56), { objects: [{}, {}] });
    expect(await p.stats()).toMatchObject(kind.served ? { bytes: 0, objects: 0 } : { bytes: 112, objects: 2 });
    const m = (await p.recv())!;
    expect(m.objects).toHaveLength(2);
    // a served peer's slice (and its objects' records) went when the message was pushed (PLUGINS.md)
    expect(await p.stats()).toMatchObject(kind.served ? { bytes: 0, liveSlices: 0 } : { bytes: 112, liveSlices: 1 });
    m.release();
    expect((await p.stats()).bytes).toBe(0);
    // 56 + 3 slots padded to 16 + 3 records = 144: never fits
    expectCode(() => app.send(hp, new Uint8Array(56), { objects: [{}, {}, {}] }), "EMSGSIZE");
  });
});

describe.each(kinds)("dropping objects ($name peer)", (kind) => {
  it("has the objects it sent dropped when the receiver flushes", async () => {
    // user 0 may have one object in flight: the one app flushes must be given back for c's to fit
    const bus = await newBus({ limits: { maxInflightObjects: 1 } });
    const s = bus.connect();
    const app = bus.connect();
    const c = bus.connect();
    const ha = app.transfer(4, s);
    const hc = c.transfer(4, s);
    const p = await kind.wrap(bus, s);
    await p.send(ha, undefined, { objects: [{ dropped: true }] });
    await rejects(() => p.send(hc, undefined, { objects: [{ refused: true }] }), "EDQUOT");
    app.reset({ flush: true });
    expectEmpty(app);
    await p.send(hc, undefined, { objects: [{ kept: true }] });
    expect(takeOneLocal(c).objects).toEqual([{ kept: true }]);
  });

  it("has the objects of a message that is never delivered dropped", async () => {
    const { p, app, ha } = await pair(kind, undefined, (s, app) => { app.transfer(8, s); });
    app.reset({ limits: { maxInflightObjects: 1 } });
    await p.send(ha, undefined, { objects: [{ dropped: true }] });
    app.destroy(0x100, { releaseHandles: true });
    expectEmpty(app);
    await p.send(19, undefined, { objects: [{ delivered: true }] });
    expect(takeOneLocal(app).objects).toEqual([{ delivered: true }]);
  });

  it("has the objects of a message whose receiver disconnects dropped", async () => {
    const bus = await newBus({ limits: { maxInflightObjects: 1 } });
    const s = bus.connect();
    const b = bus.connect();
    const c = bus.connect();
    const hb = b.transfer(4, s);
    const hc = c.transfer(4, s);
    const p = await kind.wrap(bus, s);
    await p.send(hb, undefined, { objects: [{}] });
    b.disconnect();
    // user 0's only object was in b's queue
    await p.send(hc, undefined, { objects: [{}] });
    expect(takeLocal(c)!.objects).toHaveLength(1);
  });

  it("drops the objects of messages queued for it when it disconnects", async () => {
    const { bus, p, app, hp } = await pair(kind, { limits: { maxInflightObjects: 1 } });
    const c = bus.connect();
    const hc = c.transfer(4, app);
    app.send(hp, undefined, { objects: [{ never: "read" }] });
    await p.disconnect();
    app.send(hc, undefined, { objects: [{ fits: true }] });
    expect(takeOneLocal(c).objects).toEqual([{ fits: true }]);
  });
});

describe.each(kinds)("what cannot travel ($name peer)", (kind) => {
  const endpoint = "send: objects[0] (an object) is a bus endpoint: cannot be transferred as an object (EOPNOTSUPP)";

  it("rejects the peer itself with EOPNOTSUPP", async () => {
    const { p, app, ha } = await pair(kind);
    await rejects(() => p.send(ha, undefined, { objects: [p[ENDPOINT]] }), "EOPNOTSUPP", endpoint);
    expectEmpty(app);
  });

  it("rejects a Bus with EOPNOTSUPP", async () => {
    const { p, app, ha } = await pair(kind);
    const stranger = await newBus();
    await rejects(() => p.send(ha, undefined, { objects: [stranger] }), "EOPNOTSUPP", endpoint);
    expectEmpty(app);
  });

  it("rejects a Peer with EOPNOTSUPP", async () => {
    const { p, app, ha } = await pair(kind);
    const stranger = (await newBus()).connect();
    await rejects(() => p.send(ha, undefined, { objects: [stranger] }), "EOPNOTSUPP", endpoint);
    expectEmpty(app);
  });

  it("rejects a bus.handle with EOPNOTSUPP, and goes on", async () => {
    const { p, app, ha } = await pair(kind);
    const stranger = await newBus();
    await rejects(() => p.send(ha, undefined, { objects: [stranger.handle] }), "EOPNOTSUPP", endpoint);
    expectEmpty(app);
    await p.send(ha, enc("still here"));
    expect(takeOneLocal(app).text).toBe("still here");
  });

  it("rejects a peer.ref with EOPNOTSUPP", async () => {
    const { p, app, ha } = await pair(kind);
    const stranger = (await newBus()).connect();
    await rejects(() => p.send(ha, undefined, { objects: [stranger.ref] }), "EOPNOTSUPP", endpoint);
    expectEmpty(app);
  });

  it("fails the whole call even with continue, creating nothing", async () => {
    const { p, app, ha } = await pair(kind);
    await rejects(() => p.send([ha], enc("x"), { continue: true, handles: [0x300], objects: [{}, p[ENDPOINT]] }), "EOPNOTSUPP",
      "send: objects[1] (an object) is a bus endpoint: cannot be transferred as an object (EOPNOTSUPP)");
    expectEmpty(app);
    await rejects(() => p.release(0x300), "ENXIO");
  });

  it("rejects them in a seed too", async () => {
    const { p } = await pair(kind);
    await rejects(() => p.send([], enc("seed"), { seed: true, objects: [p[ENDPOINT]] }), "EOPNOTSUPP", endpoint);
    expect(await p.recv({ seed: true })).toBeNull();
  });
});
