// Served peers (API.md "Sandboxed peers"; issue 9): serve(peer, port) on the
// trusted side, RemotePeer.connect(port) in the plugin, the wire protocol
// between them. Behaviours are written once and run on a local Peer and on a
// RemotePeer; then what only a served peer has: pushes and flow control, own
// copies, confinement, hostile port messages, plugins that die.
import { afterEach, describe, expect, it } from "vitest";
import { MessageChannel, Worker, type MessagePort } from "node:worker_threads";
import { Bus, Bus1Error, RemotePeer, type Peer } from "bus1-wasm";
import { serve } from "../dist/host-common/serve.js";
import { CALL_OPS, MAX_BATCH, MAX_PENDING_CALLS, WIRE_VERSION } from "../dist/host-common/wire.js";
import { ClientWriter, MAX_SPARES, readServerBatch } from "../dist/host-common/batch.js";
import { channel, onItems, ports, recvOne, served, servings, tick, until } from "./serving.js";
import { PEER_METHODS } from "../dist/host-common/api.js";
import { HOST_MOVES_OBJECTS, dec, enc, newBus, newSharedBus, nextMessage } from "./helpers.js";

const workers: Worker[] = [];

afterEach(async () => {
  await Promise.all(workers.splice(0).map((w) => w.terminate()));
});

/** Calls as a plugin's batch (batch.ts), all in one port message. */
function callBatch(calls: { id: number; op: string; args: unknown[] }[]) {
  const w = new ClientWriter();
  for (const c of calls) w.call(c.id, c.op as any, c.args);
  return w.takeAll().batch;
}

// ---- one set of behaviours, two kinds of peer ------------------------------------------

/** The peer operations, as promises: a local Peer wrapped, or a RemotePeer as it is. */
type AsyncPeer = { [K in (typeof PEER_METHODS)[number]]: (...args: any[]) => Promise<any> } & {
  readable(signal?: AbortSignal): Promise<void>;
  [Symbol.asyncIterator](): AsyncIterator<any>;
};

function asAsync(peer: Peer): AsyncPeer {
  const out: any = {};
  for (const m of PEER_METHODS) out[m] = async (...args: unknown[]) => (peer as any)[m](...args);
  out.readable = (s?: AbortSignal) => peer.readable(s);
  out[Symbol.asyncIterator] = () => peer[Symbol.asyncIterator]();
  return out;
}

/**
 * The world of one behaviour: `app` owns node 0x100 and holds hS to the
 * subject's node 0x200; the subject `p` (local, or served) holds hApp to 0x100.
 */
async function world(kind: "local" | "remote", shared = false) {
  const bus = shared ? await newSharedBus() : await newBus();
  const app = bus.connect();
  const s = bus.connect();
  const hApp = app.transfer(0x100, s);
  const hS = s.transfer(0x200, app);
  let p: AsyncPeer;
  if (kind === "local") p = asAsync(s);
  else p = (await RemotePeer.connect(served(s).port as any)) as unknown as AsyncPeer;
  return { bus, app, s, p, hApp, hS };
}

/** `n` bytes that differ along the way and between seeds (every byte value comes up). */
function bytes(n: number, seed: number): Uint8Array {
  return Uint8Array.from({ length: n }, (_v, i) => (i * 97 + seed) & 0xff);
}

async function outcome(f: () => Promise<unknown>): Promise<{ ok: unknown } | { code: string; message: string }> {
  try {
    return { ok: await f() };
  } catch (e) {
    expect(e).toBeInstanceOf(Bus1Error);
    return { code: (e as Bus1Error).code, message: (e as Bus1Error).message };
  }
}

const KINDS = ["local", "remote"] as const;

describe.each(KINDS)("a %s peer", (kind) => {
  it("sends to a node it holds a handle to", async () => {
    const { app, p, hApp } = await world(kind);
    expect(await p.send(hApp, enc("hi"))).toEqual({ errors: [null] });
    expect(await p.send([hApp], [enc("a"), enc("b")], { continue: true })).toEqual({ errors: [null] });
    const m = app.recv()!;
    expect([m.type, m.destination, dec(m.payload)]).toEqual(["data", 0x100, "hi"]);
  });

  it("receives what reaches its nodes, in order, and null when nothing is ready", async () => {
    const { app, p, hS } = await world(kind);
    for (let i = 0; i < 5; i++) app.send(hS, enc(`m${i}`));
    const got: string[] = [];
    for (let i = 0; i < 5; i++) {
      const m = await p.recv();
      expect([m.type, m.destination, m.offset >= 0]).toEqual(["data", 0x200, true]);
      got.push(dec(m.payload));
      m.release();
    }
    expect(got).toEqual(["m0", "m1", "m2", "m3", "m4"]);
    expect(await p.recv()).toBeNull();
  });

  it("carries every byte value both ways, at and around the size where a batch's bytes stop going inline", async () => {
    const { app, p, hS, hApp } = await world(kind);
    for (const n of [0, 1, 63, 64, 65, 256]) {
      app.send(hS, bytes(n, n));
      const m = await recvOne(p);
      expect([...m.payload]).toEqual([...bytes(n, n)]);
      m.release();
      expect(await p.send(hApp, bytes(n, n + 1))).toEqual({ errors: [null] });
      const back = app.recv()!;
      expect([...back.payload]).toEqual([...bytes(n, n + 1)]);
      back.release();
    }
    // several small ones in one turn share one batch (32 + 32 bytes inline, then one that tips it over)
    const sends = [p.send(hApp, bytes(32, 1)), p.send(hApp, bytes(32, 2)), p.send(hApp, bytes(1, 3))];
    await Promise.all(sends);
    for (const [n, seed] of [[32, 1], [32, 2], [1, 3]]) {
      const m = app.recv()!;
      expect([...m.payload]).toEqual([...bytes(n, seed)]);
      m.release();
    }
  });

  it("receives handles it can send to, and notifications", async () => {
    const { app, p, hS, hApp } = await world(kind);
    app.send(hS, enc("h"), { handles: [0x300] });
    const m = await p.recv();
    expect(m.handles.length).toBe(1);
    await p.send(m.handles[0], enc("back"));
    expect(app.recv()!.destination).toBe(0x300);
    app.destroy(0x100);
    const n = await recvOne(p);
    expect([n.type, n.destination, n.offset, n.payload.byteLength]).toEqual(["node-destroy", hApp, -1, 0]);
  });

  it("transfers to itself, releases, destroys, resets, queries and counts", async () => {
    const { p } = await world(kind);
    const h = await p.transfer(0x400);
    expect(typeof h).toBe("number");
    await p.release(h);
    await p.destroy(0x400);
    await p.reset({ limits: { maxSlices: 77 }, flush: true });
    expect((await p.query()).maxSlices).toBe(77);
    expect(Object.keys(await p.stats()).sort()).toEqual(
      ["bytes", "handleIds", "handleRecords", "handles", "liveSlices", "objects", "poolBytes", "slices"]);
  });

  it("sets and reads its seed", async () => {
    const { p } = await world(kind);
    await p.send([], enc("seed"), { seed: true });
    const m = await p.recv({ seed: true });
    expect(dec(m.payload)).toBe("seed");
    expect((await outcome(() => p.releaseSlice(m.offset))) as any).toMatchObject({ code: "EPERM" });
    expect(await p.recv()).toBeNull();
  });

  it("says readable when a message arrives, and iterates until disconnected", async () => {
    const { app, p, hS } = await world(kind);
    const r = p.readable();
    setTimeout(() => app.send(hS, enc("later")), 5);
    await r;
    const seen: string[] = [];
    setTimeout(() => { app.send(hS, enc("two")); setTimeout(() => p.disconnect(), 5); }, 5);
    for await (const m of p as AsyncIterable<any>) seen.push(m.type === "data" ? dec(m.payload) : m.type);
    expect(seen).toEqual(["later", "two"]);
  });

  it("rejects an aborted readable with the signal's reason", async () => {
    const { p } = await world(kind);
    const ac = new AbortController();
    const r = p.readable(ac.signal);
    ac.abort(new Error("stop"));
    await expect(r).rejects.toThrow("stop");
  });

  it("is ESHUTDOWN after disconnect and EBADF after close", async () => {
    const { p, hApp } = await world(kind);
    await p.disconnect();
    expect(await outcome(() => p.send(hApp))).toMatchObject({ code: "ESHUTDOWN" });
    expect(await outcome(() => p.recv())).toMatchObject({ code: "ESHUTDOWN" });
    await p.close();
    await p.close();
    expect(await outcome(() => p.send(hApp))).toMatchObject({ code: "EBADF" });
  });
});

