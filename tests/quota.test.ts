// SPEC §6: quotas — charged to the receiver, per-peer and per-user limits,
// fair share between users, and what gives a charge back.

import { describe, expect, it } from "vitest";
import {
  Bus1Error,
  bytesOf,
  drain,
  drainTexts,
  enc,
  expectCode,
  expectEmpty,
  newBus,
  peers,
  take,
  takeOne,
} from "./helpers.js";
import type { Peer } from "./helpers.js";

/** Sends one small message at a time until the receiver's quota refuses; returns how many went through. */
function sendUntilRefused(from: Peer, to: number, max = 10_000): number {
  for (let n = 0; n < max; n++) {
    try {
      from.send(to, enc("flood"));
    } catch (e) {
      expect(e).toBeInstanceOf(Bus1Error);
      expect((e as Bus1Error).code).toBe("EDQUOT");
      return n;
    }
  }
  throw new Error(`no EDQUOT after ${max} messages`);
}

describe("charged to the receiver", () => {
  it("ignores the sender's own limits", async () => {
    const { peers: [a, b] } = await peers(2);
    const hb = b.transfer(4, a);
    a.reset({ limits: { maxSlices: 1, maxInflightBytes: 8 } });
    for (let i = 0; i < 5; i++) a.send(hb, bytesOf(64, i));
    expect(drain(b)).toHaveLength(5);
  });

  it("fails with EDQUOT once the receiver's maxSlices are in use", async () => {
    const { peers: [a, b] } = await peers(2);
    const hb = b.transfer(4, a);
    b.reset({ limits: { maxSlices: 2 } });
    a.send(hb, enc("1"));
    a.send(hb, enc("2"));
    expectCode(() => a.send(hb, enc("3")), "EDQUOT");
    expect(drainTexts(b)).toEqual(["1", "2"]);
  });

  it("charges one slice per message, even an empty one", async () => {
    const { peers: [a, b] } = await peers(2);
    const hb = b.transfer(4, a);
    b.reset({ limits: { maxSlices: 2 } });
    a.send(hb);
    a.send(hb);
    expectCode(() => a.send(hb), "EDQUOT");
  });

  it("charges one slice per delivered copy to a peer owning two destinations", async () => {
    const { peers: [a, b] } = await peers(2);
    const h1 = b.transfer(4, a);
    const h2 = b.transfer(8, a);
    b.reset({ limits: { maxSlices: 1 } });
    expectCode(() => a.send([h1, h2], enc("two copies")), "EDQUOT");
    expectEmpty(b);
  });

  it("fails with EDQUOT once the receiver's maxInflightBytes would be exceeded", async () => {
    const { peers: [a, b] } = await peers(2);
    const hb = b.transfer(4, a);
    b.reset({ limits: { maxInflightBytes: 64 } });
    a.send(hb, bytesOf(40, 1));
    expectCode(() => a.send(hb, bytesOf(40, 2)), "EDQUOT");
    a.send(hb, bytesOf(24, 3));
    expect(drain(b).map((m) => m.bytes.length)).toEqual([40, 24]);
  });

  it("charges the padding to 8 as in-flight bytes", async () => {
    const { peers: [a, b] } = await peers(2);
    const hb = b.transfer(4, a);
    b.reset({ limits: { maxInflightBytes: 64 } });
    a.send(hb, bytesOf(33, 1)); // 40 with padding
    expectCode(() => a.send(hb, bytesOf(25, 2)), "EDQUOT"); // 32 with padding
    a.send(hb, bytesOf(24, 3));
  });

  it("charges the handle array as in-flight bytes", async () => {
    const { peers: [a, b] } = await peers(2);
    const hb = b.transfer(4, a);
    b.reset({ limits: { maxInflightBytes: 64 } });
    a.send(hb, bytesOf(48, 1), { handles: [0x100, 0x200] }); // 48 + 16
    expectCode(() => a.send(hb, bytesOf(1, 2)), "EDQUOT");
  });

  it("fails with EDQUOT once the receiver's maxHandles would be exceeded", async () => {
    const { peers: [a, b] } = await peers(2);
    const hb = b.transfer(4, a);
    b.reset({ limits: { maxHandles: 3 } });
    a.send(hb, enc("two"), { handles: [0x100, 0x200] });
    expectCode(() => a.send(hb, enc("two more"), { handles: [0x300, 0x400] }), "EDQUOT");
  });

  it("changes nothing when a charge fails", async () => {
    const { peers: [a, b] } = await peers(2);
    const hb = b.transfer(4, a);
    b.reset({ limits: { maxSlices: 1 } });
    a.send(hb, enc("fits"));
    expectCode(() => a.send(hb, enc("refused"), { handles: [0x200], objects: [{}] }), "EDQUOT");
    expectCode(() => a.release(0x200), "ENXIO");
    expect(b.query().maxSlices).toBe(1);
    const all = drain(b);
    expect(all.map((m) => [m.text, m.handles, m.objects])).toEqual([["fits", [], []]]);
    expectEmpty(a);
  });
});

