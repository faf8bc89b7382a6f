// SPEC §3 (handle IDs, user-references, node-release, "no handle, no news")
// and §4 transfer, on both kinds of peer (issue 9). The peer under test is
// `p`; app, b and c are local peers of the same bus. IDs are exact: a private
// bus is deterministic, and the first core-assigned ID a peer gets is 11.

import { describe, expect, it } from "vitest";
import {
  HANDLE_INVALID,
  UNKNOWN_MANAGED,
  UNKNOWN_REMOTE,
  drain as drainLocal,
  enc,
  expectEmpty,
  expectNotification,
  expectRemoteId,
  newBus,
  take as takeLocal,
  takeOne as takeOneLocal,
} from "./helpers.js";
import type { Peer } from "./helpers.js";
import { drain, expectNothing, notesOf, expectNote, kinds, rejects, take, takeOne, type PeerKind } from "./peer-kinds.js";

/**
 * p owns node 0x200; app holds hp (11) to it. p holds ha (11) to app's node
 * 0x100. `setup` runs on p's Peer before it becomes the peer under test.
 */
async function pair(kind: PeerKind, setup?: (s: Peer, app: Peer, c: Peer) => void) {
  const bus = await newBus();
  const s = bus.connect();
  const app = bus.connect();
  const c = bus.connect();
  const ha = app.transfer(0x100, s);
  const hp = s.transfer(0x200, app);
  setup?.(s, app, c);
  const p = await kind.wrap(bus, s);
  return { bus, p, app, c, ha, hp };
}

const ENXIO = (op: string, arg: string, id: number) => `${op}: ${arg} (${id}): no such handle or slice (ENXIO)`;

describe.each(kinds)("caller-chosen node IDs ($name peer)", (kind) => {
  it("creates a node lazily when a caller-chosen ID is used as a send destination", async () => {
    const { p } = await pair(kind);
    await p.send(4, enc("to myself"));
    const msg = await takeOne(p);
    expect([msg.type, msg.destination, msg.text]).toEqual(["data", 4, "to myself"]);
    await expectNothing(p);
  });

  it("creates a node lazily when a caller-chosen ID is attached as a handle", async () => {
    const { p, app, ha } = await pair(kind);
    await p.send(ha, enc("take this"), { handles: [8] });
    const msg = takeOneLocal(app);
    expect(msg.handles).toEqual([19]);
    app.send(msg.handles[0], enc("back"));
    const back = await takeOne(p);
    expect([back.destination, back.text]).toEqual([8, "back"]);
  });

  it("creates a node lazily when a caller-chosen ID is a transfer source, with the ID itself", async () => {
    const { p } = await pair(kind);
    expect(await p.transfer(0x100)).toBe(0x100);
    await p.send(0x100, enc("hi"));
    expect((await takeOne(p)).destination).toBe(0x100);
  });

  it("creates and at once destroys a node when a caller-chosen ID is first named by destroy", async () => {
    const { p } = await pair(kind);
    await p.destroy(4);
    expectNote(await take(p), "node-destroy", 4);
    await expectNothing(p);
    await rejects(() => p.send(4), "EHOSTUNREACH", "send: destinations[0] (4): the destination node is destroyed (EHOSTUNREACH)");
  });

  it("hands a node's owner its own caller-chosen ID when a handle to the node comes back in a message", async () => {
    const { p, app, ha } = await pair(kind);
    await p.send(ha, enc("yours"), { handles: [4] });
    const h = takeOneLocal(app).handles[0];
    app.send(h, enc("back"), { handles: [h] });
    const msg = await takeOne(p);
    expect([msg.destination, msg.handles]).toEqual([4, [4]]);
  });

  it("accepts 0 as a caller-chosen node ID", async () => {
    const { p, app, ha } = await pair(kind);
    await p.send(0, enc("zero"));
    expect((await takeOne(p)).destination).toBe(0);
    await p.send(ha, undefined, { handles: [0] });
    app.send(takeOneLocal(app).handles[0]);
    expect((await takeOne(p)).destination).toBe(0);
  });

  it("accepts the largest caller-chosen ID below 2^53 and returns it exactly", async () => {
    const { p, app, ha } = await pair(kind);
    const id = 2 ** 53 - 4;
    await p.send(ha, undefined, { handles: [id] });
    const h = takeOneLocal(app).handles[0];
    expectRemoteId(h);
    app.send(h, enc("far"));
    expect((await takeOne(p)).destination).toBe(id);
  });

  it("keeps naming the destroyed node while the owner still holds its handle", async () => {
    const { p } = await pair(kind);
    expect(await p.transfer(4)).toBe(4);
    await p.destroy(4);
    await rejects(() => p.send(4), "EHOSTUNREACH");
    expect(await p.transfer(4)).toBe(HANDLE_INVALID);
    await rejects(() => p.destroy(4), "ESTALE", "destroy: nodes[0] (4): the node is already destroyed (ESTALE)");
  });

  it("creates a fresh node under the same ID once the old node is destroyed and its handle released", async () => {
    const { p, app, ha } = await pair(kind);
    await p.send(ha, undefined, { handles: [4] });
    const oldHandle = takeOneLocal(app).handles[0];
    await p.destroy(4);
    expectNote(await take(p), "node-destroy", 4);
    await p.release(4);
    await p.send(ha, undefined, { handles: [4] });
    const all = drainLocal(app);
    expect(all.map((m) => m.type)).toEqual(["node-destroy", "data"]);
    const newHandle = all[1].handles[0];
    expect([oldHandle, newHandle]).toEqual([19, 27]);
    expect(() => app.send(oldHandle)).toThrow(/EHOSTUNREACH/);
    app.send(newHandle, enc("fresh"));
    const msg = await takeOne(p);
    expect([msg.destination, msg.text]).toEqual([4, "fresh"]);
  });

  it("treats an ID with only the REMOTE bit set as naming nothing, never as a new node", async () => {
    const { p } = await pair(kind);
    await rejects(() => p.send(2), "ENXIO", ENXIO("send", "destinations[0]", 2));
    await rejects(() => p.send(6), "ENXIO", ENXIO("send", "destinations[0]", 6));
    await rejects(() => p.transfer(6), "ENXIO", ENXIO("transfer", "handle", 6));
    await rejects(() => p.destroy(6), "ENXIO", ENXIO("destroy", "nodes[0]", 6));
    await rejects(() => p.release(6), "ENXIO", ENXIO("release", "handle", 6));
  });
});

