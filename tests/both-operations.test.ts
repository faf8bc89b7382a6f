// SPEC §4 and §6 on both kinds of peer (issue 9): destroy, releaseSlice,
// reset, query, stats, recv, disconnect and close. The peer under test is
// `p`; app and c are local peers of the same bus.

import { describe, expect, it } from "vitest";
import {
  DEFAULT_LIMITS,
  UNKNOWN_MANAGED,
  drain as drainLocal,
  enc,
  expectCode,
  expectEmpty,
  expectNotification,
  newBus,
  take as takeLocal,
  takeOne as takeOneLocal,
} from "./helpers.js";
import type { Peer } from "./helpers.js";
import {
  ENDPOINT, aliasOf, notesOf, drain, drainTexts, expectNothing, expectNote, kinds, rejects, settledClose, take, takeOne, within,
  type PeerKind, type TestPeer,
} from "./peer-kinds.js";

/**
 * p owns node 0x200; app holds hp (11) to it. p holds ha (11) to app's node
 * 0x100. `setup` runs on p's Peer before it becomes the peer under test.
 */
async function pair(kind: PeerKind, setup?: (s: Peer, app: Peer, c: Peer) => void, busOptions?: Record<string, unknown>) {
  const bus = await newBus(busOptions);
  const s = bus.connect();
  const app = bus.connect();
  const c = bus.connect();
  const ha = app.transfer(0x100, s);
  const hp = s.transfer(0x200, app);
  setup?.(s, app, c);
  const p = await kind.wrap(bus, s);
  return { bus, p, app, c, ha, hp };
}

/** p also owns nodes 4 and 8, app holds h4 (19) and h8 (27) to them. */
async function owner(kind: PeerKind) {
  const w = await pair(kind, (s, app) => {
    s.transfer(4, app);
    s.transfer(8, app);
  });
  return { ...w, h4: 19, h8: 27 };
}