// Bad arguments: the same code and the same message from both kinds of peer.
const BAD: [string, (w: any) => Promise<unknown>][] = [
  ["send to a string", (w) => w.p.send("x")],
  ["send of a string payload", (w) => w.p.send(w.hApp, "str")],
  ["send with an unknown option", (w) => w.p.send(w.hApp, enc(""), { bogus: 1 })],
  ["send with a numeric continue", (w) => w.p.send(w.hApp, undefined, { continue: 1 })],
  ["send to 65537 destinations", (w) => w.p.send(new Array(65537).fill(w.hApp))],
  ["send to an unknown handle", (w) => w.p.send(2 ** 40 + 3)],
  ["send of a vec that is a number", (w) => w.p.send(w.hApp, [enc("a"), 5])],
  ["send with a fractional handle", (w) => w.p.send(w.hApp, undefined, { handles: [7.5] })],
  ["send to a destination twice", (w) => w.p.send([w.hApp, w.hApp])],
  ["send with 257 objects", (w) => w.p.send(w.hApp, undefined, { objects: new Array(257).fill(1) })],
  ["send of a seed with destinations", (w) => w.p.send([w.hApp], enc("s"), { seed: true })],
  ["send of a seed with continue", (w) => w.p.send([], enc("s"), { seed: true, continue: true })],
  ["recv with a string seed", (w) => w.p.recv({ seed: "yes" })],
  ["recv with options that are a number", (w) => w.p.recv(5)],
  ["recv with an unknown option", (w) => w.p.recv({ x: 1 })],
  ["transfer of a string", (w) => w.p.transfer("h")],
  ["transfer of an unknown handle", (w) => w.p.transfer(2 ** 40 + 3)],
  ["release of HANDLE_INVALID", (w) => w.p.release(-1)],
  ["release of an owner's last reference", (w) => w.p.release(0x200)],
  ["destroy of a node it does not own", (w) => w.p.destroy(w.hApp)],
  ["destroy of a string", (w) => w.p.destroy("n")],
  ["destroy of a node twice", (w) => w.p.destroy([0x200, 0x200])],
  ["destroy with a numeric releaseHandles", (w) => w.p.destroy(0x200, { releaseHandles: 2 })],
  ["destroy of 2^20 + 1 nodes", (w) => w.p.destroy({ length: 2 ** 20 + 1 })],
  ["releaseSlice of an offset that is no slice", (w) => w.p.releaseSlice(16)],
  ["releaseSlice of a string", (w) => w.p.releaseSlice("x")],
  ["releaseSlice of 2^60", (w) => w.p.releaseSlice(2 ** 60)],
  ["reset with a negative limit", (w) => w.p.reset({ limits: { maxSlices: -1 } })],
  ["reset with a string flush", (w) => w.p.reset({ flush: "y" })],
  ["reset with options that are a number", (w) => w.p.reset(7)],
  ["a getter that throws", (w) => w.p.send(w.hApp, undefined, { get handles() { throw new Error("boom"); } })],
];

describe("bad arguments", () => {
  it.each(BAD)("%s: the same Bus1Error from a local and a served peer", async (_name, call) => {
    const wl = await world("local"), wr = await world("remote");
    const local = await outcome(() => call(wl));
    const remote = await outcome(() => call(wr));
    expect("code" in local, "the call must fail").toBe(true);
    expect(remote).toEqual(local);
  });

  it("never throws synchronously: every bad call is a rejected promise", async () => {
    const { p } = await world("remote");
    const junk = [undefined, null, NaN, "x", {}, [], Symbol("s"), () => 0, 10n, true];
    for (const m of PEER_METHODS) {
      for (const x of junk) {
        let sync = false;
        let promise: Promise<unknown> | undefined;
        try {
          promise = (p as any)[m](x, x, x);
        } catch {
          sync = true;
        }
        expect(sync, `${m}(${String(typeof x)})`).toBe(false);
        await promise!.catch((e) => expect(e).toBeInstanceOf(Bus1Error));
      }
    }
    // a method taken off its object
    await expect((RemotePeer.prototype.send as any).call({}, 1)).rejects.toMatchObject({ code: "EINVAL" });
  });
});

// ---- what only a served peer has ------------------------------------------------------

describe("the wire protocol", () => {
  it("refuses another protocol version at connect with a clear EINVAL", async () => {
    const { port1, port2 } = channel();
    port1.on("message", (m: any) => { if (m.t === "hello") port1.postMessage({ t: "welcome", version: WIRE_VERSION + 1, window: null }); });
    const e = await outcome(() => RemotePeer.connect(port2 as any));
    expect(e).toMatchObject({ code: "EINVAL" });
    expect((e as any).message).toContain(`protocol version ${WIRE_VERSION + 1}`);
  });

  it("answers a hello of another version with its own and ends the serving, closing the peer", async () => {
    const bus = await newBus();
    const peers = bus.stats().peers;
    const s = bus.connect();
    const { serving, port } = served(s);
    const seen: any[] = [];
    port.on("message", (m) => seen.push(m));
    port.postMessage({ t: "hello", version: 999, window: null });
    expect(await serving.closed).toContain("version 999");
    await until(() => seen.length >= 2);
    expect(seen[0]).toMatchObject({ t: "welcome", version: WIRE_VERSION });
    expect(seen[1]).toMatchObject({ t: "close" });
    expect(s.closed).toBe(true);
    expect(bus.stats().peers).toBe(peers);
  });

  it("rejects connect when the port closes before the welcome", async () => {
    const { port1, port2 } = channel();
    setTimeout(() => port1.close(), 5);
    expect(await outcome(() => RemotePeer.connect(port2 as any))).toMatchObject({ code: "ESHUTDOWN" });
  });

  it("bus.serve serves a peer of this bus only, and the package exports RemotePeer", async () => {
    const bus = await newBus();
    const other = await newBus();
    const mine = bus.connect();
    const theirs = other.connect();
    expect(() => bus.serve(theirs, channel().port1 as any)).toThrow(/EINVAL.*|peer must be a Peer of this bus/);
    expect(() => bus.serve({} as any, channel().port1 as any)).toThrow(Bus1Error);
    const { port1, port2 } = channel();
    const serving = bus.serve(mine, port1 as any);
    servings.push(serving);
    const remote = await RemotePeer.connect(port2);
    const h = await remote.transfer(4);
    await remote.send(h, enc("to myself"));
    const m = await remote.recv();
    expect(dec(m!.payload)).toBe("to myself");
    await remote.close();
  });

  it("rejects a port that is not one, and a serve of a closed reference", async () => {
    const bus = await newBus();
    expect(await outcome(() => RemotePeer.connect({} as any))).toMatchObject({ code: "EINVAL" });
    const s = bus.connect();
    expect(() => serve(s, {} as any)).toThrow(Bus1Error);
    s.close();
    expect(() => serve(s, channel().port1 as any)).toThrow(/EBADF/);
  });
});