describe.each(kinds)("core-assigned IDs ($name peer)", (kind) => {
  it("sets MANAGED and REMOTE on the ID of a handle to another peer's node", async () => {
    const { p, app, ha, hp } = await pair(kind);
    expect([ha, hp]).toEqual([11, 11]);
    app.send(hp, undefined, { handles: [0x300] });
    const h = (await takeOne(p)).handles[0];
    expectRemoteId(h);
    expect(h).toBe(19);
  });

  it("assigns strictly increasing IDs in the order handles are given to it", async () => {
    const { p, app, c, hp } = await pair(kind, (s, app, c) => { void app; c.transfer(0x500, s); });
    // c's handle was given before serving: 19
    app.send(hp, undefined, { handles: [4, 8] });
    const toC = c.transfer(4, app);
    app.send(hp, undefined, { handles: [toC] });
    app.send(hp, undefined, { handles: [12] });
    const ids = (await drain(p)).flatMap((m) => m.handles);
    expect(ids).toEqual([27, 35, 43, 51]);
  });

  it("never reuses an ID after its handle is gone", async () => {
    const { p, app, hp } = await pair(kind);
    app.send(hp, undefined, { handles: [4] });
    const first = (await takeOne(p)).handles[0];
    await p.release(first);
    app.send(hp, undefined, { handles: [4] });
    const second = (await takeOne(p)).handles[0];
    expect([first, second]).toEqual([19, 27]);
    await rejects(() => p.send(first), "ENXIO", ENXIO("send", "destinations[0]", first));
  });

  it("never reuses IDs across many handles given and released", async () => {
    const { p, app, hp } = await pair(kind);
    const seen: number[] = [];
    for (let i = 0; i < 30; i++) {
      app.send(hp, undefined, { handles: [4 * (i % 5)] });
      const h = (await takeOne(p)).handles[0];
      seen.push(h);
      await p.release(h);
    }
    expect(seen).toEqual(Array.from({ length: 30 }, (_, i) => 19 + 8 * i));
  });

  it("gives an ID meaning only on the peer that holds it", async () => {
    const { p, app, c } = await pair(kind);
    const onlyApp = c.transfer(4, app);
    expect(onlyApp).toBe(19);
    await rejects(() => p.send(onlyApp), "ENXIO", ENXIO("send", "destinations[0]", 19));
    await rejects(() => p.release(onlyApp), "ENXIO", ENXIO("release", "handle", 19));
    expectEmpty(c);
  });

  it("fails with ENXIO for a managed ID that names no handle, in every operation that takes one", async () => {
    const { p } = await pair(kind);
    for (const id of [UNKNOWN_MANAGED, UNKNOWN_REMOTE]) {
      await rejects(() => p.send(id), "ENXIO", ENXIO("send", "destinations[0]", id));
      await rejects(() => p.send(4, undefined, { handles: [id] }), "ENXIO", ENXIO("send", "handles[0]", id));
      await rejects(() => p.transfer(id), "ENXIO", ENXIO("transfer", "handle", id));
      await rejects(() => p.release(id), "ENXIO", ENXIO("release", "handle", id));
      await rejects(() => p.destroy(id), "ENXIO", ENXIO("destroy", "nodes[0]", id));
    }
    // the send with an unknown handle made no node 4
    await rejects(() => p.release(4), "ENXIO");
  });
});