describe.each(kinds)("destroy ($name peer)", (kind) => {
  it("notifies every holder with its own handle ID, the owner included", async () => {
    const { p, app, c } = await pair(kind, (s, app, c) => {
      s.transfer(4, app);
      s.transfer(4, c);
    });
    await p.destroy(4);
    expectNote(await take(p), "node-destroy", 4);
    expectNotification(takeLocal(app), "node-destroy", 19);
    expectNotification(takeLocal(c), "node-destroy", 11);
    await expectNothing(p);
    expectEmpty(app);
    expectEmpty(c);
  });

  it("does not flag the notification of a single-node destroy with continue", async () => {
    const { p, app } = await owner(kind);
    await p.destroy(4);
    expect((await takeOne(p)).continue).toBe(false);
    expect(takeOneLocal(app).continue).toBe(false);
  });

  it("flags every notification of a multi-node destroy with continue except each receiver's last", async () => {
    const { p, app, hp, h4, h8 } = await owner(kind);
    await p.destroy([4, 8, 0x200]);
    const atOwner = await drain(p);
    expect(atOwner.map((m) => [m.type, m.continue])).toEqual([["node-destroy", true], ["node-destroy", true], ["node-destroy", false]]);
    expect(atOwner.map((m) => m.destination).sort((x, y) => x - y)).toEqual([4, 8, 0x200]);
    const atHolder = drainLocal(app);
    expect(atHolder.map((m) => m.continue)).toEqual([true, true, false]);
    expect(new Set(atHolder.map((m) => m.destination))).toEqual(new Set([hp, h4, h8]));
  });

  it("gives a holder of only one of the destroyed nodes a lone notification without continue", async () => {
    const { p, c } = await pair(kind, (s, app, c) => {
      s.transfer(4, app);
      s.transfer(8, app);
      s.transfer(8, c);
    });
    await p.destroy([4, 8]);
    const atC = drainLocal(c);
    expect(atC).toHaveLength(1);
    expectNotification(atC[0], "node-destroy", 11);
    expect(atC[0].continue).toBe(false);
  });

  it("makes later sends to the node fail with EHOSTUNREACH", async () => {
    const { p, app, h4 } = await owner(kind);
    await p.destroy(4);
    expectCode(() => app.send(h4, enc("too late")), "EHOSTUNREACH");
    await rejects(() => p.send(4, enc("too late")), "EHOSTUNREACH");
  });

  it("delivers the node-destroy after data queued to the node before the destruction", async () => {
    const { p, app, h4 } = await owner(kind);
    app.send(h4, enc("before"));
    await p.destroy(4);
    expect((await drain(p)).map((m) => [m.type, m.text])).toEqual([["data", "before"], ["node-destroy", ""]]);
  });

  it("notifies a peer that receives the handle in a message ordered before the destruction, after that message", async () => {
    const { p, app, ha } = await pair(kind);
    await p.send(ha, enc("carrier"), { handles: [4] });
    await p.destroy(4);
    const carrier = takeOneLocal(app);
    expect([carrier.type, carrier.handles]).toEqual(["data", [19]]);
    expectNotification(takeLocal(app), "node-destroy", 19);
    expectEmpty(app);
  });

  it("with releaseHandles drops its reference and sends it no notification", async () => {
    const { p, app, h4 } = await owner(kind);
    await p.destroy(4, { releaseHandles: true });
    await expectNothing(p);
    await rejects(() => p.release(4), "ENXIO", "release: handle (4): no such handle or slice (ENXIO)");
    expectNotification(takeLocal(app), "node-destroy", h4);
  });

  it("with releaseHandles drops only one reference of its handle", async () => {
    const { p } = await pair(kind);
    await p.transfer(4);
    await p.destroy(4, { releaseHandles: true });
    expectNote(await take(p), "node-destroy", 4);
    await p.release(4);
    await rejects(() => p.release(4), "ENXIO");
  });

  it("with releaseHandles frees the caller-chosen ID for a fresh node", async () => {
    const { p, app, h4 } = await owner(kind);
    await p.destroy(4, { releaseHandles: true });
    await p.send(4, enc("fresh node"));
    const msg = await takeOne(p);
    expect([msg.destination, msg.text]).toEqual([4, "fresh node"]);
    expectCode(() => app.send(h4), "EHOSTUNREACH");
  });

  it("does nothing for an empty list", async () => {
    const { p, app, hp } = await pair(kind);
    await p.destroy([]);
    await expectNothing(p);
    expectEmpty(app);
    app.send(hp, enc("alive"));
    expect((await takeOne(p)).text).toBe("alive");
  });

  it("fails with ENXIO for a managed ID that names no handle", async () => {
    const { p } = await pair(kind);
    await rejects(() => p.destroy(UNKNOWN_MANAGED), "ENXIO", `destroy: nodes[0] (${UNKNOWN_MANAGED}): no such handle or slice (ENXIO)`);
  });

  it("fails with EREMOTE for a node owned by another peer", async () => {
    const { p, app, ha } = await pair(kind);
    await rejects(() => p.destroy(ha), "EREMOTE", "destroy: nodes[0] (11): not the owner of that node (EREMOTE)");
    await p.send(ha, enc("still alive"));
    expect(takeOneLocal(app).text).toBe("still alive");
    await expectNothing(p);
  });

  it("fails with ESTALE for a node that is already destroyed", async () => {
    const { p } = await pair(kind);
    await p.destroy(4);
    await rejects(() => p.destroy(4), "ESTALE", "destroy: nodes[0] (4): the node is already destroyed (ESTALE)");
  });

  it("fails with ENOTUNIQ for a node listed twice, destroying nothing", async () => {
    const { p, app, h4 } = await owner(kind);
    await rejects(() => p.destroy([4, 8, 4]), "ENOTUNIQ", "destroy: nodes[2] (4): listed twice (ENOTUNIQ)");
    await expectNothing(p);
    expectEmpty(app);
    app.send(h4, enc("alive"));
    expect((await takeOne(p)).text).toBe("alive");
  });

  it("fails with EINVAL for an ID that is not valid, making no node", async () => {
    const { p } = await pair(kind);
    await rejects(() => p.destroy([4, 2.5]), "EINVAL", "destroy: nodes[1] (2.5): invalid argument (EINVAL)");
    await rejects(() => p.release(4), "ENXIO");
  });

  it("destroys none of the listed nodes when one is remote", async () => {
    const { p, app, ha, h4 } = await owner(kind);
    await rejects(() => p.destroy([4, ha]), "EREMOTE", "destroy: nodes[1] (11): not the owner of that node (EREMOTE)");
    await expectNothing(p);
    expectEmpty(app);
    app.send(h4, enc("alive"));
    expect((await takeOne(p)).text).toBe("alive");
  });

  it("destroys none of the listed nodes when one is already destroyed", async () => {
    const { p, app, h4 } = await owner(kind);
    await p.destroy(12);
    await take(p);
    await rejects(() => p.destroy([4, 12]), "ESTALE", "destroy: nodes[1] (12): the node is already destroyed (ESTALE)");
    await expectNothing(p);
    expectEmpty(app);
    app.send(h4, enc("alive"));
    expect((await takeOne(p)).text).toBe("alive");
  });

  it("creates no node when the call fails", async () => {
    const { p } = await pair(kind);
    await rejects(() => p.destroy([0x300, UNKNOWN_MANAGED]), "ENXIO");
    await rejects(() => p.release(0x300), "ENXIO");
    await expectNothing(p);
  });
});

