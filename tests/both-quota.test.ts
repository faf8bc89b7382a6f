// SPEC §8 (quotas) on both kinds of peer (issue 9): charged to the receiver,
// per-peer and per-user limits, the fair share between users, and what
// gives a charge back. The peer under test `p` is the sender in some tests
// and the receiver in others; the other parties are local peers.
//
// A served peer as receiver: messages sent to it in one synchronous run of
// local sends are all charged to it before its serving side can take any
// (it pushes them when this thread next waits); that is when the limits bite.

import { describe, expect, it } from "vitest";
import {
  Bus1Error,
  bytesOf,
  drain as drainLocal,
  drainTexts as drainTextsLocal,
  enc,
  expectCode,
  expectEmpty,
  newBus,
  takeOne as takeOneLocal,
} from "./helpers.js";
import type { Peer } from "./helpers.js";
import { drain, drainTexts, expectNothing, kinds, rejects, takeOne, type PeerKind, type TestPeer } from "./peer-kinds.js";

/** Sends from the peer under test until the receiver's quota refuses; returns how many went through. */
async function sendUntilRefused(from: TestPeer, to: number, max = 1000): Promise<number> {
  for (let n = 0; n < max; n++) {
    try {
      await from.send(to, enc("flood"));
    } catch (e) {
      expect(e).toBeInstanceOf(Bus1Error);
      expect((e as Bus1Error).message).toBe(`send: destinations[0] (${to}): quota exceeded (EDQUOT)`);
      return n;
    }
  }
  throw new Error(`no EDQUOT after ${max} messages`);
}

/** The same from a local peer, in one synchronous run. */
function sendUntilRefusedLocal(from: Peer, to: number, max = 1000): number {
  for (let n = 0; n < max; n++) {
    try {
      from.send(to, enc("flood"));
    } catch (e) {
      expect((e as Bus1Error).code).toBe("EDQUOT");
      return n;
    }
  }
  throw new Error(`no EDQUOT after ${max} messages`);
}

/** p sends to b's node 4 through hb (11); `setup` runs on p's Peer first. */
async function toB(kind: PeerKind, busOptions?: Record<string, unknown>, setup?: (s: Peer, b: Peer) => void) {
  const bus = await newBus(busOptions);
  const s = bus.connect();
  const b = bus.connect();
  const hb = b.transfer(4, s);
  setup?.(s, b);
  const p = await kind.wrap(bus, s);
  return { bus, p, b, hb };
}

/** app sends to p's node 0x200 through hp (11); `setup` runs on p's Peer first. */
async function toP(kind: PeerKind, busOptions?: Record<string, unknown>, setup?: (s: Peer, app: Peer) => void) {
  const bus = await newBus(busOptions);
  const s = bus.connect();
  const app = bus.connect();
  const hp = s.transfer(0x200, app);
  setup?.(s, app);
  const p = await kind.wrap(bus, s);
  return { bus, p, app, hp };
}