describe.each(kinds)("coalescing ($name peer)", (kind) => {
  it("coalesces a transfer to itself into the ID it already has", async () => {
    const { p, ha } = await pair(kind);
    expect(await p.transfer(ha)).toBe(ha);
    expect(await p.transfer(ha, p)).toBe(ha);
  });

  it("gives distinct IDs to handles of distinct nodes", async () => {
    const { p, app, hp } = await pair(kind);
    app.send(hp, undefined, { handles: [4, 8] });
    expect((await takeOne(p)).handles).toEqual([19, 27]);
  });

  it("coalesces a handle received in a message with the one already held", async () => {
    const { p, app, ha, hp } = await pair(kind);
    app.send(hp, undefined, { handles: [0x100] });
    expect((await takeOne(p)).handles).toEqual([ha]);
  });

  it("coalesces handles to one node received in two messages", async () => {
    const { p, app, hp } = await pair(kind);
    app.send(hp, enc("1"), { handles: [4] });
    app.send(hp, enc("2"), { handles: [4] });
    expect((await drain(p)).map((m) => m.handles)).toEqual([[19], [19]]);
  });

  it("coalesces a handle passed on by a third peer with the one already held", async () => {
    const { p, app, c, ha } = await pair(kind);
    const cToApp = app.transfer(0x100, c);
    // c reaches p through a handle to p's node 0x700, which p hands to app and app to c
    await p.send(ha, undefined, { handles: [0x700] });
    const appToP = takeOneLocal(app).handles[0];
    const cToPNode = app.transfer(appToP, c);
    c.send(cToPNode, enc("from c"), { handles: [cToApp] });
    const msg = await takeOne(p);
    expect([msg.destination, msg.handles]).toEqual([0x700, [ha]]);
  });

  it("gives the owner its own node's ID when a holder sends the handle back", async () => {
    const { p, app, hp } = await pair(kind);
    app.send(hp, undefined, { handles: [hp] });
    expect((await takeOne(p)).handles).toEqual([0x200]);
  });
});