describe.each(kinds)("releaseSlice ($name peer)", (kind) => {
  it("frees a received slice once; again is ENXIO for a local peer, nothing for a served one", async () => {
    const { p, app, hp } = await pair(kind);
    app.send(hp, enc("slice"));
    const msg = (await p.recv())!;
    await p.releaseSlice(msg.offset);
    if (kind.served) {
      // the offset is an alias whose slice the serving side released when it pushed the message (remote.ts)
      await expect(p.releaseSlice(msg.offset)).resolves.toBeUndefined();
    } else {
      await rejects(() => p.releaseSlice(msg.offset), "ENXIO", `releaseSlice: offset (${msg.offset}): no such handle or slice (ENXIO)`);
    }
  });

  it("is what message.release() does", async () => {
    const { p, app, hp } = await pair(kind);
    app.send(hp, enc("slice"));
    const msg = (await p.recv())!;
    msg.release();
    if (kind.served) {
      // a served peer's message has no slice to free (its payload is its own copy; release() only gives
      // its buffer back): a second call does nothing, it never throws
      expect(msg.release()).toBeUndefined();
      await expect(p.releaseSlice(msg.offset)).resolves.toBeUndefined();
    } else {
      expectCode(() => msg.release(), "ENXIO");
      await rejects(() => p.releaseSlice(msg.offset), "ENXIO");
    }
  });

  it("makes message.release() a no-op for notifications", async () => {
    const { p } = await pair(kind);
    await p.destroy(4);
    const msg = (await p.recv())!;
    expect(msg.offset).toBe(-1);
    msg.release();
    msg.release();
  });

  it("refuses an offset inside a slice or past the ones handed out", async () => {
    const { p, app, hp } = await pair(kind);
    app.send(hp, new Uint8Array(64));
    const msg = (await p.recv())!;
    if (kind.served) {
      // an alias not handed out yet is asked of the serving side, which refuses it as a local peer refuses
      // that number: it is no bus offset at all (above 2^32 - 1)
      expect(msg.offset).toBe(aliasOf(1));
      await rejects(() => p.releaseSlice(msg.offset + 8), "EINVAL", `releaseSlice: offset (${aliasOf(2)}): invalid argument (EINVAL)`);
      await rejects(() => p.releaseSlice(msg.offset + 1), "EINVAL");
    } else {
      await rejects(() => p.releaseSlice(msg.offset + 8), "ENXIO", `releaseSlice: offset (${msg.offset + 8}): no such handle or slice (ENXIO)`);
      await rejects(() => p.releaseSlice(msg.offset + 1), "ENXIO");
    }
    await p.releaseSlice(msg.offset);
  });

  it("fails with ENXIO for an offset when no slice is held", async () => {
    const { p } = await pair(kind);
    await rejects(() => p.releaseSlice(0), "ENXIO", "releaseSlice: offset (0): no such handle or slice (ENXIO)");
    await rejects(() => p.releaseSlice(8), "ENXIO", "releaseSlice: offset (8): no such handle or slice (ENXIO)");
  });

  it("fails with ENXIO for another peer's slice offset", async () => {
    const { p, app, ha } = await pair(kind);
    await p.send(ha, new Uint8Array(64));
    const msg = app.recv()!;
    await rejects(() => p.releaseSlice(msg.offset), "ENXIO", `releaseSlice: offset (${msg.offset}): no such handle or slice (ENXIO)`);
    msg.release();
  });

  it("hands out offsets that are multiples of 8, distinct while held", async () => {
    const { p, app, hp } = await pair(kind);
    for (const n of [1, 3, 8, 9, 17, 100]) app.send(hp, new Uint8Array(n).fill(n), { handles: n % 2 ? [0x100] : [] });
    const all = await drain(p, { keep: true });
    expect(all.map((m) => m.bytes.length)).toEqual([1, 3, 8, 9, 17, 100]);
    for (const m of all) {
      expect(Number.isSafeInteger(m.offset)).toBe(true);
      expect(m.offset % 8).toBe(0);
    }
    expect(new Set(all.map((m) => m.offset)).size).toBe(6);
    // a served peer's offsets are the aliases 2^32 + 8n, n counting its data messages (remote.ts)
    if (kind.served) expect(all.map((m) => m.offset)).toEqual([1, 2, 3, 4, 5, 6].map(aliasOf));
    else for (const m of all) expect(m.offset).toBeLessThan(2 ** 32);
  });

  it("keeps a received payload intact while other messages are received", async () => {
    const { p, app, hp } = await pair(kind);
    const texts = ["a", "bbbbbbbbbbb", "cc", "d".repeat(40), ""];
    for (const t of texts) app.send(hp, enc(t), { handles: [0x100] });
    const held = [];
    for (let i = 0; i < texts.length; i++) held.push((await p.recv())!);
    expect(held.map((m) => new TextDecoder().decode(m.payload.slice()))).toEqual(texts);
    for (const m of held) m.release();
  });

  it("has no slice held on the bus for a served peer's received message", async () => {
    const { p, app, hp } = await pair(kind);
    app.send(hp, enc("held?"));
    const msg = (await p.recv())!;
    // a local peer holds the slice until release; a served peer's was released as it was pushed (PLUGINS.md)
    expect((await p.stats()).liveSlices).toBe(kind.served ? 0 : 1);
    msg.release();
    expect(await p.stats()).toMatchObject({ liveSlices: 0, slices: 0, bytes: 0 });
  });
});