describe("pushed messages", () => {
  it("arrive in the order of the peer's queue, notifications included", async () => {
    const { app, p, hS } = await world("remote");
    const expected: string[] = [];
    for (let i = 0; i < 1000; i++) {
      app.send(hS, enc(`m${i}`), i % 100 === 0 ? { handles: [0x1000 + i * 2] } : undefined);
      expected.push(`m${i}`);
    }
    const got: string[] = [];
    while (got.length < 1000) {
      const m = await p.recv();
      if (!m) { await p.readable(); continue; }
      got.push(dec(m.payload));
    }
    expect(got).toEqual(expected);
  });

  it("are the plugin's own copies: no view of the bus memory, the slice released as pushed", async () => {
    const { app, s, p, hS } = await world("remote", true);
    app.send(hS, enc("copy me"));
    const m = await recvOne(p);
    expect(m.payload.buffer).toBeInstanceOf(ArrayBuffer);
    expect(m.payload.buffer).not.toBeInstanceOf(SharedArrayBuffer);
    expect(m.payload.buffer.byteLength).toBe(7);
    expect(dec(m.payload)).toBe("copy me");
    // never released by the plugin: nothing is held on the trusted side
    expect(s.stats()).toMatchObject({ liveSlices: 0, slices: 0, bytes: 0 });
    await p.releaseSlice(m.offset); // its alias: nothing to free
    expect(m.offset).toBeGreaterThanOrEqual(2 ** 32);
  });

  it("stop at the window and go on with credit (flow control, not an error)", async () => {
    const bus = await newBus();
    const app = bus.connect();
    const s = bus.connect();
    const hS = s.transfer(0x200, app);
    const { port } = served(s, { maxMessagesInFlight: 4, maxBytesInFlight: 100 });
    const pushes: any[] = [];
    const welcome: any[] = [];
    onItems(port, (m: any) => (m.t === "push" ? pushes : welcome).push(m));
    port.postMessage({ t: "hello", version: WIRE_VERSION, window: { messages: 1000, bytes: 1 << 30, objects: 1000 } });
    await until(() => welcome.length > 0);
    expect(welcome[0].window).toEqual({ messages: 4, bytes: 100, objects: 1000 });
    for (let i = 0; i < 20; i++) app.send(hS, new Uint8Array(10));
    await until(() => pushes.length === 4);
    await tick(20);
    expect(pushes.length).toBe(4);
    // what is not pushed waits in the peer's queue, charged there
    expect(s.stats().slices).toBe(16);
    port.postMessage({ t: "credit", messages: 2, bytes: 20, objects: 0 });
    await until(() => pushes.length === 6);
    await tick(20);
    expect(pushes.length).toBe(6);
    // bytes: at most the window plus one message
    port.postMessage({ t: "credit", messages: 6, bytes: 60, objects: 0 });
    for (let i = 0; i < 3; i++) app.send(hS, new Uint8Array(60));
    await tick(30);
    const inFlight = pushes.slice(6).reduce((n, m) => n + m.payload.byteLength, 0);
    expect(inFlight).toBeLessThanOrEqual(100 + 60);
  });

  it("are received without a round trip while pushed ones wait", async () => {
    const bus = await newBus();
    const app = bus.connect();
    const s = bus.connect();
    const hS = s.transfer(0x200, app);
    const { port } = served(s);
    const posted: string[] = [];
    const post = port.postMessage.bind(port);
    (port as any).postMessage = (m: any, t?: any) => {
      // a batch's items are opened by their kinds (batch.ts): 1 a call (its op the third word), 2 credit, 3 pong,
      // 11 buffers given back
      if (!Array.isArray(m)) posted.push(m.t);
      else for (let i = 0, w = m[0]; i < w.length; i += w[i] === 1 ? 6 : w[i] === 2 ? 4 : w[i] === 11 ? 2 : 1) {
        posted.push(w[i] === 1 ? CALL_OPS[w[i + 2]] : w[i] === 2 ? "credit" : w[i] === 11 ? "spare" : "pong");
      }
      return post(m, t);
    };
    const p = await RemotePeer.connect(port as any);
    for (let i = 0; i < 50; i++) app.send(hS, enc(`m${i}`));
    await p.readable();
    await until(() => s.stats().slices === 0, 2000, "every message pushed");
    await tick(20); // and arrived
    posted.length = 0;
    for (let i = 0; i < 50; i++) expect(dec((await p.recv())!.payload)).toBe(`m${i}`);
    expect(posted.filter((t) => t !== "credit" && t !== "spare")).toEqual([]);
    expect(await p.recv()).toBeNull(); // nothing waits: now it asks
    expect(posted.filter((t) => t !== "credit" && t !== "spare")).toEqual(["recv"]);
  });

  it("a loop of sends in one turn costs two posts: the first at once, the rest together", async () => {
    const bus = await newBus();
    const app = bus.connect();
    const s = bus.connect();
    const hApp = app.transfer(0x100, s);
    const { port } = served(s);
    const p = await RemotePeer.connect(port as any);
    let posts = 0;
    const post = port.postMessage.bind(port);
    (port as any).postMessage = (m: any, t?: any) => { posts++; return post(m, t); };
    const sent = [];
    for (let i = 0; i < 20; i++) sent.push(p.send(hApp, enc(`s${i}`)));
    // one with objects goes alone, after what is queued
    sent.push(p.send(hApp, enc("with an object"), { objects: [{ a: 1 }] }));
    await Promise.all(sent);
    expect(posts).toBe(3);
    for (let i = 0; i < 20; i++) expect(dec(app.recv()!.payload)).toBe(`s${i}`);
    const last = app.recv()!;
    expect(dec(last.payload)).toBe("with an object");
    expect(last.objects).toEqual([{ a: 1 }]);
  });

  it("stop at the objects window too", async () => {
    const bus = await newBus();
    const app = bus.connect();
    const s = bus.connect();
    const hS = s.transfer(0x200, app);
    const { port } = served(s, { maxObjectsInFlight: 3 });
    const pushes: any[] = [];
    onItems(port, (m: any) => { if (m.t === "push") pushes.push(m); });
    port.postMessage({ t: "hello", version: WIRE_VERSION, window: null });
    for (let i = 0; i < 5; i++) app.send(hS, undefined, { objects: [i, { i }] });
    await until(() => pushes.length === 2);
    await tick(20);
    expect(pushes.map((m) => m.objects)).toEqual([[0, { i: 0 }], [1, { i: 1 }]]);
    port.postMessage({ t: "credit", messages: 2, bytes: 0, objects: 4 });
    await until(() => pushes.length === 4);
  });

  it("a plugin that reads keeps the stream going within a small window", async () => {
    const bus = await newBus();
    const app = bus.connect();
    const s = bus.connect();
    const hS = s.transfer(0x200, app);
    const p = await RemotePeer.connect(served(s, { maxMessagesInFlight: 2, maxBytesInFlight: 64 }).port as any);
    let n = 0;
    const reader = (async () => { for await (const m of p) if (++n === 300 || m.type !== "data") break; })();
    for (let i = 0; i < 300; i++) {
      app.send(hS, new Uint8Array(48));
      if (i % 50 === 0) await tick(0);
    }
    await reader;
    expect(n).toBe(300);
  });

  it("bounds the calls waiting for an answer (EAGAIN past MAX_PENDING_CALLS)", async () => {
    const { p } = await world("remote");
    const calls = Array.from({ length: 1025 }, () => outcome(() => p.query()));
    const results = await Promise.all(calls);
    expect(results.filter((r) => "code" in r && r.code === "EAGAIN").length).toBe(1);
    expect(results.filter((r) => "ok" in r).length).toBe(1024);
  });
});