describe.each(kinds)("user-references ($name peer)", (kind) => {
  it("adds one user-reference per transfer to itself", async () => {
    const { p, ha } = await pair(kind);
    await p.transfer(ha);
    await p.release(ha);
    await p.release(ha);
    await rejects(() => p.release(ha), "ENXIO", ENXIO("release", "handle", ha));
  });

  it("adds one user-reference per received message carrying the handle", async () => {
    const { p, app, hp } = await pair(kind);
    app.send(hp, undefined, { handles: [4] });
    app.send(hp, undefined, { handles: [4] });
    const h = (await drain(p))[0].handles[0];
    await p.release(h);
    await p.release(h);
    await rejects(() => p.release(h), "ENXIO", ENXIO("release", "handle", h));
  });

  it("keeps the handle while a self-transferred reference is left", async () => {
    const { p, app, ha } = await pair(kind);
    await p.transfer(ha);
    await p.release(ha);
    await p.send(ha, enc("still held"));
    expect(takeOneLocal(app).text).toBe("still held");
    await p.release(ha);
    await rejects(() => p.send(ha), "ENXIO", ENXIO("send", "destinations[0]", ha));
  });

  it("invalidates the ID once its last reference is released, and the owner hears of it", async () => {
    const { p, app, ha } = await pair(kind);
    await p.release(ha);
    await rejects(() => p.send(ha), "ENXIO");
    await rejects(() => p.transfer(ha), "ENXIO", ENXIO("transfer", "handle", ha));
    await rejects(() => p.release(ha), "ENXIO");
    expectNotification(takeLocal(app), "node-release", 0x100);
  });

  it("keeps the owner's pinned reference: releasing the last reference of a live node is EBUSY", async () => {
    const { p } = await pair(kind);
    await p.send(4, enc("create"));
    await take(p);
    await rejects(() => p.release(4), "EBUSY",
      "release: handle (4): the last reference of a live node's owner handle cannot be released (EBUSY)");
    await p.send(4, enc("still alive"));
    expect((await takeOne(p)).text).toBe("still alive");
  });

  it("is EBUSY for the owner even while other peers hold handles", async () => {
    const { p, app, hp } = await pair(kind);
    await rejects(() => p.release(0x200), "EBUSY");
    app.send(hp, enc("ok"));
    expect((await takeOne(p)).text).toBe("ok");
  });

  it("lets the owner release the references it holds above the pinned one", async () => {
    const { p } = await pair(kind);
    expect(await p.transfer(4)).toBe(4);
    expect(await p.transfer(4)).toBe(4);
    await p.release(4);
    await p.release(4);
    await rejects(() => p.release(4), "EBUSY");
  });

  it("lets the owner release its last reference once the node is destroyed", async () => {
    const { p } = await pair(kind);
    await p.transfer(4);
    await p.release(4);
    await p.destroy(4);
    await p.release(4);
    await rejects(() => p.release(4), "ENXIO", ENXIO("release", "handle", 4));
  });

  it("sends data and a handle to a node before the owner destroys it and lets go of its ID", async () => {
    // the owner (app) gets the handle back under a core-assigned ID without REMOTE (SPEC §3)
    const { p, app } = await pair(kind, (s, app) => { app.transfer(8, s); app.transfer(12, s); });
    const to8 = 19, to12 = 27;
    await p.send(to12, enc("handle"), { handles: [to8] });
    await p.send(to8, enc("data"));
    app.destroy(8);
    app.release(8);
    const first = takeOneLocal(app);
    const id = first.handles[0];
    expect(id).toBe(2 * 8 + 1); // MANAGED, not REMOTE: app's second core-assigned ID
    const second = takeOneLocal(app);
    expect([second.type, second.destination, second.text]).toEqual(["data", id, "data"]);
    expectNotification(takeLocal(app), "node-destroy", id);
    expectNote(await take(p), "node-destroy", to8);
  });

  it("fails with ENXIO to release an unknown caller-chosen ID, and never makes a node doing so", async () => {
    const { p } = await pair(kind);
    await rejects(() => p.release(12), "ENXIO", ENXIO("release", "handle", 12));
    // a node would have made this EBUSY
    await rejects(() => p.release(12), "ENXIO");
    expect(await p.transfer(12)).toBe(12);
    await expectNothing(p);
  });
});

const INVALID: [string, unknown, string][] = [
  ["-1 (HANDLE_INVALID)", -1, "-1"],
  ["a negative multiple of 4", -8, "-8"],
  ["a fraction", 1.5, "1.5"],
  ["NaN", NaN, "NaN"],
  ["Infinity", Infinity, "Infinity"],
  ["2^53 + 2", 2 ** 53 + 2, "9007199254740994"],
  ["a numeric string", "4", '"4"'],
  ["null", null, "null"],
  ["undefined", undefined, "undefined"],
];