describe("giving charges back", () => {
  it("keeps a received slice charged until it is released", async () => {
    const { peers: [a, b] } = await peers(2);
    const hb = b.transfer(4, a);
    b.reset({ limits: { maxSlices: 1 } });
    a.send(hb, enc("1"));
    const held = b.recv()!;
    expectCode(() => a.send(hb, enc("2")), "EDQUOT");
    held.release();
    a.send(hb, enc("2"));
    expect(drainTexts(b)).toEqual(["2"]);
  });

  it("gives the bytes back when the slice is released", async () => {
    const { peers: [a, b] } = await peers(2);
    const hb = b.transfer(4, a);
    b.reset({ limits: { maxInflightBytes: 64 } });
    for (let round = 0; round < 10; round++) {
      a.send(hb, bytesOf(64, round));
      expectCode(() => a.send(hb, bytesOf(8, round)), "EDQUOT");
      expect(take(b)!.bytes[0]).toBe(round);
    }
  });

  it("gives back the charge of a handle that coalesces at receive", async () => {
    const { peers: [a, b] } = await peers(2);
    const hb = b.transfer(4, a);
    b.reset({ limits: { maxHandles: 4 } });
    for (let i = 0; i < 10; i++) {
      a.send(hb, enc("same node"), { handles: [0x100] });
      const msg = takeOne(b);
      expect(msg.handles).toHaveLength(1);
    }
  });

  it("gives a handle's charge back when the handle is released", async () => {
    const { peers: [a, b] } = await peers(2);
    const hb = b.transfer(4, a);
    b.reset({ limits: { maxHandles: 4 } });
    const received: number[] = [];
    let refused = false;
    for (let node = 0x100; node < 0x2000 && !refused; node += 4) {
      try {
        a.send(hb, undefined, { handles: [node] });
      } catch (e) {
        expect((e as Bus1Error).code).toBe("EDQUOT");
        refused = true;
        break;
      }
      received.push(takeOne(b).handles[0]);
    }
    expect(refused).toBe(true);
    expect(received.length).toBeGreaterThan(0);
    expect(received.length).toBeLessThanOrEqual(4);
    b.release(received[0]);
    a.send(hb, undefined, { handles: [0x4000] });
    expect(takeOne(b).handles).toHaveLength(1);
  });

  it("gives back the charges of a flushed queue", async () => {
    const { peers: [a, b] } = await peers(2);
    b.reset({ limits: { maxSlices: 2 } });
    const old = b.transfer(4, a);
    a.send(old, enc("1"));
    a.send(old, enc("2"));
    b.reset({ flush: true });
    const hb = b.transfer(8, a);
    a.send(hb, enc("3"));
    a.send(hb, enc("4"));
    expect(drainTexts(b)).toEqual(["3", "4"]);
  });

  it("gives back the charge of a message dropped because its receiver released the node", async () => {
    const { peers: [a, b] } = await peers(2);
    const h4 = b.transfer(4, a);
    const h8 = b.transfer(8, a);
    b.reset({ limits: { maxSlices: 1 } });
    a.send(h4, enc("dropped"));
    b.destroy(4, { releaseHandles: true });
    expectEmpty(b);
    a.send(h8, enc("fits again"));
    expect(drainTexts(b)).toEqual(["fits again"]);
  });
});