describe("batches and bounds of the serving side", () => {
  it("pushes what is ready in one post, its payloads in one transferred buffer", async () => {
    const bus = await newBus();
    const app = bus.connect();
    const s = bus.connect();
    const hS = s.transfer(0x200, app);
    const { port } = served(s);
    const posts: any[] = [];
    port.on("message", (m: any) => posts.push(m));
    port.postMessage({ t: "hello", version: WIRE_VERSION, window: null });
    await until(() => posts.length === 1); // the welcome
    for (let i = 0; i < 100; i++) app.send(hS, enc(`m${i}`));
    await until(() => posts.length === 2);
    await tick(20);
    expect(posts.length).toBe(2);
    const [words, data, extras] = posts[1];
    expect(Array.isArray(words)).toBe(true);
    expect(extras).toBeNull();
    expect(data).toBeInstanceOf(ArrayBuffer);
    expect(data.byteLength).toBe(100 * 2 + 90);
    const b = readServerBatch(posts[1]);
    expect(b.ok && b.messages.map((m: any) => dec(m.payload))).toEqual(Array.from({ length: 100 }, (_v, i) => `m${i}`));
  });

  it("splits a burst larger than a post into several, in order", async () => {
    const { app, p, hS, s } = await world("remote");
    const big = new Uint8Array(200_000);
    for (let i = 0; i < 12; i++) {
      big[0] = i;
      app.send(hS, big);
    }
    for (let i = 0; i < 12; i++) {
      const m = await recvOne(p);
      expect([m.payload.length, m.payload[0]]).toEqual([200_000, i]);
    }
    expect(s.stats()).toMatchObject({ slices: 0, bytes: 0 });
  });

  it("does at most TURN_ITEMS calls in one turn: the rest EAGAIN, a flood ends the serving", async () => {
    const bus = await newBus();
    const s = bus.connect();
    const { serving, port } = served(s, { livenessMs: 0 });
    const answers: any[] = [];
    onItems(port, (m: any) => { if (m.t === "done" || m.t === "fail") answers.push(m); });
    port.postMessage({ t: "hello", version: WIRE_VERSION, window: null });
    await tick(20); // the hello's turn is over
    const turn = 2 * MAX_PENDING_CALLS;
    // 3000 calls in one post, as a plugin that does not wait for answers could send them
    port.postMessage(callBatch(Array.from({ length: 3000 }, (_v, i) => ({ id: i, op: "query", args: [] }))));
    await until(() => answers.length === 3000);
    expect(answers.filter((a) => a.t === "done").length).toBe(turn);
    const refused = answers.filter((a) => a.t === "fail");
    expect(refused.length).toBe(3000 - turn);
    expect(refused[0]).toMatchObject({ code: "EAGAIN" });
    expect(refused[0].message).toContain("more than the serving side does in one turn");
    expect(s.closed).toBe(false);
    // the next turn has its own bound
    port.postMessage(callBatch([{ id: 5000, op: "query", args: [] }]));
    await until(() => answers.length === 3001);
    expect(answers[3000]).toMatchObject({ t: "done", id: 5000 });
    // a plugin that goes on regardless in one turn is cut off
    const flood = callBatch(Array.from({ length: 4096 }, (_v, i) => ({ id: i, op: "query", args: [] })));
    port.postMessage(flood);
    port.postMessage(flood);
    port.postMessage(flood);
    expect(await serving.closed).toContain(`more than ${4 * turn} calls in one turn`);
    expect(s.closed).toBe(true);
  });

  it("bounds the work of one turn, not only its calls: calls that share one huge list are EAGAIN past one", async () => {
    const bus = await newBus();
    const s = bus.connect();
    const { port } = served(s, { livenessMs: 0 });
    const answers: any[] = [];
    onItems(port, (m: any) => { if (m.t === "done" || m.t === "fail") answers.push(m); });
    port.postMessage({ t: "hello", version: WIRE_VERSION, window: null });
    await tick(20);
    const huge = Array.from({ length: 1 << 20 }, (_v, i) => 0x1000 + 2 * i); // nodes it does not own: ENXIO
    const words: number[] = [];
    for (let i = 0; i < 8; i++) words.push(1, i, CALL_OPS.indexOf("destroy"), -1, 0, 0);
    const t0 = performance.now();
    port.postMessage([words, null, [[huge]]]);
    await until(() => answers.length === 8, 10_000);
    expect(answers.map((a) => a.code)).toEqual(["ENXIO", ...new Array(7).fill("EAGAIN")]);
    expect(performance.now() - t0).toBeLessThan(2000);
  });

  it("refuses a batch that is not one: too long, cut short, sparse, or with bad data", async () => {
    const pongs = (n: number) => [new Array(n).fill(3), null, null];
    for (const [bad, why] of [
      [pongs(MAX_BATCH + 1), "more than"],
      [[[1, 5, 0, -1, 0], null, null], "cut short"],
      [[Object.assign([], { length: 3 }), null, null], "batch: "],
      [["no", null, null], "words must be"],
      [[[], 5, null], "data must be"],
      [[[], "x".repeat(65), null], "data must be"], // inline bytes: at most 64
      [[[], "\u0100", null], "data must be"], // inline bytes: one byte per character
      [[[], null, {}], "extras must be"],
      [[[3], null], "must be [words, data, extras]"],
      [[[99], null, null], "unknown item kind 99"],
      [[[2, 1, -1, 0], null, null], "credit: "],
      [[[1, -1, 0, -1, 0, -1], null, null], "id must be"],
      // buffers given back (SPARE, 11): an array of at most MAX_SPARES plain, non-empty ArrayBuffers
      [[[11, 0], null, ["no"]], "spare: "],
      [[[11, 1], null, [[]]], "spare: "],
      [[[11, 0], null, [[new SharedArrayBuffer(8)]]], "spare: "],
      [[[11, 0], null, [[new Uint8Array(8)]]], "spare: "],
      [[[11, 0], null, [[new ArrayBuffer(0)]]], "spare: "],
      [[[11, 0], null, [[new ArrayBuffer(8, { maxByteLength: 16 } as any)]]], "spare: "],
      [[[11, 0], null, [Array.from({ length: MAX_SPARES + 1 }, () => new ArrayBuffer(8))]], "spare: "],
      [[[11, 0], null, [Object.assign([], { length: 1 })]], "spare: "],
    ] as const) {
      const bus = await newBus();
      const s = bus.connect();
      const { serving, port } = served(s);
      port.postMessage({ t: "hello", version: WIRE_VERSION, window: null });
      port.postMessage(bad);
      const reason = await serving.closed;
      expect(reason).toContain("protocol error: batch");
      expect(reason).toContain(why);
      expect(s.closed).toBe(true);
    }
  });

  it("answers a well-formed call with bad insides EINVAL, and goes on with the batch", async () => {
    const bus = await newBus();
    const s = bus.connect();
    const { serving, port } = served(s);
    const answers: any[] = [];
    onItems(port, (m: any) => { if (m.t === "done" || m.t === "fail") answers.push(m); });
    port.postMessage({ t: "hello", version: WIRE_VERSION, window: null });
    port.postMessage([[
      1, 1, 999, -1, 0, -1, // no such operation
      1, 2, 0, 5, 10, -1, // a payload that is not in the data
      1, 3, 1, 0, 4, -1, // a payload for a recv
      1, 4, 0, -1, 0, 7, // arguments that are not in the extras
      1, 5, 0, -1, 0, 0, // arguments that are not an array
      1, 6, CALL_OPS.indexOf("query"), -1, 0, -1, // and a good call after them
    ], null, ["not an array"]]);
    await until(() => answers.length === 6);
    expect(answers.map((a) => [a.id, a.t, a.code])).toEqual([
      [1, "fail", "EINVAL"], [2, "fail", "EINVAL"], [3, "fail", "EINVAL"], [4, "fail", "EINVAL"], [5, "fail", "EINVAL"],
      [6, "done", undefined]]);
    expect(s.closed).toBe(false);
    serving.close();
  });

  it("counts seed copies in the turn's work: a flood of seed reads is EAGAIN past it, not copies", async () => {
    const bus = await newBus();
    const s = bus.connect();
    s.send([], new Uint8Array(1 << 20), { seed: true });
    const { port } = served(s, { maxMessagesInFlight: 3, livenessMs: 0 });
    const answers: any[] = [];
    onItems(port, (m: any) => { if (m.t === "done" || m.t === "fail") answers.push(m); });
    port.postMessage({ t: "hello", version: WIRE_VERSION, window: null });
    await tick(20);
    // a 1 MiB seed is 16384 of the turn's work: 64 copies fit a turn, the rest wait for the next
    port.postMessage(callBatch(Array.from({ length: 100 }, (_v, i) => ({ id: i, op: "recv", args: [{ seed: true }] }))));
    await until(() => answers.length === 100);
    const copies = answers.filter((a) => a.t === "done").length;
    expect(copies).toBeGreaterThan(0);
    expect(copies).toBeLessThan(100);
    expect(answers[0].value.payload.byteLength).toBe(1 << 20);
    expect(answers.find((a) => a.t === "fail")).toMatchObject({ code: "EAGAIN" });
    // the next turn reads it again
    port.postMessage(callBatch([{ id: 900, op: "recv", args: [{ seed: true }] }]));
    await until(() => answers.length === 101);
    expect(answers[100]).toMatchObject({ t: "done", id: 900 });
  });

  it("a RemotePeer reads its seed again and again: the copies are credited as they are taken", async () => {
    const { p, s } = await world("remote");
    s.send([], enc("seed"), { seed: true });
    for (let i = 0; i < 600; i++) expect(dec((await p.recv({ seed: true }))!.payload)).toBe("seed");
  });

  it("the plugin finds a serving side that answers nothing gone, within three liveness periods", async () => {
    const { port1, port2 } = channel();
    port1.on("message", (m: any) => {
      if (m?.t === "hello") port1.postMessage({ t: "welcome", version: WIRE_VERSION, window: m.window, liveness: 30 });
      // and then never a word: no pings, no answers
    });
    const remote = await RemotePeer.connect(port2 as any);
    const t0 = Date.now();
    const call = outcome(() => remote.query());
    const readable = outcome(() => remote.readable());
    expect(await call).toMatchObject({ code: "ESHUTDOWN" });
    expect((await call as any).message).toContain("answered nothing");
    expect(await readable).toMatchObject({ code: "ESHUTDOWN" });
    expect(Date.now() - t0).toBeLessThan(500);
  });

  it("a serving side that pings keeps an idle plugin connected", async () => {
    const bus = await newBus();
    const s = bus.connect();
    const { port } = served(s, { livenessMs: 20 });
    const remote = await RemotePeer.connect(port as any);
    await tick(200);
    expect(await remote.query()).toMatchObject({ maxSlices: expect.any(Number) });
  });

  it("bounds the bytes of one send's objects (maxObjectBytes, EMSGSIZE), however they are nested", async () => {
    const bus = await newBus();
    const app = bus.connect();
    const s = bus.connect();
    const hApp = app.transfer(0x100, s);
    const p = await RemotePeer.connect(served(s, { maxObjectBytes: 64 << 10 }).port as any);
    await p.send(hApp, undefined, { objects: [new ArrayBuffer(60 << 10)] });
    for (const big of [[new ArrayBuffer(65 << 10)], [{ deep: [[new Uint8Array(40 << 10)], "x".repeat(20 << 10)] }],
      [new Map([[1, new Array(10_000).fill(1)]])]]) {
      const e = await outcome(() => p.send(hApp, undefined, { objects: big }));
      expect(e).toMatchObject({ code: "EMSGSIZE" });
      expect((e as any).message).toContain("maxObjectBytes");
    }
    expect(app.recv()!.objects[0]).toBeInstanceOf(ArrayBuffer);
    expect(app.recv()).toBeNull();
    expect(() => serve(bus.connect(), channel().port1 as any, { maxObjectBytes: 0 })).toThrow(/EINVAL/);
  });

  it("a message whose port cannot be posted arrives with EOPNOTSUPP in its place, the others as they were", async () => {
    const { app, p, hS } = await world("remote");
    const ch = channel();
    app.send(hS, enc("before"));
    app.send(hS, enc("with a port"), { objects: [ch.port1, { kept: true }] });
    app.send(hS, enc("after"));
    // the port leaves this thread before the serving side pushes the message: it cannot be transferred
    const elsewhere = channel();
    elsewhere.port1.postMessage(null, [ch.port1]);
    const got = [];
    for (let i = 0; i < 3; i++) got.push(await recvOne(p));
    expect(got.map((m) => dec(m.payload))).toEqual(["before", "with a port", "after"]);
    expect(got[1].objects[0]).toBeInstanceOf(Bus1Error);
    expect(got[1].objects[0].code).toBe("EOPNOTSUPP");
    expect(got[1].objects[1]).toEqual({ kept: true });
  });
});

