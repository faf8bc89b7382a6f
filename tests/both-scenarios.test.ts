// The bus1 kernel self-test scenarios and the global order (SPEC §7) on both
// kinds of peer (issue 9), on private and on shared memory. In each scenario
// one party is the peer under test (`p`); the others are local peers of the
// same bus. Where the kernel test has a peer transfer handles to others, the
// peer under test passes them attached to messages instead (a served peer
// transfers only to itself).

import { describe, expect, it } from "vitest";
import {
  HANDLE_INVALID,
  bytesOf,
  dec,
  drain as drainLocal,
  drainTexts as drainTextsLocal,
  enc,
  expectCode,
  expectEmpty,
  expectNotification,
  expectRemoteId,
  makeBus,
  newBus,
  take as takeLocal,
  takeOne as takeOneLocal,
} from "./helpers.js";
import type { BusKind, Peer } from "./helpers.js";
import {
  drain, drainTexts, expectNothing, expectNote, kinds, local, rejects, take, takeOne,
  type PeerKind, type TestPeer,
} from "./peer-kinds.js";

/** `p` holds exactly `n` references of a handle to another peer's node. */
async function expectRemoteReferences(p: TestPeer, handle: number, n: number) {
  await rejects(() => p.destroy(handle), "EREMOTE");
  for (let i = 0; i < n; i++) await p.release(handle);
  await rejects(() => p.release(handle), "ENXIO");
}

/** Local `peer` holds exactly `n` references of a handle to another peer's node. */
function expectRemoteReferencesLocal(peer: Peer, handle: number, n: number) {
  expectCode(() => peer.destroy(handle), "EREMOTE");
  for (let i = 0; i < n; i++) peer.release(handle);
  expectCode(() => peer.release(handle), "ENXIO");
}

/** Local `peer` owns live `node` and holds exactly `n` references of its handle; destroys it. */
function expectOwnReferencesLocal(peer: Peer, node: number, n: number) {
  peer.destroy(node);
  expectCode(() => peer.destroy(node), "ESTALE");
  for (let i = 0; i < n; i++) peer.release(node);
  expectCode(() => peer.release(node), "ENXIO");
}