describe("per-user limits", () => {
  it("applies the bus option limits to each user", async () => {
    const bus = await newBus({ limits: { maxSlices: 4 } });
    const a = bus.connect();
    const b = bus.connect();
    const hb = b.transfer(4, a);
    for (let i = 0; i < 4; i++) a.send(hb, enc(String(i)));
    expectCode(() => a.send(hb, enc("5th")), "EDQUOT");
  });

  it("shares a user's limits among all its peers", async () => {
    const bus = await newBus({ limits: { maxSlices: 4 } });
    const a = bus.connect();
    const b = bus.connect();
    const c = bus.connect();
    const hb = b.transfer(4, a);
    const hc = c.transfer(4, a);
    a.send(hb, enc("b1"));
    a.send(hb, enc("b2"));
    a.send(hc, enc("c1"));
    a.send(hc, enc("c2"));
    expectCode(() => a.send(hc, enc("c3")), "EDQUOT");
    expectCode(() => a.send(hb, enc("b3")), "EDQUOT");
  });

  it("keeps the limits of each user separate", async () => {
    const bus = await newBus({ limits: { maxSlices: 2 } });
    const a = bus.connect({ user: 5 });
    const b = bus.connect({ user: 5 });
    const d = bus.connect({ user: 6 });
    const hb = b.transfer(4, a);
    a.send(hb, enc("1"));
    a.send(hb, enc("2"));
    expectCode(() => a.send(hb, enc("3")), "EDQUOT");
    d.send(4, enc("own user"));
    d.send(4, enc("own user"));
    expect(drainTexts(d)).toEqual(["own user", "own user"]);
  });

  it("lets reset cap one peer below its user's limits", async () => {
    const bus = await newBus({ limits: { maxSlices: 10 } });
    const a = bus.connect();
    const b = bus.connect();
    const c = bus.connect();
    const hb = b.transfer(4, a);
    const hc = c.transfer(4, a);
    b.reset({ limits: { maxSlices: 2 } });
    a.send(hb, enc("1"));
    a.send(hb, enc("2"));
    expectCode(() => a.send(hb, enc("3")), "EDQUOT");
    for (let i = 0; i < 5; i++) a.send(hc, enc(String(i)));
    expect(drain(c)).toHaveLength(5);
  });

  it("fails with EDQUOT when the user's handle limit would be exceeded", async () => {
    // user 0 holds a's handle to b's node, maybe b's own handle, and what b receives
    const bus = await newBus({ limits: { maxHandles: 4 } });
    const a = bus.connect();
    const b = bus.connect();
    const hb = b.transfer(4, a);
    a.send(hb, undefined, { handles: [0x100] });
    expectCode(() => a.send(hb, undefined, { handles: [0x200, 0x300, 0x400] }), "EDQUOT");
    expectCode(() => a.release(0x200), "ENXIO");
  });
});

describe("fair share between users", () => {
  // Users: S = 1 floods, R = 2 receives, T = 3 is a bystander. R may hold 100 slices.
  async function users() {
    const bus = await newBus({ limits: { maxSlices: 100 } });
    const r = bus.connect({ user: 2 });
    const s = bus.connect({ user: 1 });
    const t = bus.connect({ user: 3 });
    const r2 = bus.connect({ user: 2 });
    return { bus, r, s, t, r2, fromS: r.transfer(4, s), fromT: r.transfer(4, t), fromR2: r.transfer(4, r2) };
  }

  it("stops a flooding user well before the receiving user's limit", async () => {
    const { s, fromS } = await users();
    const sent = sendUntilRefused(s, fromS);
    // after the charge R's free slices must stay >= 2 x S's share: about 33 of 100
    expect(sent).toBeGreaterThanOrEqual(20);
    expect(sent).toBeLessThanOrEqual(50);
  });

  it("lets another user still send after the flooding user was stopped", async () => {
    const { s, t, r, fromS, fromT } = await users();
    const sent = sendUntilRefused(s, fromS);
    for (let i = 0; i < 5; i++) t.send(fromT, enc(`t${i}`));
    const texts = drainTexts(r);
    expect(texts).toHaveLength(sent + 5);
    expect(texts.slice(-5)).toEqual(["t0", "t1", "t2", "t3", "t4"]);
  });

  it("does not apply fair share to peers of the receiving user itself", async () => {
    const { s, r2, fromS, fromR2 } = await users();
    const sent = sendUntilRefused(s, fromS);
    for (let i = 0; i < 100 - sent; i++) r2.send(fromR2, enc("own user"));
    expectCode(() => r2.send(fromR2, enc("over the limit")), "EDQUOT");
  });

  it("does not apply fair share within one user", async () => {
    const bus = await newBus({ limits: { maxSlices: 100 } });
    const a = bus.connect({ user: 9 });
    const b = bus.connect({ user: 9 });
    const hb = b.transfer(4, a);
    expect(sendUntilRefused(a, hb)).toBe(100);
  });

  it("gives back the sender's share when the receiver receives its messages", async () => {
    const { s, r, fromS } = await users();
    const sent = sendUntilRefused(s, fromS);
    const held = [];
    for (let m = r.recv(); m !== null; m = r.recv()) held.push(m);
    expect(held).toHaveLength(sent);
    // R still holds the slices, but S no longer has a share of R
    expect(sendUntilRefused(s, fromS)).toBeGreaterThan(0);
  });

  it("gives everything back when the receiver releases the slices", async () => {
    const { s, r, fromS } = await users();
    const first = sendUntilRefused(s, fromS);
    drain(r);
    expect(sendUntilRefused(s, fromS)).toBe(first);
  });

  it("reports a fair-share refusal per destination with continue", async () => {
    const { bus, s, r, fromS } = await users();
    const other = bus.connect({ user: 4 });
    const toOther = other.transfer(4, s);
    sendUntilRefused(s, fromS);
    expect(s.send([fromS, toOther], enc("x"), { continue: true }).errors).toEqual(["EDQUOT", null]);
    expect(drainTexts(other)).toEqual(["x"]);
    expect(drain(r).every((m) => m.text === "flood")).toBe(true);
  });
});