describe.each(kinds)("reset ($name peer)", (kind) => {
  it("sets per-peer limits that query reports", async () => {
    const { p } = await pair(kind);
    const limits = { maxSlices: 3, maxHandles: 5, maxInflightBytes: 1024, maxInflightObjects: 2 };
    await p.reset({ limits });
    expect(await p.query()).toEqual(limits);
  });

  it("keeps the limits a partial update does not name", async () => {
    const { p } = await pair(kind);
    await p.reset({ limits: { maxSlices: 3 } });
    await p.reset({ limits: { maxHandles: 7 } });
    expect(await p.query()).toEqual({ ...DEFAULT_LIMITS, maxSlices: 3, maxHandles: 7 });
  });

  it("sets the limits of the calling peer only", async () => {
    const { p, app } = await pair(kind);
    await p.reset({ limits: { maxSlices: 3 } });
    expect(app.query()).toEqual(DEFAULT_LIMITS);
  });

  it("without flush keeps the queue, the received messages and the handles", async () => {
    const { p, app, ha, hp } = await pair(kind);
    app.send(hp, enc("held"));
    app.send(hp, enc("queued"));
    const held = (await p.recv())!;
    await p.reset();
    await p.reset({ limits: { maxSlices: 100 } });
    expect((await takeOne(p)).text).toBe("queued");
    await p.releaseSlice(held.offset);
    await p.send(ha, enc("handle kept"));
    expect(takeOneLocal(app).text).toBe("handle kept");
  });

  it("with flush drops every queued message", async () => {
    const { p, app, hp } = await pair(kind);
    app.send(hp, enc("1"));
    app.send(hp, enc("2"));
    await p.reset({ flush: true });
    if (kind.served) {
      // A served peer's serving side received both (and pushed them) as soon as they were ready, before the
      // reset reached the bus: there was nothing queued left to drop (remote.ts "Receiving").
      expect(await drainTexts(p)).toEqual(["1", "2"]);
    }
    await expectNothing(p);
  });

  it("with flush destroys every node and notifies the other holders in one transaction", async () => {
    const { p, app, hp, h4, h8 } = await owner(kind);
    await p.reset({ flush: true });
    const all = drainLocal(app);
    // three node-destroys and the node-release of its handle to app's node, flagged as one transaction
    expect(all.map((m) => m.continue)).toEqual([true, true, true, false]);
    expect(notesOf(all)).toEqual([["node-destroy", hp], ["node-destroy", h4], ["node-destroy", h8], ["node-release", 0x100]]);
    expectCode(() => app.send(h4), "EHOSTUNREACH");
    await expectNothing(p);
  });

  it("with flush releases every handle it held", async () => {
    const { p, app, ha, hp } = await pair(kind);
    await p.reset({ flush: true });
    await rejects(() => p.send(ha), "ENXIO", "send: destinations[0] (11): no such handle or slice (ENXIO)");
    expect(notesOf(drainLocal(app))).toEqual([["node-destroy", hp], ["node-release", 0x100]]);
  });

  it("with flush frees the slices it held", async () => {
    const { p, app, hp } = await pair(kind);
    app.send(hp, enc("held"));
    const held = (await p.recv())!;
    await p.reset({ flush: true });
    if (kind.served) await expect(p.releaseSlice(held.offset)).resolves.toBeUndefined(); // an alias: see releaseSlice
    else await rejects(() => p.releaseSlice(held.offset), "ENXIO");
    expect(await p.stats()).toMatchObject({ slices: 0, liveSlices: 0, bytes: 0 });
  });

  it("with flush frees the caller-chosen IDs for fresh nodes", async () => {
    const { p, app, ha } = await pair(kind);
    await p.send(ha, undefined, { handles: [4] });
    const old = takeOneLocal(app).handles[0];
    expect(old).toBe(19);
    await p.reset({ flush: true });
    expect(notesOf(drainLocal(app)))
      .toEqual([["node-destroy", 11], ["node-destroy", 19], ["node-release", 0x100]]);
    await p.send(4, enc("fresh"));
    expect((await takeOne(p)).destination).toBe(4);
    expect((await p.stats()).handles).toBe(1);
  });

  it("with flush keeps the peer connected, its limits and its seed", async () => {
    const { p, app } = await pair(kind);
    await p.reset({ limits: { maxSlices: 9 } });
    await p.send([], enc("seed"), { seed: true });
    await p.reset({ flush: true });
    expect((await p.query()).maxSlices).toBe(9);
    expect((await p.recv({ seed: true }))?.payload.length).toBe(4);
    await p.send(0x300, enc("after flush"));
    expect((await takeOne(p)).text).toBe("after flush");
    drainLocal(app);
  });

  it("with flushSeed alone keeps the queue", async () => {
    const { p } = await pair(kind);
    await p.send([], enc("seed"), { seed: true });
    await p.send(4, enc("queued"));
    await p.reset({ flushSeed: true });
    expect(await p.recv({ seed: true })).toBeNull();
    expect((await takeOne(p)).text).toBe("queued");
  });

  it.each([
    ["a negative limit", { maxSlices: -1 }, "limits.maxSlices must be an integer from 0 to 4294967295, got -1"],
    ["a fractional limit", { maxHandles: 2.5 }, "limits.maxHandles must be an integer from 0 to 4294967295, got 2.5"],
    ["a NaN limit", { maxInflightBytes: NaN }, "limits.maxInflightBytes must be an integer from 0 to 4294967295, got NaN"],
    ["an infinite limit", { maxInflightObjects: Infinity }, "limits.maxInflightObjects must be an integer from 0 to 4294967295, got Infinity"],
    ["a limit of 2^32", { maxSlices: 2 ** 32 }, "limits.maxSlices must be an integer from 0 to 4294967295, got 4294967296"],
    ["a string limit", { maxSlices: "3" }, 'limits.maxSlices must be an integer from 0 to 4294967295, got "3"'],
    ["an unknown limit", { maxPeers: 3 }, 'unknown option "maxPeers"'],
  ])("rejects %s with EINVAL and keeps the old limits", async (_, limits, what) => {
    const { p } = await pair(kind);
    await p.reset({ limits: { maxSlices: 5 } });
    const before = await p.query();
    await rejects(() => p.reset({ limits: limits as never }), "EINVAL", `reset: ${what}: invalid argument (EINVAL)`);
    expect(await p.query()).toEqual(before);
  });

  it("rejects bad limits without flushing anything", async () => {
    const { p } = await pair(kind);
    await p.send(4, enc("kept"));
    await p.send([], enc("seed"), { seed: true });
    await rejects(() => p.reset({ flush: true, flushSeed: true, limits: { maxSlices: -1 } }), "EINVAL");
    expect((await takeOne(p)).text).toBe("kept");
    expect(await p.recv({ seed: true })).not.toBeNull();
  });
});