describe.each(kinds)("charged to the receiver ($name peer)", (kind) => {
  it("ignores the sender's own limits", async () => {
    const { p, b, hb } = await toB(kind);
    await p.reset({ limits: { maxSlices: 1, maxInflightBytes: 8 } });
    for (let i = 0; i < 5; i++) await p.send(hb, bytesOf(64, i));
    expect(drainLocal(b)).toHaveLength(5);
  });

  it("fails its sends with EDQUOT once the receiver's maxSlices are in use", async () => {
    const { p, b, hb } = await toB(kind);
    b.reset({ limits: { maxSlices: 2 } });
    await p.send(hb, enc("1"));
    await p.send(hb, enc("2"));
    await rejects(() => p.send(hb, enc("3")), "EDQUOT", "send: destinations[0] (11): quota exceeded (EDQUOT)");
    expect(drainTextsLocal(b)).toEqual(["1", "2"]);
  });

  it("refuses what would exceed the maxSlices it set itself", async () => {
    const { p, app, hp } = await toP(kind);
    await p.reset({ limits: { maxSlices: 2 } });
    app.send(hp, enc("1"));
    app.send(hp, enc("2"));
    expectCode(() => app.send(hp, enc("3")), "EDQUOT");
    expect(await drainTexts(p)).toEqual(["1", "2"]);
  });

  it("charges one slice per message, even an empty one", async () => {
    const { p, b, hb } = await toB(kind);
    b.reset({ limits: { maxSlices: 2 } });
    await p.send(hb);
    await p.send(hb);
    await rejects(() => p.send(hb), "EDQUOT");
  });

  it("charges it one slice per delivered copy when it owns two destinations", async () => {
    const { p, app } = await toP(kind, undefined, (s, app) => {
      s.transfer(4, app);
      s.transfer(8, app);
    });
    await p.reset({ limits: { maxSlices: 1 } });
    expectCode(() => app.send([19, 27], enc("two copies")), "EDQUOT");
    await expectNothing(p);
  });

  it("refuses what would exceed the maxInflightBytes it set itself", async () => {
    const { p, app, hp } = await toP(kind);
    await p.reset({ limits: { maxInflightBytes: 64 } });
    app.send(hp, bytesOf(40, 1));
    expectCode(() => app.send(hp, bytesOf(40, 2)), "EDQUOT");
    app.send(hp, bytesOf(24, 3));
    expect((await drain(p)).map((m) => m.bytes.length)).toEqual([40, 24]);
  });

  it("charges the padding to 8 as in-flight bytes", async () => {
    const { p, b, hb } = await toB(kind);
    b.reset({ limits: { maxInflightBytes: 64 } });
    await p.send(hb, bytesOf(33, 1)); // 40 with padding
    await rejects(() => p.send(hb, bytesOf(25, 2)), "EDQUOT"); // 32 with padding
    await p.send(hb, bytesOf(24, 3));
  });

  it("charges the handle array as in-flight bytes", async () => {
    const { p, b, hb } = await toB(kind);
    b.reset({ limits: { maxInflightBytes: 64 } });
    await p.send(hb, bytesOf(48, 1), { handles: [0x100, 0x200] }); // 48 + 16
    await rejects(() => p.send(hb, bytesOf(1, 2)), "EDQUOT");
  });

  it("refuses handles past the maxHandles it set itself", async () => {
    // it holds the owner handle of node 0x200: two more fit under 3, not four
    const { p, app, hp } = await toP(kind);
    await p.reset({ limits: { maxHandles: 3 } });
    app.send(hp, enc("two"), { handles: [0x100, 0x300] });
    expectCode(() => app.send(hp, enc("two more"), { handles: [0x400, 0x500] }), "EDQUOT");
    expect((await takeOne(p)).handles).toEqual([11, 19]);
    await expectNothing(p);
  });

  it("changes nothing when a charge fails", async () => {
    const { p, b, hb } = await toB(kind);
    b.reset({ limits: { maxSlices: 1 } });
    await p.send(hb, enc("fits"));
    await rejects(() => p.send(hb, enc("refused"), { handles: [0x200], objects: [{}] }), "EDQUOT");
    await rejects(() => p.release(0x200), "ENXIO");
    expect(b.query().maxSlices).toBe(1);
    expect(drainLocal(b).map((m) => [m.text, m.handles, m.objects])).toEqual([["fits", [], []]]);
    await expectNothing(p);
  });
});