describe.each(kinds)("kernel self-test scenarios ($name peer)", (kind) => {
  describe.each(["private", "shared"] as BusKind[])("%s memory", (busKind) => {
    async function one() {
      const bus = await makeBus(busKind);
      return { bus, p: await kind.wrap(bus, bus.connect()) };
    }

    describe("api", () => {
      it("connects, resets with no changes, disconnects, then refuses with ESHUTDOWN", async () => {
        const { p } = await one();
        const before = await p.query();
        await p.reset({ limits: {} });
        expect(await p.query()).toEqual(before);
        await p.disconnect();
        await rejects(() => p.disconnect(), "ESHUTDOWN");
        await rejects(() => p.reset(), "ESHUTDOWN");
      });

      it("notifies release twice over for a self-transferred node", async () => {
        const { p } = await one();
        for (let round = 0; round < 2; round++) {
          expect(await p.transfer(0x100)).toBe(0x100);
          await expectNothing(p);
          await p.release(0x100);
          const msg = await take(p);
          expectNote(msg, "node-release", 0x100);
          expect(msg!.continue).toBe(false);
          await expectNothing(p);
        }
      });

      it("notifies destruction to owner and holder", async () => {
        const bus = await makeBus(busKind);
        const s = bus.connect();
        const holder = bus.connect();
        const h = s.transfer(0x100, holder);
        const p = await kind.wrap(bus, s);
        await expectNothing(p);
        expectEmpty(holder);
        await p.destroy(0x100);
        const own = await take(p);
        expectNote(own, "node-destroy", 0x100);
        expect(own!.continue).toBe(false);
        const held = takeLocal(holder);
        expectNotification(held, "node-destroy", h);
        expect(held!.continue).toBe(false);
        await expectNothing(p);
        expectEmpty(holder);
      });

      it("sends and receives an empty unicast", async () => {
        const { p } = await one();
        await p.send([0x100]);
        const msg = await takeOne(p);
        expect([msg.type, msg.continue, msg.destination, msg.bytes.length]).toEqual(["data", false, 0x100, 0]);
        await expectNothing(p);
      });

      it("sends a multicast to two of its nodes: two messages, the first flagged continue", async () => {
        const { p } = await one();
        const data = new Uint8Array(new BigUint64Array(Array.from({ length: 13 }, (_, i) => BigInt(i))).buffer);
        await p.send([0x100, 0x200], data);
        const [m1, m2] = await drain(p);
        expect([m1.type, m1.continue, m2.continue]).toEqual(["data", true, false]);
        expect(new Set([m1.destination, m2.destination])).toEqual(new Set([0x100, 0x200]));
        for (const m of [m1, m2]) expect(Array.from(m.bytes)).toEqual(Array.from(data));
        await expectNothing(p);
      });
    });

    describe("xfer", () => {
      it("transfers existing and new handles through a multicast", async () => {
        const bus = await makeBus(busKind);
        const s = bus.connect();
        const c2 = bus.connect();
        const c3 = bus.connect();
        const handle2 = s.transfer(0x100, c2); // p's node2 = 0x100
        const handle3 = s.transfer(0x200, c3); // p's node3 = 0x200
        const c1 = await kind.wrap(bus, s);

        // c2 creates node20 by sending it to c1; c3 likewise node30
        c2.send(handle2, undefined, { handles: [0x100] });
        const handle20 = (await takeOne(c1)).handles[0];
        c3.send(handle3, undefined, { handles: [0x100] });
        const handle30 = (await takeOne(c1)).handles[0];
        expect([handle20, handle30]).toEqual([11, 19]);

        // everything known so far, plus two nodes created on the fly
        await c1.send([handle20, handle30], undefined, { handles: [handle20, handle30, 0x300, 0x100, 0x200, 0x400] });

        const at2 = takeOneLocal(c2);
        expect(at2.handles).toHaveLength(6);
        expect([at2.handles[0], at2.handles[3]]).toEqual([0x100, handle2]);
        for (const i of [1, 2, 4, 5]) expectRemoteId(at2.handles[i]);
        expect(new Set(at2.handles).size).toBe(6);

        const at3 = takeOneLocal(c3);
        expect([at3.handles[1], at3.handles[4]]).toEqual([0x100, handle3]);
        for (const i of [0, 2, 3, 5]) expectRemoteId(at3.handles[i]);
        expect(new Set(at3.handles).size).toBe(6);

        await expectNothing(c1);
        expectEmpty(c2);
        expectEmpty(c3);

        // c1 owns node2 and node3 once each
        await c1.destroy([0x100, 0x200]);
        await rejects(() => c1.destroy([0x100, 0x200]), "ESTALE");
        const ownNotes = await drain(c1);
        expect(ownNotes.map((m) => [m.type, m.continue])).toEqual([["node-destroy", true], ["node-destroy", false]]);
        expect(new Set(ownNotes.map((m) => m.destination))).toEqual(new Set([0x100, 0x200]));
        expect(new Set(drainLocal(c2).map((m) => m.destination))).toEqual(new Set([handle2, at2.handles[4]]));
        expect(new Set(drainLocal(c3).map((m) => m.destination))).toEqual(new Set([at3.handles[3], handle3]));
        await c1.release(0x100);
        await rejects(() => c1.release(0x100), "ENXIO");
        await c1.release(0x200);
        await rejects(() => c1.release(0x200), "ENXIO");

        // c1 holds one reference each of handle20 and handle30
        await expectRemoteReferences(c1, handle20, 1);
        await expectRemoteReferences(c1, handle30, 1);

        // c2 holds handle2 twice (transfer + message) and node20 pinned + once from the message
        expectRemoteReferencesLocal(c2, handle2, 2);
        expectOwnReferencesLocal(c2, 0x100, 2);
        expectRemoteReferencesLocal(c3, handle3, 2);
        expectOwnReferencesLocal(c3, 0x100, 2);
      });

      it("notifies release after the holder releases, then destruction", async () => {
        const bus = await makeBus(busKind);
        const s = bus.connect();
        const c2 = bus.connect();
        const h = s.transfer(0x100, c2);
        const c1 = await kind.wrap(bus, s);
        c2.release(h);
        expectCode(() => c2.release(h), "ENXIO");
        await rejects(() => c1.release(0x100), "EBUSY");
        expectNote(await take(c1), "node-release", 0x100);
        await c1.destroy(0x100);
        expectNote(await take(c1), "node-destroy", 0x100);
        await expectNothing(c1);
        expectEmpty(c2);
      });
    });

    describe("peer", () => {
      it("sends, receives, releases slices and refuses a doubled destination", async () => {
        const { p } = await one();
        expect(await p.recv()).toBeNull();
        await p.send(0x100, bytesOf(24, 9));
        const msg = (await p.recv())!;
        expect(msg.payload.length).toBe(24);
        // a served peer's offsets are aliases and its slices were released as they were pushed (remote.ts)
        if (!kind.served) await rejects(() => p.releaseSlice(msg.offset + 8), "ENXIO");
        await p.releaseSlice(msg.offset);
        if (!kind.served) await rejects(() => p.releaseSlice(msg.offset), "ENXIO");
        expect(await p.recv()).toBeNull();
        await p.send(0x100, bytesOf(24, 1));
        await p.send(0x100, bytesOf(24, 2));
        await rejects(() => p.send([0x100, 0x100], bytesOf(24, 3)), "ENOTUNIQ");
        expect((await drain(p)).map((m) => m.bytes[0])).toEqual([1, 2]);
        expect(await p.recv()).toBeNull();
      });
    });

    describe("io", () => {
      it("multicasts 1 KiB to 1..64 receivers repeatedly without leaking slices", async () => {
        const bus = await makeBus(busKind);
        const s = bus.connect();
        const receivers: Peer[] = [];
        const handles: number[] = [];
        for (let i = 0; i < 64; i++) {
          const r = bus.connect();
          r.reset({ limits: { maxSlices: 2 } });
          handles.push(r.transfer(0x100, s));
          receivers.push(r);
        }
        const sender = await kind.wrap(bus, s);
        const payload = bytesOf(1024, 0x5a);
        for (const n of [0, 1, 2, 4, 8, 16, 32, 64]) {
          for (let iteration = 0; iteration < 8; iteration++) {
            expect((await sender.send(handles.slice(0, n), payload)).errors).toEqual(new Array(n).fill(null));
            for (let i = 0; i < n; i++) {
              const msg = receivers[i].recv()!;
              expect([msg.type, msg.payload.length]).toEqual(["data", 1024]);
              receivers[i].releaseSlice(msg.offset);
            }
          }
        }
        for (const r of receivers) expectEmpty(r);
      });

      it("receives 1 KiB from 64 senders repeatedly within a small slice quota", async () => {
        const bus = await makeBus(busKind);
        const s = bus.connect();
        s.reset({ limits: { maxSlices: 64 } });
        const senders: Peer[] = [];
        const handles: number[] = [];
        for (let i = 0; i < 64; i++) {
          const from = bus.connect();
          handles.push(s.transfer(0x100, from));
          senders.push(from);
        }
        const receiver = await kind.wrap(bus, s);
        for (let round = 0; round < 4; round++) {
          senders.forEach((from, i) => from.send(handles[i], bytesOf(1024, i)));
          const got = await drain(receiver);
          expect(got.map((m) => m.bytes[1023])).toEqual(senders.map((_, i) => i));
        }
        expect(await receiver.stats()).toMatchObject({ slices: 0, liveSlices: 0, bytes: 0 });
      });
    });

    describe("three peers passing a handle", () => {
      /** A can send to B's node 0x100, B to C's node 0x100; all three local peers, not yet wrapped. */
      async function threePeers() {
        const bus = await makeBus(busKind);
        const a = bus.connect();
        const b = bus.connect();
        const c = bus.connect();
        return { bus, a, b, c, aToB: b.transfer(0x100, a), bToC: c.transfer(0x100, b) };
      }

      it("lets C reach A's node through B (the peer under test), and tells B and C when A destroys it", async () => {
        const w = await threePeers();
        const { a, c, aToB, bToC } = w;
        const b = await kind.wrap(w.bus, w.b);
        a.send(aToB, enc("here is my node"), { handles: [4] });
        const bHandle = (await takeOne(b)).handles[0];
        expectRemoteId(bHandle);
        await b.send(bToC, enc("from A, via B"), { handles: [bHandle] });
        const cHandle = takeOneLocal(c).handles[0];
        expectRemoteId(cHandle);
        c.send(cHandle, enc("hello A, from C"));
        const atA = takeOneLocal(a);
        expect([atA.destination, atA.text]).toEqual([4, "hello A, from C"]);
        a.destroy(4);
        expectNotification(takeLocal(a), "node-destroy", 4);
        expectNote(await take(b), "node-destroy", bHandle);
        expectNotification(takeLocal(c), "node-destroy", cHandle);
        expectCode(() => c.send(cHandle, enc("too late")), "EHOSTUNREACH");
        await rejects(() => b.send(bHandle, enc("too late")), "EHOSTUNREACH");
        expectEmpty(a);
      });

      it("tells C (the peer under test) about the destruction after the message that carried the handle", async () => {
        const w = await threePeers();
        const { a, aToB, bToC } = w;
        const b = await local.wrap(w.bus, w.b);
        const c = await kind.wrap(w.bus, w.c);
        a.send(aToB, undefined, { handles: [4] });
        const bHandle = (await takeOne(b)).handles[0];
        await b.send(bToC, enc("carrier"), { handles: [bHandle] });
        await b.release(bHandle);
        a.destroy(4);
        await expectNothing(b);
        const carrier = await takeOne(c);
        expect(carrier.text).toBe("carrier");
        const cHandle = carrier.handles[0];
        expectRemoteId(cHandle);
        expectNote(await take(c), "node-destroy", cHandle);
        await expectNothing(c);
      });
    });

    describe("hive", () => {
      it("connects 100 children with 20 sibling handles each, passed by the parent, and tears them all down", async () => {
        const N = 100;
        const SIBLINGS = 20;
        const bus = await makeBus(busKind);
        const s = bus.connect();
        const children: Peer[] = [];
        const childHandles: number[] = [];
        for (let i = 0; i < N; i++) {
          const child = bus.connect();
          children.push(child);
          childHandles.push(child.transfer(0x100, s));
        }
        expect(new Set(childHandles).size).toBe(N);
        const parent = await kind.wrap(bus, s);

        // the parent hands every child handles to its next SIBLINGS siblings, in one message each
        for (let i = 0; i < N; i++) {
          const mine = Array.from({ length: SIBLINGS }, (_, j) => childHandles[(i + j + 1) % N]);
          await parent.send(childHandles[i], enc("your siblings"), { handles: mine });
        }
        const siblings = children.map((child) => {
          const msg = takeOneLocal(child);
          msg.handles.forEach(expectRemoteId);
          expect(new Set(msg.handles).size).toBe(SIBLINGS);
          return msg.handles;
        });

        // every child greets its next sibling
        for (let i = 0; i < N; i++) children[i].send(siblings[i][0], enc(String(i)));
        for (let i = 0; i < N; i++) {
          expect(drainLocal(children[i]).map((m) => [m.destination, m.text])).toEqual([[0x100, String((i + N - 1) % N)]]);
        }

        for (const child of children) child.disconnect();
        const notes = await drain(parent);
        expect(notes).toHaveLength(N);
        for (const m of notes) expectNote(m, "node-destroy", m.destination);
        expect(new Set(notes.map((m) => m.destination))).toEqual(new Set(childHandles));
        for (const h of childHandles.slice(0, 10)) await rejects(() => parent.send(h), "EHOSTUNREACH");
        for (const h of childHandles) await parent.release(h);
        expect((await parent.stats()).handles).toBe(0);
        await parent.disconnect();
        await rejects(() => parent.recv(), "ESHUTDOWN");
      });
    });

    describe("global order", () => {
      it("receives the messages of several senders in the same order as another common receiver", async () => {
        const bus = await makeBus(busKind);
        const s = bus.connect();
        const r2 = bus.connect();
        const senders = [bus.connect(), bus.connect(), bus.connect()];
        const to = senders.map((from) => [s.transfer(0x100, from), r2.transfer(0x100, from)]);
        const r1 = await kind.wrap(bus, s);
        const sent: string[] = [];
        for (let round = 0; round < 5; round++) {
          senders.forEach((from, i) => {
            const text = `${i}:${round}`;
            from.send(to[i], enc(text));
            sent.push(text);
          });
        }
        expect(await drainTexts(r1)).toEqual(sent);
        expect(drainTextsLocal(r2)).toEqual(sent);
      });

      it("orders its sends against local sends at every common receiver", async () => {
        const bus = await makeBus(busKind);
        const s = bus.connect();
        const r1 = bus.connect();
        const r2 = bus.connect();
        const others = [bus.connect(), bus.connect()];
        const mine = [r1.transfer(0x100, s), r2.transfer(0x100, s)];
        const theirs = others.map((o) => [r1.transfer(0x100, o), r2.transfer(0x100, o)]);
        const p = await kind.wrap(bus, s);
        const sent: string[] = [];
        for (let round = 0; round < 6; round++) {
          others[round % 2].send(theirs[round % 2], enc(`local ${round}`));
          sent.push(`local ${round}`);
          await p.send(mine, enc(`p ${round}`));
          sent.push(`p ${round}`);
        }
        expect(drainTextsLocal(r1)).toEqual(sent);
        expect(drainTextsLocal(r2)).toEqual(sent);
      });

      it("sees what a receiver did after receiving its message as later than that message", async () => {
        // causality: p sends to a, a (having received it) sends to b, b sees p's first message first
        const bus = await makeBus(busKind);
        const s = bus.connect();
        const a = bus.connect();
        const b = bus.connect();
        const pToA = a.transfer(0x100, s);
        const pToB = b.transfer(0x100, s);
        const aToB = b.transfer(0x200, a);
        const p = await kind.wrap(bus, s);
        await p.send(pToA, enc("to a"));
        expect(takeOneLocal(a).text).toBe("to a");
        a.send(aToB, enc("a, after p"));
        await p.send(pToB, enc("p, after a"));
        expect(drainLocal(b).map((m) => [m.destination, m.text])).toEqual([[0x200, "a, after p"], [0x100, "p, after a"]]);
      });

      it("orders a node-destroy against every message to or carrying the node", async () => {
        const bus = await makeBus(busKind);
        const owner = bus.connect();
        const s = bus.connect();
        const other = bus.connect();
        const toOwner = owner.transfer(4, s);
        const toOther = other.transfer(0x100, s);
        const holder = await kind.wrap(bus, s);
        await holder.send(toOwner, enc("before"));
        await holder.send(toOther, enc("carrying before"), { handles: [toOwner] });
        owner.destroy(4);
        await rejects(() => holder.send(toOwner, enc("after")), "EHOSTUNREACH");
        await holder.send(toOther, enc("carrying after"), { handles: [toOwner] });

        expect(drainLocal(owner).map((m) => [m.type, m.text])).toEqual([["data", "before"], ["node-destroy", ""]]);
        const atOther = drainLocal(other);
        expect(atOther.map((m) => m.type)).toEqual(["data", "node-destroy", "data"]);
        expectRemoteId(atOther[0].handles[0]);
        expect(atOther[1].destination).toBe(atOther[0].handles[0]);
        expect([atOther[2].text, atOther[2].handles]).toEqual(["carrying after", [HANDLE_INVALID]]);
        expectNote(await take(holder), "node-destroy", toOwner);
      });

      it("receives a node-destroy after the messages that carried the node's handle to it", async () => {
        const bus = await makeBus(busKind);
        const owner = bus.connect();
        const s = bus.connect();
        const toS = s.transfer(0x100, owner);
        const p = await kind.wrap(bus, s);
        owner.send(toS, enc("one"), { handles: [4] });
        owner.send(toS, enc("two"), { handles: [4] });
        owner.destroy(4);
        owner.send(toS, enc("three"), { handles: [4] });
        const got = await drain(p);
        expect(got.map((m) => [m.type, m.text, m.handles])).toEqual([
          ["data", "one", [11]], ["data", "two", [11]], ["node-destroy", "", []], ["data", "three", [HANDLE_INVALID]],
        ]);
        expect(got[2].destination).toBe(11);
      });
    });
  });
});