describe.each(kinds)("query and stats ($name peer)", (kind) => {
  it("reports the default per-user limits", async () => {
    const { p } = await pair(kind);
    expect(await p.query()).toEqual({ maxSlices: 16384, maxHandles: 65536, maxInflightBytes: 16 * 1024 * 1024, maxInflightObjects: 4096 });
  });

  it("reports the bus option limits, defaulting the ones not given", async () => {
    const { p } = await pair(kind, undefined, { limits: { maxSlices: 10, maxInflightObjects: 3 } });
    expect(await p.query()).toEqual({ maxSlices: 10, maxHandles: 65536, maxInflightBytes: 16 * 1024 * 1024, maxInflightObjects: 3 });
  });

  it("reports the bus option limits for a peer of another user", async () => {
    const bus = await newBus({ limits: { maxHandles: 33 } });
    const p = await kind.wrap(bus, bus.connect({ user: 7 }));
    expect((await p.query()).maxHandles).toBe(33);
  });

  it("returns a snapshot that does not change the peer when modified", async () => {
    const { p } = await pair(kind);
    const q = await p.query();
    q.maxSlices = 1;
    expect((await p.query()).maxSlices).toBe(16384);
    const st = await p.stats();
    st.handles = 99;
    expect((await p.stats()).handles).toBe(2);
  });

  it("counts its handles and its seed", async () => {
    const { p } = await pair(kind);
    expect(await p.stats()).toEqual({ slices: 0, handles: 2, bytes: 0, objects: 0, poolBytes: 0, handleIds: 2, handleRecords: 2, liveSlices: 0 });
    await p.send([], new Uint8Array(5), { seed: true, objects: [{}] });
    // one slice of 8 bytes of payload, 8 for the object slot and the object's 24-byte record (SPEC §8)
    expect(await p.stats()).toMatchObject({ slices: 1, handles: 2, bytes: 40, objects: 1, handleIds: 2, liveSlices: 0 });
    await p.reset({ flushSeed: true });
    expect(await p.stats()).toMatchObject({ slices: 0, bytes: 0, objects: 0 });
  });

  it("counts the handles it makes and releases", async () => {
    const { p, ha } = await pair(kind);
    await p.send(ha, undefined, { handles: [4, 8] });
    expect((await p.stats()).handles).toBe(4);
    await p.destroy([4, 8], { releaseHandles: true });
    expect((await p.stats()).handles).toBe(2);
  });
});