describe.each(kinds)("giving charges back ($name peer)", (kind) => {
  it("gives a slice back when the receiver releases it", async () => {
    const { p, b, hb } = await toB(kind);
    b.reset({ limits: { maxSlices: 1 } });
    await p.send(hb, enc("1"));
    const held = b.recv()!;
    await rejects(() => p.send(hb, enc("2")), "EDQUOT");
    held.release();
    await p.send(hb, enc("2"));
    expect(drainTextsLocal(b)).toEqual(["2"]);
  });

  it("keeps a received slice charged until it is released (a served peer's, until it is pushed)", async () => {
    const { p, app, hp } = await toP(kind);
    await p.reset({ limits: { maxSlices: 1 } });
    app.send(hp, enc("1"));
    const held = (await p.recv())!;
    if (kind.served) {
      // the serving side released the slice when it pushed the message (PLUGINS.md): room for the next at once
      app.send(hp, enc("2"));
      expect((await takeOne(p)).text).toBe("2");
    } else {
      expectCode(() => app.send(hp, enc("2")), "EDQUOT");
      held.release();
      app.send(hp, enc("2"));
      expect((await takeOne(p)).text).toBe("2");
    }
    await expectNothing(p);
  });

  it("gives the bytes back when the slice is released", async () => {
    const { p, app, hp } = await toP(kind);
    await p.reset({ limits: { maxInflightBytes: 64 } });
    for (let round = 0; round < 10; round++) {
      app.send(hp, bytesOf(64, round));
      expectCode(() => app.send(hp, bytesOf(8, round)), "EDQUOT");
      expect((await takeOne(p)).bytes[0]).toBe(round);
    }
  });

  it("gives back the charge of a handle that coalesces at receive", async () => {
    const { p, app, hp } = await toP(kind, undefined, (s, app) => { app.transfer(0x100, s); });
    await p.reset({ limits: { maxHandles: 3 } });
    for (let i = 0; i < 10; i++) {
      app.send(hp, enc("same node"), { handles: [0x100] });
      expect((await takeOne(p)).handles).toEqual([11]);
    }
    expect((await p.stats()).handles).toBe(2);
  });

  it("gives a handle's charge back when the handle is released", async () => {
    const { p, app, hp } = await toP(kind);
    await p.reset({ limits: { maxHandles: 3 } });
    const received: number[] = [];
    let node = 0x100;
    for (;; node += 4) {
      try {
        app.send(hp, undefined, { handles: [node] });
      } catch (e) {
        expect((e as Bus1Error).code).toBe("EDQUOT");
        break;
      }
      received.push((await takeOne(p)).handles[0]);
      expect(received.length).toBeLessThan(10);
    }
    expect(received).toEqual([11, 19]);
    await p.release(received[0]);
    app.send(hp, undefined, { handles: [0x4000] });
    expect((await takeOne(p)).handles).toEqual([27]);
  });

  it("holds no charge for messages dropped by a flush", async () => {
    const { p, app, hp } = await toP(kind);
    await p.reset({ limits: { maxSlices: 2 } });
    app.send(hp, enc("1"));
    app.send(hp, enc("2"));
    await p.reset({ flush: true });
    expect(await p.stats()).toMatchObject({ slices: 0, bytes: 0, liveSlices: 0, handles: 0 });
    // a served peer's serving side had already taken both (pushed them); a local peer's flush dropped them
    expect(await drainTexts(p)).toEqual(kind.served ? ["1", "2"] : []);
  });

  it("gives back the charge of what it sent once the receiver released the node", async () => {
    const { p, b, hb } = await toB(kind, undefined, (s, b) => { b.transfer(8, s); });
    b.reset({ limits: { maxSlices: 1 } });
    await p.send(hb, enc("dropped"));
    b.destroy(4, { releaseHandles: true });
    expectEmpty(b);
    await p.send(19, enc("fits again"));
    expect(drainTextsLocal(b)).toEqual(["fits again"]);
  });
});