describe.each(kinds)("invalid IDs ($name peer)", (kind) => {
  const bad = (what: string, shown: string) => `${what} (${shown}): invalid argument (EINVAL)`;

  it("rejects each invalid ID as a send destination with EINVAL and creates nothing", async () => {
    const { p } = await pair(kind);
    for (const [, id, shown] of INVALID) {
      await rejects(() => p.send([0x300, id] as never, enc("x")), "EINVAL", bad("send: destinations[1]", shown));
    }
    await rejects(() => p.release(0x300), "ENXIO");
    await expectNothing(p);
  });

  it("rejects each invalid ID as an attached handle with EINVAL and creates nothing", async () => {
    const { p } = await pair(kind);
    for (const [, id, shown] of INVALID) {
      await rejects(() => p.send(0x300, enc("x"), { handles: [0x400, id] as never }), "EINVAL", bad("send: handles[1]", shown));
    }
    await rejects(() => p.release(0x300), "ENXIO");
    await rejects(() => p.release(0x400), "ENXIO");
    await expectNothing(p);
  });

  it("rejects each invalid ID as a transfer source with EINVAL", async () => {
    const { p, app } = await pair(kind);
    for (const [, id, shown] of INVALID) await rejects(() => p.transfer(id as never), "EINVAL", bad("transfer: handle", shown));
    await expectNothing(p);
    expectEmpty(app);
  });

  it("rejects each invalid ID as a release target with EINVAL", async () => {
    const { p, ha } = await pair(kind);
    for (const [, id, shown] of INVALID) await rejects(() => p.release(id as never), "EINVAL", bad("release: handle", shown));
    await p.release(ha);
    await rejects(() => p.release(ha), "ENXIO");
  });

  it("rejects each invalid ID as a destroy target with EINVAL and destroys nothing", async () => {
    const { p, app, hp } = await pair(kind);
    for (const [, id, shown] of INVALID) {
      await rejects(() => p.destroy([0x200, id] as never), "EINVAL", bad("destroy: nodes[1]", shown));
    }
    await expectNothing(p);
    expectEmpty(app);
    app.send(hp, enc("alive"));
    expect((await takeOne(p)).text).toBe("alive");
  });
});