describe.each(kinds)("recv ($name peer)", (kind) => {
  it("returns null when nothing is queued", async () => {
    const { p } = await pair(kind);
    expect(await p.recv()).toBeNull();
  });

  it("returns data messages with their destination, offset, payload and no continue", async () => {
    const { p, app, hp } = await pair(kind);
    app.send(hp, enc("hello"));
    const msg = (await p.recv())!;
    expect([msg.type, msg.destination, msg.continue, msg.offset % 8, msg.handles, msg.objects])
      .toEqual(["data", 0x200, false, 0, [], []]);
    expect(msg.payload).toBeInstanceOf(Uint8Array);
    expect(new TextDecoder().decode(msg.payload.slice())).toBe("hello");
    msg.release();
  });

  it("returns the messages of one sender in the order they were sent", async () => {
    const { p, app, hp } = await pair(kind);
    for (const t of ["1", "2", "3", "4"]) app.send(hp, enc(t));
    expect(await drainTexts(p)).toEqual(["1", "2", "3", "4"]);
  });

  it("returns its own messages in the order it sent them", async () => {
    const { p } = await pair(kind);
    for (const t of ["1", "2", "3", "4"]) await p.send(4, enc(t));
    expect(await drainTexts(p)).toEqual(["1", "2", "3", "4"]);
  });

  it("removes each message from the queue", async () => {
    const { p, app, hp } = await pair(kind);
    app.send(hp, enc("once"));
    expect((await takeOne(p)).text).toBe("once");
    expect(await p.recv()).toBeNull();
  });

  it("rejects options it does not know", async () => {
    const { p } = await pair(kind);
    await rejects(() => p.recv({ bogus: true } as never), "EINVAL", 'recv: unknown option "bogus": invalid argument (EINVAL)');
  });

  it("sees a message sent after an empty recv", async () => {
    const { p, app, hp } = await pair(kind);
    expect(await p.recv()).toBeNull();
    app.send(hp, enc("now"));
    expect((await takeOne(p)).text).toBe("now");
  });
});