describe.each(kinds)("per-user limits ($name peer)", (kind) => {
  it("applies the bus option limits to each user", async () => {
    const { p, hb } = await toB(kind, { limits: { maxSlices: 4 } });
    for (let i = 0; i < 4; i++) await p.send(hb, enc(String(i)));
    await rejects(() => p.send(hb, enc("5th")), "EDQUOT");
  });

  it("shares a user's limits among all its peers", async () => {
    const { bus, p, hb } = await toB(kind, { limits: { maxSlices: 4 } });
    const c = bus.connect();
    const d = bus.connect();
    const hd = d.transfer(4, c);
    await p.send(hb, enc("b1"));
    await p.send(hb, enc("b2"));
    // another peer of user 0 receives two more: the user's four are used
    c.send(hd, enc("d1"));
    c.send(hd, enc("d2"));
    await rejects(() => p.send(hb, enc("b3")), "EDQUOT");
    expectCode(() => c.send(hd, enc("d3")), "EDQUOT");
  });

  it("counts what it holds against its user's limits", async () => {
    const { bus, p, app, hp } = await toP(kind, { limits: { maxSlices: 4 } });
    const other = bus.connect();
    const ho = other.transfer(4, app);
    app.send(hp, enc("p1"));
    app.send(hp, enc("p2"));
    app.send(hp, enc("p3"));
    app.send(ho, enc("o1"));
    expectCode(() => app.send(ho, enc("o2")), "EDQUOT");
    expect(await drainTexts(p)).toEqual(["p1", "p2", "p3"]);
  });

  it("keeps the limits of each user separate", async () => {
    const bus = await newBus({ limits: { maxSlices: 2 } });
    const a = bus.connect({ user: 5 });
    const b = bus.connect({ user: 5 });
    const hb = b.transfer(4, a);
    const p = await kind.wrap(bus, bus.connect({ user: 6 }));
    a.send(hb, enc("1"));
    a.send(hb, enc("2"));
    expectCode(() => a.send(hb, enc("3")), "EDQUOT");
    await p.send(4, enc("own user"));
    await p.send(4, enc("own user"));
    expect(await drainTexts(p)).toEqual(["own user", "own user"]);
  });

  it("lets reset cap it below its user's limits", async () => {
    const { bus, p, app, hp } = await toP(kind, { limits: { maxSlices: 10 } });
    const c = bus.connect();
    const hc = c.transfer(4, app);
    await p.reset({ limits: { maxSlices: 2 } });
    app.send(hp, enc("1"));
    app.send(hp, enc("2"));
    expectCode(() => app.send(hp, enc("3")), "EDQUOT");
    for (let i = 0; i < 5; i++) app.send(hc, enc(String(i)));
    expect(drainLocal(c)).toHaveLength(5);
    expect(await drainTexts(p)).toEqual(["1", "2"]);
  });

  it("fails with EDQUOT when the user's handle limit would be exceeded, creating nothing", async () => {
    const { p, hb } = await toB(kind, { limits: { maxHandles: 4 } });
    await p.send(hb, undefined, { handles: [0x100] });
    await rejects(() => p.send(hb, undefined, { handles: [0x200, 0x300, 0x400] }), "EDQUOT");
    await rejects(() => p.release(0x200), "ENXIO");
  });
});