describe.each(kinds)("release notifications ($name peer)", (kind) => {
  it("queues node-release on it when the last other reference is released", async () => {
    const { p, app, hp } = await pair(kind);
    await expectNothing(p);
    app.release(hp);
    const msg = await take(p);
    expectNote(msg, "node-release", 0x200);
    expect(msg!.continue).toBe(false);
    await expectNothing(p);
  });

  it("queues none while another peer still holds a reference", async () => {
    const { p, app, c, hp } = await pair(kind, (s, app, c) => { void app; s.transfer(0x200, c); });
    app.release(hp);
    await expectNothing(p);
    c.release(11);
    expectNote(await take(p), "node-release", 0x200);
  });

  it("queues none while the same holder has references left", async () => {
    const { p, app, hp } = await pair(kind, (s, app) => { s.transfer(0x200, app); });
    app.release(hp);
    await expectNothing(p);
    app.release(hp);
    expectNote(await take(p), "node-release", 0x200);
  });

  it("queues none when a node is created", async () => {
    const { p, app, ha } = await pair(kind);
    await p.send(4, enc("created by send"));
    await p.send(ha, undefined, { handles: [8] });
    await p.transfer(12);
    expect((await drain(p)).map((m) => m.type)).toEqual(["data"]);
    takeLocal(app);
  });

  it("queues node-release when it drops its own extra reference of its node", async () => {
    const { p } = await pair(kind);
    expect(await p.transfer(0x300)).toBe(0x300);
    await expectNothing(p);
    await p.release(0x300);
    const msg = await take(p);
    expectNote(msg, "node-release", 0x300);
    expect(msg!.continue).toBe(false);
    await expectNothing(p);
  });

  it("counts a message in flight carrying a handle to its node as a reference", async () => {
    const { p, app, ha } = await pair(kind);
    await p.send(ha, enc("carrier"), { handles: [4] });
    await expectNothing(p);
    const msg = takeOneLocal(app);
    await expectNothing(p);
    app.release(msg.handles[0]);
    expectNote(await take(p), "node-release", 4);
  });

  it("keeps the reference of a message in flight after the previous holder released its handle", async () => {
    const { p, app, c, hp } = await pair(kind);
    const toC = c.transfer(0x100, app);
    app.send(toC, enc("pass on"), { handles: [hp] });
    app.release(hp);
    await expectNothing(p);
    const msg = takeOneLocal(c);
    c.release(msg.handles[0]);
    expectNote(await take(p), "node-release", 0x200);
  });

  it("queues node-release when a message carrying the only other reference is dropped unreceived", async () => {
    const { p, app, ha } = await pair(kind);
    await p.send(ha, enc("never read"), { handles: [4] });
    await expectNothing(p);
    // app drops its only handle to the destination of the queued message
    app.destroy(0x100, { releaseHandles: true });
    expectEmpty(app);
    const got = await drain(p);
    expect(notesOf(got)).toEqual([["node-destroy", ha], ["node-release", 4]]);
  });

  it("withdraws a queued node-release when it takes an extra reference before receiving it", async () => {
    const { p, app, hp } = await pair(kind);
    app.release(hp);
    await p.transfer(0x200);
    if (kind.served) {
      // A served peer receives on its serving side as soon as a message is ready (remote.ts "Receiving"): the
      // node-release was pushed before the transfer reached the bus, so there was nothing left to withdraw.
      expectNote(await take(p), "node-release", 0x200);
    }
    await expectNothing(p);
    // the count drops again: a new notification
    await p.release(0x200);
    expectNote(await take(p), "node-release", 0x200);
  });

  it("queues none while a message in flight carries the last other reference", async () => {
    const { p, app, c, hp } = await pair(kind, (s, app, c) => { void app; s.transfer(0x200, c); });
    const toApp = app.transfer(0x100, c);
    // the count drops to 2 (app, c), no notification; c passes its handle on and lets go: back to 2
    c.send(toApp, enc("carrier"), { handles: [11] });
    c.release(11);
    app.release(hp);
    await expectNothing(p);
    // app's old ID is gone for good: the handle comes back under a new one
    const carrier = takeOneLocal(app);
    expect(carrier.handles).toEqual([19]);
    await expectNothing(p);
    app.release(19);
    expectNote(await take(p), "node-release", 0x200);
  });

  it("queues one node-release each time the count drops after the previous one was received", async () => {
    const { p, app, ha } = await pair(kind);
    for (let round = 0; round < 3; round++) {
      await p.send(ha, undefined, { handles: [4] });
      const h = takeOneLocal(app).handles[0];
      await expectNothing(p);
      app.release(h);
      expectNote(await take(p), "node-release", 4);
      await expectNothing(p);
    }
  });

  it("queues no node-release for a node that is already destroyed", async () => {
    const { p, app, hp } = await pair(kind);
    await p.destroy(0x200);
    app.release(hp);
    const all = await drain(p);
    expect(all).toHaveLength(1);
    expectNote(all[0], "node-destroy", 0x200);
  });
});