/** Every call on a peer, for what a disconnected peer or a closed reference refuses. */
const EVERY_CALL: [string, string, (p: TestPeer) => Promise<unknown>][] = [
  ["send", "send", (p) => p.send(4, enc("x"))],
  ["send to nobody", "send", (p) => p.send([])],
  ["recv", "recv", (p) => p.recv()],
  ["recv of the seed", "recv", (p) => p.recv({ seed: true })],
  ["transfer", "transfer", (p) => p.transfer(4)],
  ["release", "release", (p) => p.release(4)],
  ["destroy", "destroy", (p) => p.destroy(4)],
  ["destroy of nothing", "destroy", (p) => p.destroy([])],
  ["releaseSlice", "releaseSlice", (p) => p.releaseSlice(0)],
  ["reset", "reset", (p) => p.reset()],
  ["reset with flush", "reset", (p) => p.reset({ flush: true })],
  ["query", "query", (p) => p.query()],
  ["disconnect", "disconnect", (p) => p.disconnect()],
];

describe.each(kinds)("disconnect ($name peer)", (kind) => {
  it.each(EVERY_CALL)("makes a later %s fail with ESHUTDOWN", async (_, op, call) => {
    const { p } = await pair(kind);
    await p.disconnect();
    await rejects(() => call(p), "ESHUTDOWN", `${op}: the peer is disconnected (ESHUTDOWN)`);
  });

  it("leaves stats and close working", async () => {
    const { p } = await pair(kind);
    await p.disconnect();
    expect(await p.stats()).toEqual({ slices: 0, handles: 0, bytes: 0, objects: 0, poolBytes: 0, handleIds: 0, handleRecords: 0, liveSlices: 0 });
    await p.close();
    await p.close();
  });

  it("keeps the messages it sent queued at their receivers", async () => {
    const { p, app, ha, hp } = await pair(kind);
    await p.send(ha, enc("one"));
    await p.send(ha, enc("two"));
    await p.disconnect();
    const all = drainLocal(app);
    expect(all.slice(0, 2).map((m) => [m.type, m.text])).toEqual([["data", "one"], ["data", "two"]]);
    // then the node-destroy of its node and the node-release of its handle to app's node, in one transaction
    expect(notesOf(all.slice(2))).toEqual([["node-destroy", hp], ["node-release", 0x100]]);
  });

  it("notifies the holders of its nodes with node-destroy", async () => {
    const { p, app, c, hp } = await pair(kind, (s, app, c) => { void app; s.transfer(8, c); });
    await p.disconnect();
    expect(notesOf(drainLocal(app))).toEqual([["node-destroy", hp], ["node-release", 0x100]]);
    expectNotification(takeLocal(c), "node-destroy", 11);
  });

  it("releases its handles, so owners get node-release", async () => {
    const { p, c } = await pair(kind, (s, app, c) => { void app; c.transfer(0x100, s); });
    await p.disconnect();
    expectNotification(takeLocal(c), "node-release", 0x100);
  });

  it("drops its queue, releasing the references carried by unreceived messages", async () => {
    const { p, app, hp } = await pair(kind);
    app.send(hp, enc("unread"), { handles: [8] });
    await p.disconnect();
    const all = drainLocal(app);
    expect(notesOf(all)).toEqual([["node-destroy", hp], ["node-release", 8], ["node-release", 0x100]]);
  });

  it("makes sends to its nodes fail with EHOSTUNREACH", async () => {
    const { p, app, hp } = await pair(kind);
    await p.disconnect();
    expectCode(() => app.send(hp, enc("anyone?")), "EHOSTUNREACH");
    expect(app.send(hp, enc("anyone?"), { continue: true }).errors).toEqual(["EHOSTUNREACH"]);
  });

  it("leaves the holders' handle IDs valid until they release them", async () => {
    const { p, app, hp } = await pair(kind);
    await p.disconnect();
    app.release(hp);
    expectCode(() => app.release(hp), "ENXIO");
  });

  it("does not disturb other peers", async () => {
    const { p, app, c } = await pair(kind);
    const h = c.transfer(4, app);
    await p.disconnect();
    app.send(h, enc("still here"));
    expect(takeOneLocal(c).text).toBe("still here");
  });
});