describe.each(kinds)("fair share between users ($name peer)", (kind) => {
  // Users: S = 1 floods, R = 2 receives, T = 3 is a bystander. R may hold 100 slices; S is the peer under test.
  async function flooder() {
    const bus = await newBus({ limits: { maxSlices: 100 } });
    const r = bus.connect({ user: 2 });
    const s = bus.connect({ user: 1 });
    const t = bus.connect({ user: 3 });
    const r2 = bus.connect({ user: 2 });
    const other = bus.connect({ user: 4 });
    const fromS = r.transfer(4, s);
    const toOther = other.transfer(4, s);
    const w = { bus, r, t, r2, other, fromS, toOther, fromT: r.transfer(4, t), fromR2: r.transfer(4, r2) };
    return { ...w, p: await kind.wrap(bus, s) };
  }

  it("stops a flooding user at its fair share of what the receiving user has free", async () => {
    const { p, fromS } = await flooder();
    // after the charge R's free slices must stay >= 2 x S's share: 100 - k >= 2k up to k = 33
    expect(await sendUntilRefused(p, fromS)).toBe(33);
  });

  it("lets another user still send after the flooding user was stopped", async () => {
    const { p, t, r, fromS, fromT } = await flooder();
    expect(await sendUntilRefused(p, fromS)).toBe(33);
    for (let i = 0; i < 5; i++) t.send(fromT, enc(`t${i}`));
    const texts = drainTextsLocal(r);
    expect(texts).toHaveLength(38);
    expect(texts.slice(-5)).toEqual(["t0", "t1", "t2", "t3", "t4"]);
  });

  it("does not apply fair share to peers of the receiving user itself", async () => {
    const { p, r2, fromS, fromR2 } = await flooder();
    const sent = await sendUntilRefused(p, fromS);
    for (let i = 0; i < 100 - sent; i++) r2.send(fromR2, enc("own user"));
    expectCode(() => r2.send(fromR2, enc("over the limit")), "EDQUOT");
  });

  it("does not apply fair share within one user", async () => {
    const bus = await newBus({ limits: { maxSlices: 100 } });
    const s = bus.connect({ user: 9 });
    const b = bus.connect({ user: 9 });
    const hb = b.transfer(4, s);
    const p = await kind.wrap(bus, s);
    expect(await sendUntilRefused(p, hb)).toBe(100);
  });

  it("gives back the sender's share when the receiver receives its messages", async () => {
    const { p, r, fromS } = await flooder();
    const sent = await sendUntilRefused(p, fromS);
    const held = [];
    for (let m = r.recv(); m !== null; m = r.recv()) held.push(m);
    expect(held).toHaveLength(sent);
    // R still holds the slices, but S no longer has a share of R: (100 - 33 - k) >= 2k up to k = 22
    expect(await sendUntilRefused(p, fromS)).toBe(22);
  });

  it("gives everything back when the receiver releases the slices", async () => {
    const { p, r, fromS } = await flooder();
    const first = await sendUntilRefused(p, fromS);
    drainLocal(r);
    expect(await sendUntilRefused(p, fromS)).toBe(first);
  });

  it("reports a fair-share refusal per destination with continue", async () => {
    const { p, r, other, fromS, toOther } = await flooder();
    await sendUntilRefused(p, fromS);
    expect(await p.send([fromS, toOther], enc("x"), { continue: true })).toEqual({ errors: ["EDQUOT", null] });
    expect(drainTextsLocal(other)).toEqual(["x"]);
    expect(drainLocal(r).every((m) => m.text === "flood")).toBe(true);
  });

  it("protects the app from a user flooding it: the peer under test as the receiving user", async () => {
    const bus = await newBus({ limits: { maxSlices: 100 } });
    const s = bus.connect({ user: 2 });
    const flood = bus.connect({ user: 1 });
    const bystander = bus.connect({ user: 3 });
    const fromFlood = s.transfer(4, flood);
    const fromBystander = s.transfer(4, bystander);
    const p = await kind.wrap(bus, s);
    expect(sendUntilRefusedLocal(flood, fromFlood)).toBe(33);
    bystander.send(fromBystander, enc("still gets through"));
    const texts = await drainTexts(p);
    expect(texts).toHaveLength(34);
    expect(texts[33]).toBe("still gets through");
  });
});

/** A flooded receiver's peer sees the refusal per destination with continue (local sender, p among the receivers). */
describe.each(kinds)("fair share with continue ($name peer)", (kind) => {
  it("delivers to the peer under test while another destination refuses", async () => {
    const bus = await newBus({ limits: { maxSlices: 100 } });
    const s = bus.connect({ user: 4 });
    const r = bus.connect({ user: 2 });
    const flood = bus.connect({ user: 1 });
    const fromFlood = r.transfer(4, flood);
    const toP = s.transfer(4, flood);
    const p = await kind.wrap(bus, s);
    expect(sendUntilRefusedLocal(flood, fromFlood)).toBe(33);
    expect(flood.send([fromFlood, toP], enc("x"), { continue: true }).errors).toEqual(["EDQUOT", null]);
    expect(await drainTexts(p)).toEqual(["x"]);
    expect(takeOneLocal(r).text).toBe("flood");
  });
});