describe("objects through a served peer", () => {
  it("carry ports by transfer and values by clone, both ways; shared memory never crosses", async () => {
    const { app, p, hS, hApp } = await world("remote", true);
    const ch = channel();
    app.send(hS, enc("o"), { objects: [{ a: 1 }, ch.port1, new SharedArrayBuffer(8), () => 0] });
    const m = await recvOne(p);
    expect(m.objects[0]).toEqual({ a: 1 });
    expect(m.objects[2]).toBeInstanceOf(Bus1Error);
    expect(m.objects[2].code).toBe("EOPNOTSUPP");
    expect(m.objects[3]).toBeInstanceOf(Bus1Error);
    if (HOST_MOVES_OBJECTS) {
      const port = m.objects[1] as MessagePort;
      ports.push(port);
      const echoed = nextMessage(ch.port2);
      port.postMessage("through the port");
      expect(await echoed).toBe("through the port");
    } else {
      // no Courier (HOST_MOVES_OBJECTS): the port stays with the app, the plugin gets EOPNOTSUPP
      expect(m.objects[1]).toBeInstanceOf(Bus1Error);
      expect(m.objects[1].code).toBe("EOPNOTSUPP");
    }
    await p.send(hApp, undefined, { objects: [{ b: 2 }] });
    expect(app.recv()!.objects).toEqual([{ b: 2 }]);
    expect(await outcome(() => p.send(hApp, undefined, { objects: [p] }))).toMatchObject({ code: "EOPNOTSUPP" });
  });
});

describe("objects that move to a served peer", () => {
  it("a port multicast to a served peer and a local one stays with the local one: the plugin gets EOPNOTSUPP", async () => {
    const { bus, app, p, hS } = await world("remote");
    const local = bus.connect();
    const hL = local.transfer(0x300, app);
    const ch = channel();
    app.send([hS, hL], enc("both"), { objects: [ch.port1, { v: 1 }] });
    const m = await recvOne(p);
    expect(m.objects[0]).toBeInstanceOf(Bus1Error);
    expect(m.objects[0].code).toBe("EOPNOTSUPP");
    expect(m.objects[0].message).toContain("another receiver");
    expect(m.objects[1]).toEqual({ v: 1 });
    const l = local.recv()!;
    const port = l.objects[0] as MessagePort;
    expect(port).toBe(ch.port1); // the same object, alive
    const echoed = new Promise((r) => ch.port2.once("message", r));
    port.postMessage("still mine");
    expect(await echoed).toBe("still mine");
    l.release();
  });

  it("a port sent to the served peer alone moves to the plugin, and a listed ArrayBuffer is transferred", async () => {
    const { app, p, hS } = await world("remote");
    const ch = channel();
    const buf = new Uint8Array([1, 2, 3]).buffer;
    app.send(hS, enc("one"), { objects: [ch.port1, buf], transfer: [buf] } as any);
    const m = await recvOne(p);
    expect([...new Uint8Array(m.objects[1] as ArrayBuffer)]).toEqual([1, 2, 3]);
    if (!HOST_MOVES_OBJECTS) {
      // no Courier: nothing moves; the port stays with the app (EOPNOTSUPP to the plugin), the buffer is copied
      expect(m.objects[0]).toBeInstanceOf(Bus1Error);
      expect(m.objects[0].code).toBe("EOPNOTSUPP");
      expect(buf.byteLength).toBe(3);
      return;
    }
    expect(m.objects[0]).not.toBeInstanceOf(Bus1Error);
    expect(buf.byteLength).toBe(0); // moved, not copied
    const echoed = nextMessage(ch.port2);
    (m.objects[0] as MessagePort).postMessage("from the plugin");
    expect(await echoed).toBe("from the plugin");
    (m.objects[0] as MessagePort).close();
  });
});

describe("payloads of one batch", () => {
  it("each have a buffer of their own: transferring one message's payload.buffer away takes no other's bytes", async () => {
    const { app, p, hS } = await world("remote");
    // sent in one turn: one batch, 3 × 100 bytes in one transferred buffer
    for (let i = 0; i < 3; i++) app.send(hS, bytes(100, i));
    const got = [];
    for (let i = 0; i < 3; i++) {
      const m = await recvOne(p);
      expect([...m.payload]).toEqual([...bytes(100, i)]);
      expect(m.payload.buffer.byteLength).toBe(100);
      got.push(m.payload.buffer);
      // the plugin forwards the bytes to another thread by transfer
      new MessageChannel().port1.postMessage(m.payload.buffer, [m.payload.buffer]);
      expect(m.payload.byteLength).toBe(0);
    }
    expect(new Set(got).size).toBe(3);
    // a message alone in its batch keeps the buffer it came in
    app.send(hS, bytes(1000, 7));
    const alone = await recvOne(p);
    expect([...alone.payload]).toEqual([...bytes(1000, 7)]);
    expect(alone.payload.buffer.byteLength).toBe(1000);
  });
});