describe.each(kinds)("determinism of a private bus ($name peer)", (kind) => {
  /** The same calls, with peer 1 the peer under test of `k`; offsets left out (a served peer's are aliases). */
  async function trace(k: PeerKind): Promise<unknown[]> {
    const bus = await newBus();
    const log: unknown[] = [];
    const ps = Array.from({ length: 4 }, () => bus.connect());
    const hs = ps.map((p, i) => p.transfer(0x100, ps[(i + 1) % 4]));
    log.push(hs);
    const subject = await k.wrap(bus, ps[1]);
    for (let i = 0; i < 4; i++) {
      const from = (i + 1) % 4;
      const args = [hs[i], bytesOf(3 + 5 * i, i), { handles: [0x200 + 4 * i] }] as const;
      log.push((from === 1 ? await subject.send(...args) : ps[from].send(...args)).errors);
    }
    ps[2].destroy(0x100);
    try {
      ps[3].send(hs[2], enc("late"));
    } catch (e) {
      log.push((e as { code: string }).code);
    }
    for (let i = 0; i < 4; i++) {
      if (i === 1) {
        for (const m of await drain(subject)) log.push([m.type, m.destination, m.continue, dec(m.bytes), m.handles]);
      } else {
        for (let m = ps[i].recv(); m !== null; m = ps[i].recv()) log.push([m.type, m.destination, m.continue, dec(m.payload), m.handles]);
      }
    }
    log.push(await subject.stats());
    bus.close();
    return log;
  }

  it("gives the same IDs, orders and errors for the same calls, and the same as a local peer", async () => {
    const first = await trace(kind);
    const second = await trace(kind);
    expect(second).toEqual(first);
    expect(first).toContain("EHOSTUNREACH");
    expect(await trace(local)).toEqual(first);
  });
});