describe.each(kinds)("no handle, no news ($name peer)", (kind) => {
  it("drops a queued node-destroy when the holder releases its handle before receiving it", async () => {
    const { p, app, hp } = await pair(kind);
    await p.destroy(0x200);
    app.release(hp);
    expectEmpty(app);
    expectNote(await take(p), "node-destroy", 0x200);
  });

  it("drops what it sent to a node destroyed with releaseHandles", async () => {
    const { p, app, ha } = await pair(kind);
    await p.send(ha, enc("late"));
    app.destroy(0x100, { releaseHandles: true });
    expectEmpty(app);
    expectNote(await take(p), "node-destroy", ha);
  });

  it("keeps delivering to it while an extra reference survives releaseHandles", async () => {
    const { p, app, hp } = await pair(kind);
    await p.transfer(0x200);
    app.send(hp, enc("late"));
    await p.destroy(0x200, { releaseHandles: true });
    expect((await drain(p)).map((m) => [m.type, m.text])).toEqual([["data", "late"], ["node-destroy", ""]]);
  });

  it("drops the node-destroy for a handle received in a message once that handle is released", async () => {
    const { p, app, ha } = await pair(kind);
    await p.send(ha, enc("carrier"), { handles: [4] });
    await p.destroy(4);
    const msg = takeOneLocal(app);
    expectRemoteId(msg.handles[0]);
    app.release(msg.handles[0]);
    expectEmpty(app);
    expectNote(await take(p), "node-destroy", 4);
  });

  it("gets the node-destroy of a handle that came in a message it has received", async () => {
    const { p, app, hp } = await pair(kind);
    app.send(hp, enc("carrier"), { handles: [4] });
    app.destroy(4);
    const carrier = await takeOne(p);
    expect(carrier.handles).toEqual([19]);
    expectNote(await take(p), "node-destroy", 19);
    await p.release(19);
    await expectNothing(p);
  });
});

describe.each(kinds)("transfer ($name peer)", (kind) => {
  it("queues nothing on either side", async () => {
    const { p, app, ha } = await pair(kind);
    expect(await p.transfer(ha)).toBe(ha);
    await expectNothing(p);
    expectEmpty(app);
  });

  it("returns HANDLE_INVALID for a destroyed node and adds no reference", async () => {
    const { p, app, ha } = await pair(kind);
    app.destroy(0x100);
    expect(await p.transfer(ha)).toBe(HANDLE_INVALID);
    await p.release(ha);
    await rejects(() => p.release(ha), "ENXIO");
  });

  it("fails with ENXIO for a source ID that names no handle", async () => {
    const { p } = await pair(kind);
    await rejects(() => p.transfer(UNKNOWN_MANAGED), "ENXIO", ENXIO("transfer", "handle", UNKNOWN_MANAGED));
  });

  it("fails with ESHUTDOWN when it is disconnected", async () => {
    const { p } = await pair(kind);
    await p.disconnect();
    await rejects(() => p.transfer(4), "ESHUTDOWN", "transfer: the peer is disconnected (ESHUTDOWN)");
  });

  it("fails with EDQUOT when it has no handle quota left for a new node, creating none", async () => {
    const { p } = await pair(kind);
    await p.reset({ limits: { maxHandles: 2 } }); // ha and the owner handle of 0x200
    await rejects(() => p.transfer(8), "EDQUOT", "transfer: handle (8): quota exceeded (EDQUOT)");
    await rejects(() => p.release(8), "ENXIO");
  });

  it("gives handles to itself only when served; a local peer may name any peer of its bus", async () => {
    const { p, app, ha } = await pair(kind);
    if (kind.served) {
      // a served peer transfers only to itself (API.md "Sandboxed peers"): any other `to` is EINVAL
      await rejects(() => p.transfer(ha, app as never), "EINVAL",
        "transfer: to must be this peer (a served peer transfers only to itself), got an object: invalid argument (EINVAL)");
      await rejects(() => p.transfer(4, app as never), "EINVAL");
      await rejects(() => p.release(4), "ENXIO");
    } else {
      const h = await p.transfer(4, app as never);
      expect(h).toBe(19);
      app.send(h, enc("through the handle"));
      expect((await takeOne(p)).text).toBe("through the handle");
    }
  });

  it.each([
    ["a plain object", {}, "an object"],
    ["a number", 7, "7"],
    ["null", null, "null"],
  ])("fails with EINVAL when `to` is %s, creating no node", async (_, to, shown) => {
    const { p } = await pair(kind);
    const message = kind.served
      ? `transfer: to must be this peer (a served peer transfers only to itself), got ${shown}: invalid argument (EINVAL)`
      : `transfer: to must be a Peer of the same bus, got ${shown}: invalid argument (EINVAL)`;
    await rejects(() => p.transfer(4, to as never), "EINVAL", message);
    await rejects(() => p.release(4), "ENXIO");
  });
});