describe("buffers that go back (batch.ts, \"Buffers go back\")", () => {
  it("a released payload's buffer carries a later push, up to twice its bytes; the payload is empty after", async () => {
    const { app, p, hS } = await world("remote");
    app.send(hS, new Uint8Array(10_000).fill(0xaa));
    const a = await recvOne(p);
    expect(a.payload.buffer.byteLength).toBe(10_000);
    a.release();
    a.release(); // a second call does nothing
    await p.stats(); // the plugin's next post carries the buffer back
    expect(a.payload.byteLength).toBe(0);
    app.send(hS, new Uint8Array(6_000).fill(0x55));
    const b = await recvOne(p);
    expect(b.payload.byteLength).toBe(6_000);
    expect(b.payload.every((v: number) => v === 0x55)).toBe(true);
    expect(b.payload.buffer.byteLength).toBe(10_000);
    // its tail held the earlier push: zeroed
    expect(new Uint8Array(b.payload.buffer, 6_000).every((v) => v === 0)).toBe(true);
    b.release();
    await p.stats();
    // more than twice the bytes: not used, a buffer of the payload's size is made
    app.send(hS, new Uint8Array(2_000).fill(1));
    const c = await recvOne(p);
    expect(c.payload.buffer.byteLength).toBe(2_000);
  });

  it("a payload whose buffer the plugin transferred away first is not given back, and the next post goes out", async () => {
    const { app, p, hS, s } = await world("remote");
    app.send(hS, new Uint8Array(10_000).fill(7));
    const a = await recvOne(p);
    const { port1 } = channel();
    port1.postMessage(a.payload.buffer, [a.payload.buffer]);
    a.release();
    expect(await p.stats()).toEqual(s.stats());
    app.send(hS, new Uint8Array(6_000).fill(8));
    const b = await recvOne(p);
    expect(b.payload.buffer.byteLength).toBe(6_000);
    expect(b.payload.every((v: number) => v === 8)).toBe(true);
  });

  it("a batch's buffer goes back once its payloads are copied out", async () => {
    const { app, p, hS } = await world("remote");
    for (let i = 0; i < 10; i++) app.send(hS, bytes(100, i)); // one turn: one batch of 1,000 bytes
    for (let i = 0; i < 10; i++) {
      const m = await recvOne(p);
      expect([...m.payload]).toEqual([...bytes(100, i)]);
      expect(m.payload.buffer.byteLength).toBe(100);
    }
    await p.stats();
    app.send(hS, bytes(600, 11));
    const m = await recvOne(p);
    expect([...m.payload]).toEqual([...bytes(600, 11)]);
    expect(m.payload.buffer.byteLength).toBe(1_000);
  });

  it("the serving side keeps the newest: small buffers given back do not stay in the way of large ones", async () => {
    const bus = await newBus();
    const app = bus.connect();
    const s = bus.connect();
    const hS = s.transfer(0x200, app);
    const { serving, port } = served(s);
    const data: ArrayBuffer[] = [];
    port.addEventListener("message", (e) => {
      const m = (e as MessageEvent).data;
      if (!Array.isArray(m)) return;
      if (m[1] instanceof ArrayBuffer) data.push(m[1]);
      for (const x of m[2] ?? []) if (x instanceof ArrayBuffer) data.push(x); // a large payload's own (batch.ts OWN)
    });
    port.start();
    port.postMessage({ t: "hello", version: WIRE_VERSION, window: null });
    // as many small ones as are kept, then one large one: the oldest small one makes room
    const small = Array.from({ length: MAX_SPARES }, () => new ArrayBuffer(100));
    port.postMessage([[11, 0], null, [small]], small);
    const large = new ArrayBuffer(10_000);
    port.postMessage([[11, 0], null, [[large]]], [large]);
    await tick(20);
    app.send(hS, new Uint8Array(8_000));
    await until(() => data.length === 1, 2000, "the push");
    expect(data[0].byteLength).toBe(10_000);
    // and a buffer larger than the window's bytes is dropped: a push makes its own
    const huge = new ArrayBuffer(5 << 20);
    port.postMessage([[11, 0], null, [[huge]]], [huge]);
    await tick(20);
    port.postMessage([[2, 1, 8_000, 0], null, null]); // credit for the first
    app.send(hS, new Uint8Array(3 << 20));
    await until(() => data.length === 2, 2000, "the second push");
    expect(data[1].byteLength).toBe(3 << 20);
    serving.close();
    expect(await serving.closed).toBe("the serving was closed");
  });

  it("a server's batch: one payload keeps the buffer, however large; several are copied out and the buffer is spare", () => {
    const push = (at: number, size: number) => [7, 0, 1, 0, at, size, 0, -1];
    const one = readServerBatch([push(0, 10), new ArrayBuffer(64), null]);
    if (!one.ok) throw new Error(one.reason);
    const m = one.messages[0] as any;
    expect(m.own).toBe(true);
    expect(m.payload.buffer.byteLength).toBe(64);
    expect(one.spare).toBeNull();
    const data = new ArrayBuffer(20);
    new Uint8Array(data).set([1, 2, 3, 4, 5, 6, 7, 8, 9, 10, 11, 12]);
    const two = readServerBatch([[...push(0, 4), ...push(4, 8)], data, null]);
    if (!two.ok) throw new Error(two.reason);
    expect(two.messages.map((x: any) => [x.own, x.payload.buffer.byteLength, [...x.payload]])).toEqual([
      [false, 4, [1, 2, 3, 4]], [false, 8, [5, 6, 7, 8, 9, 10, 11, 12]],
    ]);
    expect(two.spare).toBe(data);
  });
});

describe("a batch the port refuses", () => {
  it("goes again item by item: small payloads inline keep their bytes, the object that cannot move arrives as EOPNOTSUPP", async () => {
    const { app, p, hS } = await world("remote");
    const ch = channel();
    // three messages in one turn share one batch, their 1 + 2 + 3 bytes inline
    app.send(hS, enc("a"));
    app.send(hS, enc("bb"), { objects: [ch.port1, { v: 2 }] });
    app.send(hS, enc("ccc"));
    // the port leaves this thread before the serving side pushes: the batch's transfer list is refused
    new MessageChannel().port1.postMessage(null, [ch.port1]);
    const got: string[] = [];
    for (let i = 0; i < 3; i++) {
      const m = await recvOne(p);
      got.push(dec(m.payload));
      if (i === 1) {
        expect(m.objects[0]).toBeInstanceOf(Bus1Error);
        expect(m.objects[0].code).toBe("EOPNOTSUPP");
        expect(m.objects[1]).toEqual({ v: 2 });
      }
      m.release();
    }
    expect(got).toEqual(["a", "bb", "ccc"]);
    expect(await p.recv()).toBeNull();
    expect(await p.send(hS, enc("still served"))).toEqual({ errors: [null] });
  });
});

describe("review: what a hostile plugin or server found", () => {
  it("shared memory and the bus's code never cross, at any depth of an object", async () => {
    const { bus, app, p, hS } = await world("remote", true);
    const sab = new SharedArrayBuffer(8);
    const handle = bus.handle;
    app.send(hS, enc("o"), {
      objects: [{ h: handle }, [[handle.memory]], new Map([[1, sab]]), { deep: { deeper: [new Uint8Array(sab)] } },
        new Set([handle.module]), { fine: [1, "two", new Uint8Array(3)] }],
    });
    const m = await recvOne(p);
    for (let i = 0; i < 5; i++) {
      expect(m.objects[i], `objects[${i}]`).toBeInstanceOf(Bus1Error);
      expect(m.objects[i].code).toBe("EOPNOTSUPP");
    }
    expect(m.objects[5]).toEqual({ fine: [1, "two", new Uint8Array(3)] });
  });

  for (const how of ["bus.close()", "peer.close()"] as const) {
    it(`closing the served reference on the trusted side (${how}) ends the serving`, async () => {
      const bus = await newBus();
      const s = bus.connect();
      const { serving, port } = served(s);
      const remote = await RemotePeer.connect(port as any);
      if (how === "bus.close()") bus.close();
      else s.close();
      expect(await Promise.race([serving.closed, tick(2000).then(() => "still serving")]))
        .toBe("the served peer reference was closed");
      expect(await outcome(() => remote.query())).toMatchObject({ code: "ESHUTDOWN" });
    });
  }

  it("a reference cannot be served twice", async () => {
    const bus = await newBus();
    const s = bus.connect();
    served(s);
    expect(() => serve(s, channel().port1 as any)).toThrow(/already served/);
  });

  it("a server that sends a list no message can carry is refused at once, not looped over", async () => {
    const { port1, port2 } = channel();
    port1.on("message", (m: any) => {
      if (m?.t !== "hello") return;
      port1.postMessage({ t: "welcome", version: WIRE_VERSION, window: m.window });
      const sparse: number[] = [];
      sparse[2 ** 32 - 2] = 1;
      port1.postMessage({ t: "push", type: "data", destination: 1, continue: false, payload: null,
        handles: sparse, objects: [], errors: [] });
    });
    const remote = await RemotePeer.connect(port2 as any);
    const started = Date.now();
    expect(await outcome(() => remote.recv())).toMatchObject({ code: "ESHUTDOWN" });
    expect(Date.now() - started).toBeLessThan(2000);
  });
});