describe.each(kinds)("close ($name peer)", (kind) => {
  it.each(EVERY_CALL)("makes a later %s on the closed reference fail with EBADF", async (_, op, call) => {
    const { p } = await pair(kind);
    await p.close();
    await rejects(() => call(p), "EBADF", `${op}: this peer reference is closed: the reference is closed (EBADF)`);
  });

  it("makes stats on the closed reference fail with EBADF too", async () => {
    const { p } = await pair(kind);
    await p.close();
    await rejects(() => p.stats(), "EBADF", "stats: this peer reference is closed: the reference is closed (EBADF)");
  });

  it("disconnects the peer when its last reference is closed", async () => {
    const { p, app, hp } = await pair(kind);
    await p.close();
    await settledClose(p);
    expect(notesOf(drainLocal(app))).toEqual([["node-destroy", hp], ["node-release", 0x100]]);
    expectCode(() => app.send(hp), "EHOSTUNREACH");
  });

  it("does nothing the second time", async () => {
    const { p, app } = await pair(kind);
    await p.close();
    await p.close();
    await settledClose(p);
    expect(drainLocal(app)).toHaveLength(2);
  });

  it("is what the peer's dispose method does", async () => {
    const { p, app, hp } = await pair(kind);
    const endpoint = p[ENDPOINT] as unknown as Record<symbol, () => unknown>;
    // a local Peer is Disposable, a RemotePeer AsyncDisposable (its close posts to the serving side)
    if (kind.served) await endpoint[Symbol.asyncDispose]();
    else endpoint[Symbol.dispose]();
    await rejects(() => p.recv(), "EBADF");
    await settledClose(p);
    expectNotification(drainLocal(app).find((m) => m.type === "node-destroy") ?? null, "node-destroy", hp);
  });

  it("ends the peer's calls when the bus is closed on the trusted side", async () => {
    const { bus, p } = await pair(kind);
    bus.close();
    if (kind.served) {
      // the plugin is in another realm from the bus: it learns that the serving ended (ESHUTDOWN), it holds no
      // reference that could be closed (EBADF is for its own close())
      await settledClose(p);
      await rejects(() => p.recv(), "ESHUTDOWN", /^recv: the served peer is gone: /);
    } else {
      await rejects(() => p.recv(), "EBADF");
    }
    await rejects(() => p.send([]), kind.served ? "ESHUTDOWN" : "EBADF");
  });

  it("fails calls that were waiting when it closed", async () => {
    const { p } = await pair(kind);
    const pending = p.query();
    const closed = p.close();
    // a local call is over before close is called; a served one is still waiting for its answer: EBADF
    if (kind.served) await rejects(() => pending, "EBADF", "query: this peer reference was closed: the reference is closed (EBADF)");
    else expect(await pending).toEqual(DEFAULT_LIMITS);
    await closed;
    expect(await within(settledClose(p), 3000)).not.toBe("timeout");
  });
});