describe("ports as capabilities", () => {
  it("a MessagePort the plugin sends reaches the app by transfer, and works", async () => {
    const { app, p, hApp } = await world("remote");
    const ch = channel();
    await p.send(hApp, enc("here is a port"), { objects: [ch.port1] });
    const m = app.recv()!;
    const port = m.objects[0] as MessagePort;
    ports.push(port);
    const got = new Promise((r) => ch.port2.once("message", r));
    port.postMessage("hello from the app");
    expect(await got).toBe("hello from the app");
  });
});

describe("confinement", () => {
  it("transfers only to itself: any other `to` is EINVAL, from the client and on the wire", async () => {
    const { bus, p, hApp, s } = await world("remote");
    const other = await RemotePeer.connect(served(bus.connect()).port as any);
    for (const to of [other, s, {}, null, 1]) {
      expect(await outcome(() => (p as any).transfer(hApp, to))).toMatchObject({ code: "EINVAL" });
    }
    expect(typeof (await p.transfer(hApp, p as any))).toBe("number");
    // a hand-made call with a `to` on the wire
    const { port } = served(bus.connect());
    const replies: any[] = [];
    onItems(port, (m: any) => replies.push(m));
    port.postMessage({ t: "hello", version: WIRE_VERSION, window: null });
    port.postMessage({ t: "call", id: 7, op: "transfer", args: [0x100, { slot: 0, gen: 0 }] });
    await until(() => replies.some((r) => r.id === 7));
    expect(replies.find((r) => r.id === 7)).toMatchObject({ t: "fail", code: "EINVAL" });
  });

  it("reaches nothing by guessing IDs but its own handles", async () => {
    const { app, p, hApp } = await world("remote");
    const reached: number[] = [];
    for (let id = 1; id < 600; id += 2) {
      const r = await outcome(() => p.send(id, enc("guess")));
      if ("ok" in r) reached.push(id);
      else expect(["ENXIO", "EINVAL"]).toContain(r.code);
    }
    expect(reached).toEqual(hApp < 600 ? [hApp] : []);
    const got = [];
    for (let m = app.recv(); m; m = app.recv()) got.push(m.destination);
    expect(got).toEqual(reached.map(() => 0x100));
  });

  it("has nothing of the bus on it, and nothing it receives is the bus's", async () => {
    const { app, p, hS } = await world("remote", true);
    expect(Object.keys(p)).toEqual([]);
    expect(Object.getOwnPropertySymbols(p)).toEqual([]);
    app.send(hS, enc("x"), { objects: [new Uint8Array(new SharedArrayBuffer(4))] });
    const m = await recvOne(p);
    const values = [m, m.payload.buffer, ...m.objects, await p.query(), await p.stats()];
    for (const v of values) {
      expect(v).not.toBeInstanceOf(SharedArrayBuffer);
      expect(v).not.toBeInstanceOf(WebAssembly.Memory);
      expect(v).not.toBeInstanceOf(WebAssembly.Module);
    }
  });
});

// ---- hostile port messages -----------------------------------------------------------------

/** A seeded PRNG (mulberry32). */
function rng(seed: number) {
  return () => {
    seed = (seed + 0x6d2b79f5) | 0;
    let t = Math.imul(seed ^ (seed >>> 15), 1 | seed);
    t = (t + Math.imul(t ^ (t >>> 7), 61 | t)) ^ t;
    return ((t ^ (t >>> 14)) >>> 0) / 4294967296;
  };
}

function junkValue(r: () => number, depth = 0): unknown {
  const pick = Math.floor(r() * 16);
  switch (pick) {
    case 0: return Math.floor(r() * 1000) * 2 + 1;
    case 1: return r() * 1e20 - 5e19;
    case 2: return [NaN, Infinity, -0, -1, 2 ** 53, 2 ** 32 + 8][Math.floor(r() * 6)];
    case 3: return "s".repeat(Math.floor(r() * 50));
    case 4: return null;
    case 5: return undefined;
    case 6: return r() < 0.5;
    case 7: { const a: unknown[] = []; a[Math.floor(r() * 70000)] = 1; return a; } // sparse
    case 8: return { length: Math.floor(r() * 2 ** 33) };
    case 9: return new ArrayBuffer(Math.floor(r() * 64));
    case 10: return new Uint8Array(Math.floor(r() * 64));
    case 11: return depth < 3 ? Array.from({ length: Math.floor(r() * 4) }, () => junkValue(r, depth + 1)) : [];
    case 12: return depth < 3 ? { seed: junkValue(r, depth + 1), flush: r() < 0.5, limits: { maxSlices: junkValue(r, depth + 1) } } : {};
    case 13: return BigInt(Math.floor(r() * 100));
    case 14: return { handles: [1, 3, 5], objects: [junkValue(r, 3)], continue: r() < 0.5 };
    default: return new Array(Math.floor(r() * 5)).fill(Math.floor(r() * 8) * 2 + 1);
  }
}

/** A random port message; `callsOnly`: shaped like a call with a good id (answered, never closing). */
function junkMessage(r: () => number, id: number, callsOnly: boolean): unknown {
  const ops = ["send", "recv", "transfer", "release", "destroy", "releaseSlice", "reset", "query", "stats", "disconnect", "close", "wait", "ref", "__proto__", ""];
  switch (callsOnly ? 4 : Math.floor(r() * 10)) {
    case 0: return junkValue(r);
    case 1: return { t: ["hello", "credit", "pong", "nope", 5][Math.floor(r() * 5)], version: junkValue(r), messages: junkValue(r), bytes: junkValue(r), objects: junkValue(r), window: junkValue(r) };
    case 2: return { t: "call", id: junkValue(r), op: ops[Math.floor(r() * ops.length)], args: [] };
    case 3: return { t: "call", id, op: ops[Math.floor(r() * ops.length)], args: junkValue(r) };
    case 9: {
      // a batch (batch.ts): junk words, or items of every kind with junk among the numbers
      if (r() < 0.3) return [junkValue(r), junkValue(r), junkValue(r)];
      const words: unknown[] = [];
      for (let k = Math.floor(r() * 6); k > 0; k--) {
        const kind = [1, 1, 1, 2, 3, 0, 99][Math.floor(r() * 7)];
        const n = kind === 1 ? 5 : kind === 2 ? 3 : Math.floor(r() * 3);
        words.push(kind, ...Array.from({ length: n }, () => (r() < 0.8 ? Math.floor(r() * 12) - 1 : junkValue(r))));
      }
      return [words, r() < 0.5 ? null : new ArrayBuffer(Math.floor(r() * 16)), r() < 0.5 ? null : [junkValue(r), [junkValue(r)]]];
    }
    default: {
      const n = Math.floor(r() * 4);
      return { t: "call", id, op: ops[Math.floor(r() * (callsOnly ? 15 : 10))], args: Array.from({ length: n }, () => junkValue(r)) };
    }
  }
}

describe("a fuzzer of raw port messages", () => {
  it("leaves the trusted side standing: every call answered or the port closed, counts back to baseline", async () => {
    const bus = await newBus();
    // this thread's call scratch grows with a large call and shrinks back to a kept size at the next
    // small one (core.ts scratchFor): grow and shrink it once, so that the baseline holds the kept size
    const warm = bus.connect();
    try { warm.destroy(new Array(70_000).fill(3)); } catch { /* ENXIO */ }
    try { warm.send(3); } catch { /* ENXIO */ }
    warm.close();
    const baseline = bus.stats();
    const app = bus.connect();
    const r = rng(0x5eed);
    let sent = 0, answered = 0, closedWithReason = 0, round = 0;
    const start = Date.now();
    while (sent < 3000) {
      const s = bus.connect();
      app.transfer(0x100, s);
      const hS = s.transfer(0x200, app);
      const { serving, port } = served(s, { livenessMs: 0 });
      const ids = new Set<number>();
      const replies = new Set<number>();
      let ended = false;
      onItems(port, (m: any) => { if (m?.t === "done" || m?.t === "fail") replies.add(m.id); if (m?.t === "close") ended = true; });
      port.on("close", () => { ended = true; });
      // odd rounds send anything (the first malformed message ends them); even rounds only calls
      const callsOnly = round++ % 2 === 0;
      if (callsOnly || r() < 0.9) port.postMessage({ t: "hello", version: WIRE_VERSION, window: null });
      for (let i = 0; i < 300 && !ended; i++, sent++) {
        const id = 1000 + i;
        const m = junkMessage(r, id, callsOnly);
        try {
          port.postMessage(m);
          if ((m as any)?.t === "call" && (m as any).id === id) ids.add(id);
        } catch {
          // not cloneable by this side's port (a BigInt inside a Symbol…): nothing was sent
        }
        if (i % 50 === 49) await tick(0);
      }
      port.postMessage({ t: "call", id: 1, op: "query", args: [] });
      await until(() => ended || replies.has(1), 5000, "the sentinel's answer");
      answered += replies.size;
      if (!ended) {
        // every call got its answer before the sentinel's
        for (const id of ids) expect(replies.has(id), `call ${id}`).toBe(true);
        serving.close("fuzz round over");
      } else closedWithReason++;
      expect(callsOnly && ended, "a round of calls only is never closed").toBe(false);
      expect(typeof (await serving.closed)).toBe("string");
      for (let m = app.recv(); m; m = app.recv()) m.release();
      app.release(hS); // the app's handle to the plugin's (now destroyed) node
    }
    expect(answered).toBeGreaterThan(100);
    expect(closedWithReason).toBeGreaterThan(0);
    // another peer still works
    const x = bus.connect();
    const h = x.transfer(0x10, app);
    app.send(h, enc("still here"));
    expect(dec(x.recv()!.payload)).toBe("still here");
    x.close();
    app.close();
    const after = bus.stats();
    expect({ peers: after.peers, users: after.users, records: after.records, usedBytes: after.usedBytes }).toEqual(
      { peers: baseline.peers, users: baseline.users, records: baseline.records, usedBytes: baseline.usedBytes });
    expect(Date.now() - start).toBeLessThan(15_000);
  });

  it("ends a serving whose plugin answers no liveness ping", async () => {
    const bus = await newBus();
    const s = bus.connect();
    const { serving, port } = served(s, { livenessMs: 20 });
    port.postMessage({ t: "hello", version: WIRE_VERSION, window: null });
    // never answers the pings
    const t0 = Date.now();
    expect(await serving.closed).toContain("liveness");
    expect(Date.now() - t0).toBeLessThan(500);
    expect(s.closed).toBe(true);
  });

  it("ends a serving that gets credit for more than it pushed", async () => {
    const bus = await newBus();
    const { serving, port } = served(bus.connect());
    port.postMessage({ t: "hello", version: WIRE_VERSION, window: null });
    port.postMessage({ t: "credit", messages: 1, bytes: 0, objects: 0 });
    expect(await serving.closed).toContain("credit");
  });
});

// ---- lifecycle ------------------------------------------------------------------------------

describe("when the plugin goes", () => {
  it("a port closed mid-call rejects the call and disconnects the served peer", async () => {
    const bus = await newBus();
    const app = bus.connect();
    const s = bus.connect();
    const hS = s.transfer(0x200, app);
    const { serving, port } = served(s);
    const p = await RemotePeer.connect(port as any);
    const call = p.stats();
    port.close();
    expect(await outcome(() => call)).toMatchObject({ code: "ESHUTDOWN" });
    expect(await serving.closed).toBe("the port closed");
    expect(s.closed).toBe(true);
    const n = app.recv()!;
    expect([n.type, n.destination]).toEqual(["node-destroy", hS]);
    expect(await outcome(() => p.query())).toMatchObject({ code: "ESHUTDOWN" });
  });

  it("close() on the plugin's side closes the served reference", async () => {
    const bus = await newBus();
    const peers = bus.stats().peers;
    const s = bus.connect();
    const { serving, port } = served(s);
    const p = await RemotePeer.connect(port as any);
    await p[Symbol.asyncDispose]();
    expect(await serving.closed).toContain("plugin closed");
    expect(bus.stats().peers).toBe(peers);
  });

  it("close() on the serving side ends the plugin's calls with ESHUTDOWN", async () => {
    const { bus } = await world("local");
    const s = bus.connect();
    const { serving, port } = served(s);
    const p = await RemotePeer.connect(port as any);
    serving.close("the app had enough");
    await until(() => s.closed);
    await tick(10);
    const e = await outcome(() => p.query());
    expect(e).toMatchObject({ code: "ESHUTDOWN" });
    expect((e as any).message).toContain("the app had enough");
  });
});

describe("a plugin in a worker", () => {
  function plugin(script: string, bus: Bus, extra: Record<string, unknown> = {}) {
    const app = bus.connect();
    const s = bus.connect();
    const handle = app.transfer(0x100, s);
    const hS = s.transfer(0x200, app);
    const { port1, port2 } = new MessageChannel();
    ports.push(port1);
    const serving = serve(s, port1 as any);
    servings.push(serving);
    const w = new Worker(new URL("./workers/remote-plugin.mjs", import.meta.url),
      { workerData: { port: port2, script, handle, ...extra }, transferList: [port2] });
    workers.push(w);
    const inbox: any[] = [];
    w.on("message", (m) => inbox.push(m));
    return { app, s, hS, serving, w, inbox };
  }

  it("does every operation through the port and sees the same errors", async () => {
    const bus = await newSharedBus();
    const { app, hS, inbox, serving } = plugin("basic", bus);
    await until(() => app.recv() !== null || inbox.length > 0, 5000, "the plugin's send");
    app.send(hS, enc("to the plugin"), { handles: [0x300] });
    await until(() => inbox.length > 0, 5000, "the plugin's report");
    const r = inbox[0];
    expect(r.send).toEqual({ ok: { errors: [null] } });
    expect(r.message).toMatchObject({ type: "data", destination: 0x200, text: "to the plugin", shared: false, ownBuffer: true });
    expect(r.message.handles.length).toBe(1);
    expect(r.badTransfer).toMatchObject({ code: "EINVAL", name: "Bus1Error" });
    expect(r.releaseSlice).toMatchObject({ code: "ENXIO" });
    expect(r.query.ok.maxSlices).toBe(77);
    expect(r.sync).toBe("no throw");
    const local = bus.connect();
    const { name, ...badSend } = r.badSend;
    expect(name).toBe("Bus1Error");
    expect(badSend).toEqual(await outcome(async () => local.send("x" as any)));
    expect(r.after).toMatchObject({ code: "ESHUTDOWN" });
    serving.close();
  });

  it("a worker terminated mid-stream: the served peer is disconnected within a bounded time", async () => {
    const bus = await newSharedBus();
    const { app, hS, w, inbox, serving } = plugin("stream", bus);
    let sent = 0;
    while (inbox.length < 3) {
      try {
        app.send(hS, new Uint8Array(256));
        sent++;
      } catch (e) {
        if ((e as Bus1Error).code !== "EDQUOT") throw e;
      }
      if (sent % 50 === 0) await tick(1);
    }
    const t0 = Date.now();
    await w.terminate();
    expect(await serving.closed).toBe("the port closed");
    expect(Date.now() - t0).toBeLessThan(2000);
    await until(() => {
      for (let m = app.recv(); m; m = app.recv()) if (m.type === "node-destroy" && m.destination === hS) return true;
      return false;
    }, 2000, "node-destroy of the plugin's node");
  });

  it("plugins terminated at random moments: every serving ends, the bus is back to baseline", async () => {
    const bus = await newSharedBus();
    const before = bus.stats();
    const r = rng(0x9e3779b9);
    for (let round = 0; round < 6; round++) {
      const { app, hS, w, serving } = plugin(round % 2 ? "stream" : "mid-call", bus);
      const end = Date.now() + r() * 40;
      while (Date.now() < end) {
        try { app.send(hS, new Uint8Array(32)); } catch { /* EDQUOT */ }
        await tick(1);
      }
      await w.terminate();
      expect(await serving.closed).toBe("the port closed");
      for (let m = app.recv(); m; m = app.recv()) m.release();
      app.close();
    }
    const after = bus.stats();
    expect({ peers: after.peers, records: after.records }).toEqual({ peers: before.peers, records: before.records });
  });

  it("a worker terminated with calls in flight leaves the bus intact", async () => {
    const bus = await newSharedBus();
    const before = bus.stats();
    const { app, w, inbox, serving } = plugin("mid-call", bus);
    await until(() => inbox.length > 0, 5000, "the plugin's start");
    await tick(5);
    await w.terminate();
    expect(await serving.closed).toBe("the port closed");
    for (let m = app.recv(); m; m = app.recv()) m.release();
    app.close();
    expect(bus.stats().peers).toBe(before.peers);
  });
});
