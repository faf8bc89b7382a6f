// Buffers that go back to the serving side (batch.ts "Buffers go back"): what a
// red-team review of the first version found (each fixed, the test now says
// what holds), and the attacks that held.
import { describe, expect, it } from "vitest";
import { Bus1Error, RemoteMessage, RemotePeer } from "bus1-wasm";
import { CALL_OPS, WIRE_VERSION } from "../dist/host-common/wire.js";
import { newBus, nextMessage } from "./helpers.js";
import { channel, recvOne, served, tick, until } from "./serving.js";
import { readServerBatch } from "../dist/host-common/batch.js";

const CALL = 1, CREDIT = 2, SPARE = 11;

/** A bus, an app peer, a served peer and its handles (as remote-peer.test.ts's world("remote")). */
async function world(options?: Parameters<typeof served>[1]) {
  const bus = await newBus();
  const app = bus.connect();
  const s = bus.connect();
  const hApp = app.transfer(0x100, s);
  const hS = s.transfer(0x200, app);
  const { serving, port } = served(s, options);
  return { bus, app, s, hApp, hS, serving, port };
}

/** A raw plugin on the port: hello sent; the data buffers of the serving side's batches collected. */
async function raw(port: MessagePort, window: object | null = null) {
  const data: ArrayBuffer[] = [];
  port.addEventListener("message", (e) => {
    const m = (e as MessageEvent).data;
    if (Array.isArray(m) && m[1] instanceof ArrayBuffer) data.push(m[1]);
  });
  port.start();
  port.postMessage({ t: "hello", version: WIRE_VERSION, window });
  await tick(5);
  return data;
}

describe("defects found, fixed", () => {
  it("a buffer given back that is also an object sent in the same post: the batch is refused whole, nothing delivered", async () => {
    // one port message is one structured clone: b would be the app's received object and a spare at once
    const { app, hApp, serving, port } = await world({ livenessMs: 0 });
    await raw(port);
    const b = new ArrayBuffer(256);
    port.postMessage([[CALL, 1, CALL_OPS.indexOf("send"), -1, 0, 0, SPARE, 1], null,
      [[hApp, undefined, { objects: [b] }], [b]]]);
    expect(await serving.closed).toContain("spare: a batch that gives buffers back carries no call with objects");
    // the served peer went with the serving (a notification), the send was never performed
    const got = [];
    for (let m = app.recv(); m; m = app.recv()) got.push(m.type);
    expect(got).not.toContain("data");
  });

  it("payload.buffer holds that payload and zeros: a reused buffer's tail carries no earlier message", async () => {
    const { app, hS, port } = await world();
    const p = await RemotePeer.connect(port as any);
    app.send(hS, new Uint8Array(1000).fill(0xaa));
    const a = await recvOne(p);
    a.release();
    await p.stats();
    app.send(hS, new Uint8Array(600).fill(0x55));
    const b = await recvOne(p);
    const { port1, port2 } = channel();
    const forwarded = nextMessage(port2 as any);
    port1.postMessage(b.payload.buffer, [b.payload.buffer as ArrayBuffer]);
    const buf = new Uint8Array((await forwarded) as ArrayBuffer);
    expect(buf.byteLength).toBe(1000); // the reused buffer
    expect(buf.subarray(0, 600).every((v) => v === 0x55)).toBe(true);
    expect(buf.subarray(600).every((v) => v === 0)).toBe(true);
  });

  it("the same without any release(): a batch's buffer goes back by itself, and its tail is zeroed when reused", async () => {
    const { app, hS, port } = await world();
    const p = await RemotePeer.connect(port as any);
    for (let i = 0; i < 10; i++) app.send(hS, new Uint8Array(100).fill(0xa0 + i)); // one batch of 1,000 bytes
    for (let i = 0; i < 10; i++) await recvOne(p); // read, never released
    await p.stats(); // any post: the batch's buffer goes back with it
    app.send(hS, new Uint8Array(600).fill(0x55));
    const b = await recvOne(p);
    const buf = new Uint8Array(b.payload.buffer);
    expect(buf.byteLength).toBe(1000);
    expect(buf.subarray(600).every((v) => v === 0)).toBe(true);
  });

  it("the same buffer twice in one batch's SPARE items is refused (it would be counted twice, and kept twice)", async () => {
    for (const bad of [
      (b: ArrayBuffer) => [[SPARE, 0], null, [[b, b]]],
      (b: ArrayBuffer) => [[SPARE, 0, SPARE, 1], null, [[b], [b]]],
    ]) {
      const { serving, port } = await world({ livenessMs: 0 });
      await raw(port, { messages: 256, bytes: 4096, objects: 1024 });
      const b = new ArrayBuffer(2048);
      port.postMessage(bad(b), [b]);
      expect(await serving.closed).toContain("spare: must name an array of at most");
    }
  });

  it("the public RemoteMessage constructor makes a message with nothing to give back: release() of a made one posts nothing", async () => {
    // a plain buffer, which a RemotePeer would give back if it were the message's own: it stays here
    for (const b of [new ArrayBuffer(8), new ArrayBuffer(8, { maxByteLength: 16 } as any), new SharedArrayBuffer(8) as unknown as ArrayBuffer]) {
      const { port } = await world();
      const p = await RemotePeer.connect(port as any);
      const fake = new (RemoteMessage as any)({ type: "data", destination: 0, continue: false, offset: -1,
        payload: new Uint8Array(b), handles: [], objects: [] }, b, p);
      fake.release();
      expect(await p.stats().then(() => p.stats()).then(() => "ok", (e: Bus1Error) => e.message)).toBe("ok");
      expect(fake.payload.byteLength).toBe(8); // posted twice since: not given back, not detached
    }
  });
});

describe("attacks that held", () => {
  it("control for F3: without the duplicate the 3000-byte spare carries the second push", async () => {
    const { app, hS, port } = await world({ livenessMs: 0 });
    const data = await raw(port, { messages: 256, bytes: 4096, objects: 1024 });
    const b = new ArrayBuffer(2048);
    port.postMessage([[SPARE, 0], null, [[b]]], [b]);
    await tick(5);
    app.send(hS, new Uint8Array(1500));
    await until(() => data.length === 1, 2000, "the first push");
    expect(data[0].byteLength).toBe(2048);
    port.postMessage([[CREDIT, 1, 1500, 0], null, null]);
    const c = new ArrayBuffer(3000);
    port.postMessage([[SPARE, 0], null, [[c]]], [c]);
    await tick(5);
    app.send(hS, new Uint8Array(2000));
    await until(() => data.length === 2, 2000, "the second push");
    expect(data[1].byteLength).toBe(3000);
  });

  it("release, then transfer the payload away (or not), over many rounds: every call resolves, credit flows, bytes exact", async () => {
    const { app, s, hS, port } = await world();
    const p = await RemotePeer.connect(port as any);
    const sink = channel();
    let seed = 1;
    const rnd = (n: number) => { seed = (seed * 1103515245 + 12345) & 0x7fffffff; return seed % n; };
    let n = 0;
    for (let round = 0; round < 150; round++) {
      const k = 1 + rnd(4), sizes: number[] = [];
      for (let i = 0; i < k; i++) {
        const size = [0, 10, 65, 700, 5000, 70_000][rnd(6)];
        sizes.push(size);
        app.send(hS, Uint8Array.from({ length: size }, (_v, j) => (j + n + i) & 0xff));
      }
      for (let i = 0; i < k; i++) {
        const m = await recvOne(p);
        expect(m.payload.byteLength).toBe(sizes[i]);
        for (let j = 0; j < m.payload.byteLength; j += 97) expect(m.payload[j]).toBe((j + n + i) & 0xff);
        const how = rnd(3);
        if (how === 0) sink.port1.postMessage(null, [m.payload.buffer as ArrayBuffer]);
        m.release();
        if (how === 1) sink.port1.postMessage(null, [m.payload.buffer as ArrayBuffer]); // released, not yet posted
      }
      n += k;
      if (round % 10 === 0) expect(await p.stats()).toEqual(s.stats());
    }
    expect(await p.recv()).toBeNull();
    expect(await p.send(hS, new Uint8Array(3))).toEqual({ errors: [null] });
  }, 30_000);

  it("release() on notifications, a seed copy, a round-trip recv, and after the serving ended: no throw", async () => {
    const { app, s, hS, port, serving } = await world();
    const p = await RemotePeer.connect(port as any);
    await p.send([], new Uint8Array(300).fill(3), { seed: true });
    const seedMsg = (await p.recv({ seed: true }))!;
    expect(() => seedMsg.release()).not.toThrow();
    await p.stats();
    expect(seedMsg.payload.byteLength).toBe(300);
    const hS2 = s.transfer(0x300, app);
    app.release(hS); // a node-release notification for the plugin
    const note = await recvOne(p);
    expect(note.type).toBe("node-release");
    expect(() => { note.release(); note.release(); }).not.toThrow();
    expect(await p.recv()).toBeNull(); // a round trip
    app.send(hS2, new Uint8Array(300).fill(4));
    const m1 = await recvOne(p);
    app.send(hS2, new Uint8Array(300).fill(5));
    const m2 = await recvOne(p);
    m2.release(); // queued to go back, but no post follows
    serving.close();
    await tick(5);
    expect(() => { m1.release(); m2.release(); }).not.toThrow();
    expect([m1.payload.byteLength, m2.payload.byteLength]).toEqual([300, 300]);
    expect(await p.stats().catch((e) => e.code)).toBe("ESHUTDOWN");
  });

  it("a refused batch whose data is a reused spare goes again item by item, each payload exact", async () => {
    const { app, hS, port } = await world();
    const p = await RemotePeer.connect(port as any);
    app.send(hS, new Uint8Array(500).fill(9));
    const a = await recvOne(p);
    a.release();
    await p.stats(); // the 500-byte buffer is kept
    const ch = channel();
    app.send(hS, new Uint8Array(100).fill(1));
    app.send(hS, new Uint8Array(100).fill(2), { objects: [ch.port1, { v: 2 }] });
    app.send(hS, new Uint8Array(100).fill(3));
    new MessageChannel().port1.postMessage(null, [ch.port1]); // the batch is refused
    for (let i = 1; i <= 3; i++) {
      const m = await recvOne(p);
      expect(m.payload.byteLength).toBe(100);
      expect(m.payload.buffer.byteLength).toBe(100);
      expect(m.payload.every((v) => v === i)).toBe(true);
      if (i === 2) expect((m.objects[0] as Bus1Error).code).toBe("EOPNOTSUPP");
      m.release();
    }
    expect(await p.send(hS, new Uint8Array(3))).toEqual({ errors: [null] });
  });

  it("a SPARE buffer that is also the batch's data: refused whole (a recv in the batch could fill it first)", async () => {
    const { app, hApp, serving, port } = await world({ livenessMs: 0 });
    await raw(port);
    const b = new ArrayBuffer(256);
    new Uint8Array(b).fill(0x77);
    port.postMessage([[10, 1, hApp, 0, 256, SPARE, 0], b, [[b]]], [b]);
    expect(await serving.closed).toContain("spare: a batch does not give back its own data");
    const got = [];
    for (let m = app.recv(); m; m = app.recv()) got.push(m.type);
    expect(got).not.toContain("data");
  });

  it("a SPARE buffer that is also an object sent to another plugin: refused whole; the other plugin gets nothing", async () => {
    const bus = await newBus();
    const app = bus.connect(), a = bus.connect(), bPeer = bus.connect();
    const hB = bPeer.transfer(0x300, a);
    a.transfer(0x200, app);
    const { serving, port: pa } = served(a, { livenessMs: 0 });
    const { port: pb } = served(bPeer);
    await raw(pa);
    const rb = await RemotePeer.connect(pb as any);
    const x = new ArrayBuffer(256);
    pa.postMessage([[CALL, 1, CALL_OPS.indexOf("send"), -1, 0, 0, SPARE, 1], null, [[hB, undefined, { objects: [x] }], [x]]]);
    expect(await serving.closed).toContain("carries no call with objects");
    const got = [];
    for (let m = await rb.recv(); m; m = await rb.recv()) got.push(m.type);
    expect(got).not.toContain("data");
  });

  it("a flood of SPARE batches: external memory on the trusted side stays bounded, the serving stays up", async () => {
    const { setFlagsFromString } = await import("node:v8");
    const { runInNewContext } = await import("node:vm");
    setFlagsFromString("--expose_gc");
    const gc = runInNewContext("gc") as () => void;
    const { app, hS, port, serving } = await world({ livenessMs: 0 });
    let closed: string | null = null;
    serving.closed.then((r) => { closed = r; });
    const data = await raw(port);
    gc();
    const before = process.memoryUsage().arrayBuffers;
    for (let round = 0; round < 40; round++) {
      for (let k = 0; k < 10; k++) {
        const bufs = Array.from({ length: 64 }, () => new ArrayBuffer(8192));
        port.postMessage([[SPARE, 0], null, [bufs]], bufs);
      }
      await tick(1);
    }
    // every post read: a call's answer comes after all of them (a port keeps its order)
    const answered = new Promise((resolve) => port.addEventListener("message", (e) => {
      const m = (e as MessageEvent).data;
      if (Array.isArray(m) && m[0][0] === 4 && m[0][1] === 99) resolve(null);
    }));
    port.postMessage([[CALL, 99, CALL_OPS.indexOf("stats"), -1, 0, -1], null, null]);
    await answered;
    // a collection frees backing stores on a task of its own: collect, let it run, collect again
    gc();
    await tick(20);
    gc();
    const after = process.memoryUsage().arrayBuffers - before;
    expect(closed).toBeNull();
    expect(after).toBeLessThan(6 << 20);
    app.send(hS, new Uint8Array(5000));
    await until(() => data.length === 1, 2000, "a push");
    expect(data[0].byteLength).toBe(8192);
  }, 30_000);

  it("SPARE before hello, in object form, and after the serving closed: the serving ends or ignores it, nothing throws", async () => {
    for (const how of ["before hello", "object form", "after close"] as const) {
      const bus = await newBus();
      const { serving, port } = served(bus.connect(), { livenessMs: 0 });
      port.start();
      const b = new ArrayBuffer(100);
      if (how === "before hello") port.postMessage([[SPARE, 0], null, [[b]]], [b]);
      else {
        port.postMessage({ t: "hello", version: WIRE_VERSION, window: null });
        await tick(5);
        if (how === "after close") serving.close("bye");
        port.postMessage(how === "object form" ? { t: "spare", buffers: [b] } : [[SPARE, 0], null, [[b]]], [b]);
      }
      const r = await Promise.race([serving.closed, tick(500).then(() => "still serving")]);
      expect(r).not.toBe("still serving");
    }
  });

  it("buffers given back with pushes, sends with objects and exact credit, fuzzed: the serving stays up, every push arrives", async () => {
    const { app, s, hS, port, serving } = await world({ livenessMs: 0 });
    let closed: string | null = null;
    serving.closed.then((r) => { closed = r; });
    const window = { messages: 64, bytes: 8192, objects: 64 };
    let pushes = 0, owed = { messages: 0, bytes: 0, objects: 0 };
    port.addEventListener("message", (e) => {
      const m = (e as MessageEvent).data;
      if (!Array.isArray(m)) return;
      const b = readServerBatch(m);
      if (!b.ok) throw new Error(b.reason);
      for (const x of b.messages) if (x.t === "push") {
        pushes++;
        owed.messages++; owed.bytes += x.payload?.byteLength ?? 0; owed.objects += x.objects.length;
      }
    });
    port.start();
    port.postMessage({ t: "hello", version: WIRE_VERSION, window });
    await tick(5);
    const hSelf = s.transfer(0x300, s); // the plugin sends to itself, with an object aliased to a spare
    let seed = 7;
    const rnd = (n: number) => { seed = (seed * 1103515245 + 12345) & 0x7fffffff; return seed % n; };
    let sent = 0;
    for (let round = 0; round < 200 && closed === null; round++) {
      // distinct buffers in each post (one given twice is refused: a test above); a send with
      // objects goes in a post of its own, as a RemotePeer posts it, naming a buffer also given back
      // in another post (another structured clone: another object here)
      const pool = Array.from({ length: 1 + rnd(64) }, () => new ArrayBuffer(65 + rnd(4000)));
      const list = pool.filter(() => rnd(4) !== 0);
      port.postMessage([[CREDIT, owed.messages, owed.bytes, owed.objects, ...(list.length ? [SPARE, 0] : [])], null,
        list.length ? [list] : null], rnd(2) ? list : []);
      owed = { messages: 0, bytes: 0, objects: 0 };
      if (rnd(2) === 0) {
        port.postMessage([[CALL, round, CALL_OPS.indexOf("send"), -1, 0, 0], null,
          [[hSelf, new Uint8Array(65 + rnd(3000)), { objects: [pool[0]] }]]]);
        sent++;
      }
      app.send(hS, new Uint8Array(65 + rnd(4000)));
      sent++;
      await tick(1);
    }
    await until(() => pushes === sent || closed !== null, 3000, "every push").catch(() => {});
    expect(closed).toBeNull();
    expect(pushes).toBe(sent);
  });
});

describe("large payloads travel in buffers of their own (batch.ts OWN)", () => {
  const OWN = 12, PUSH = 7;
  /** `n` bytes that differ along the way and from one `seed` to the next. */
  const bytes = (n: number, seed: number) => Uint8Array.from({ length: n }, (_v, i) => (i * 31 + seed) & 0xff);
  const same = (a: Uint8Array, b: Uint8Array) => a.byteLength === b.byteLength && a.every((v, i) => v === b[i]);

  /** Counts the serving side's batches with pushes on `port`, and its large (OWN) and other pushes. */
  function countPosts(port: MessagePort) {
    const seen = { posts: 0, own: 0, push: 0 };
    port.addEventListener("message", (e) => {
      const m = (e as MessageEvent).data;
      if (!Array.isArray(m) || !Array.isArray(m[0])) return;
      const b = readServerBatch(m);
      if (!b.ok) throw new Error(b.reason);
      const pushes = b.messages.filter((x) => x.t === "push");
      if (pushes.length) seen.posts++; // answers to calls go in batches too
      for (const x of pushes) x.own && x.payload!.byteLength >= 16 << 10 ? seen.own++ : seen.push++;
    });
    return seen;
  }

  it("twenty 64 KiB messages sent in one turn: in order, exact, each on a buffer of its own, in two posts", async () => {
    const { app, hS, port } = await world();
    const seen = countPosts(port);
    const p = await RemotePeer.connect(port as any);
    const sent = Array.from({ length: 20 }, (_v, i) => bytes(65536, i));
    for (const b of sent) app.send(hS, b);
    const got = [];
    for (let i = 0; i < 20; i++) got.push(await recvOne(p));
    const buffers = new Set(got.map((m) => m.payload.buffer));
    expect(buffers.size).toBe(20);
    got.forEach((m, i) => {
      expect(same(m.payload, sent[i]), `message ${i}`).toBe(true);
      expect(m.payload.byteOffset).toBe(0);
    });
    expect(seen.own).toBe(20);
    expect(seen.posts).toBe(2); // at most 16 large payloads in one post
    // one payload's buffer transferred away takes nothing of the others
    const { port1 } = channel();
    port1.postMessage(got[3].payload.buffer, [got[3].payload.buffer as ArrayBuffer]);
    expect(got[3].payload.byteLength).toBe(0);
    expect(same(got[4].payload, sent[4])).toBe(true);
    for (const m of got) m.release();
    expect(await p.send(hS, new Uint8Array(3))).toEqual({ errors: [null] });
  });

  it("small and large mixed in one turn: in order, exact; the small ones share one buffer, each large one has its own", async () => {
    const { app, hS, port } = await world();
    const seen = countPosts(port);
    const p = await RemotePeer.connect(port as any);
    const sizes = [100, 20_000, 3000, 16 << 10, (16 << 10) - 1, 200_000, 0, 5];
    const sent = sizes.map((n, i) => bytes(n, i + 1));
    for (const b of sent) app.send(hS, b);
    for (let i = 0; i < sizes.length; i++) {
      const m = await recvOne(p);
      expect(same(m.payload, sent[i]), `message ${i} (${sizes[i]} B)`).toBe(true);
      if (sizes[i] >= 16 << 10) expect(m.payload.buffer.byteLength).toBe(sizes[i]);
      m.release();
    }
    expect(seen).toEqual({ posts: 1, own: 3, push: 5 });
  });

  it("a released large payload's buffer goes back and carries a later large push, its tail zeroed", async () => {
    const { app, hS, port } = await world();
    const p = await RemotePeer.connect(port as any);
    app.send(hS, new Uint8Array(65537).fill(0xaa));
    (await recvOne(p)).release();
    await p.stats(); // a post: the buffer goes back with it
    app.send(hS, bytes(40_000, 9)); // fits: at most twice its size
    const m = await recvOne(p);
    expect(same(m.payload, bytes(40_000, 9))).toBe(true);
    const whole = new Uint8Array(m.payload.buffer);
    expect(whole.byteLength).toBe(65537); // the buffer given back
    expect(whole.subarray(40_000).every((v) => v === 0)).toBe(true);
  });

  it("a refused batch with large payloads goes again item by item: each payload exact, the object that cannot move EOPNOTSUPP", async () => {
    const { app, hS, port } = await world();
    const p = await RemotePeer.connect(port as any);
    const ch = channel();
    app.send(hS, bytes(70_000, 1));
    app.send(hS, bytes(30_000, 2), { objects: [ch.port1, { v: 2 }] });
    app.send(hS, bytes(10, 3));
    app.send(hS, bytes(20_000, 4));
    new MessageChannel().port1.postMessage(null, [ch.port1]); // the batch's transfer list is refused
    for (const [i, n] of [[1, 70_000], [2, 30_000], [3, 10], [4, 20_000]]) {
      const m = await recvOne(p);
      expect(same(m.payload, bytes(n, i)), `message ${i}`).toBe(true);
      if (i === 2) {
        expect((m.objects[0] as Bus1Error).code).toBe("EOPNOTSUPP");
        expect(m.objects[1]).toEqual({ v: 2 });
      }
      m.release();
    }
    expect(await p.send(hS, new Uint8Array(3))).toEqual({ errors: [null] });
  });

  for (const when of ["before the send", "after the send, before the push"]) {
    it(`a stream locked ${when}, in a post with large and small payloads: EOPNOTSUPP in its place, every payload exact`, async () => {
      // a port refuses a locked stream only after it has emptied the post's buffers: such a stream never goes in
      const { app, hS, serving, port } = await world({ livenessMs: 0 });
      let closed: string | null = null;
      serving.closed.then((r) => { closed = r; });
      const p = await RemotePeer.connect(port as any);
      const rs = new ReadableStream();
      if (when === "before the send") rs.getReader();
      app.send(hS, bytes(70_000, 1));
      app.send(hS, bytes(30_000, 2), { objects: [rs, { v: 2 }] });
      app.send(hS, bytes(100, 3));
      if (when !== "before the send") rs.getReader();
      for (const [i, n] of [[1, 70_000], [2, 30_000], [3, 100]]) {
        const m = await recvOne(p);
        expect(same(m.payload, bytes(n, i)), `message ${i}`).toBe(true);
        if (i === 2) {
          expect((m.objects[0] as Bus1Error).code).toBe("EOPNOTSUPP");
          expect(m.objects[1]).toEqual({ v: 2 });
        }
      }
      expect(await p.send(hS, new Uint8Array(3))).toEqual({ errors: [null] });
      expect(closed).toBeNull();
    });
  }

  it("a server's batch whose payload buffer is reachable from an object or an answer, at any depth, is refused", () => {
    const own = (b: number, size: number, o = -1) => [OWN, 0, 1, 0, b, size, 0, o];
    const push = (at: number, size: number, o = -1) => [PUSH, 0, 1, 0, at, size, 0, o];
    const a = new ArrayBuffer(64);
    const reach = (x: unknown) => [own(0, 3, 1), null, [a, [[x], []]]];
    const bad: [string, unknown[]][] = [
      ["a view of it", reach(new Uint8Array(a, 8))],
      ["in an array", reach([[1, a]])],
      ["in a record", reach({ deep: { er: a } })],
      ["a Map key", reach(new Map([[a, 1]]))],
      ["a Map value", reach(new Map([[1, new DataView(a)]]))],
      ["in a Set", reach(new Set([a]))],
      ["an answer's value", [[...own(0, 3), 4, 1, 1], null, [a, { payload: a }]]],
      ["the data a sole payload keeps", [push(0, 8, 0), a, [[[{ b: a }], []]]]],
      ["the data given back at once", [[...push(0, 4), ...push(4, 4, 0)], a, [[[new Uint8Array(a)], []]]]],
    ];
    for (const [why, batch] of bad) expect(readServerBatch(batch).ok, why).toBe(false);
    // the same shapes with other buffers are fine
    const b = new ArrayBuffer(64);
    const fine = readServerBatch([[...own(0, 3, 1), ...push(0, 0, 2)], null, [a, [[new Uint8Array(b), { b }], []], [[new Map([[1, b]])], []]]]);
    if (!fine.ok) throw new Error(fine.reason);
    expect(fine.messages.length).toBe(2);
  });

  it("a server's OWN item is checked: the buffer must be an ArrayBuffer in extras, large enough, used once, not the data, not an object", () => {
    const own = (b: number, size: number, o = -1) => [OWN, 0, 1, 0, b, size, 0, o];
    const buf = () => { const b = new ArrayBuffer(64); new Uint8Array(b).set([1, 2, 3]); return b; };
    const good = readServerBatch([own(0, 3), null, [buf()]]);
    if (!good.ok) throw new Error(good.reason);
    const m = good.messages[0] as any;
    expect([m.own, [...m.payload], m.payload.buffer.byteLength]).toEqual([true, [1, 2, 3], 64]);
    const a = buf(), data = new ArrayBuffer(8);
    const bad: [string, unknown[]][] = [
      ["no extras", [own(0, 3), null, null]],
      ["index past extras", [own(1, 3), null, [a]]],
      ["negative index", [own(-1, 3), null, [a]]],
      ["a string", [own(0, 3), null, ["abc"]]],
      ["a view, not a buffer", [own(0, 3), null, [new Uint8Array(64)]]],
      ["a SharedArrayBuffer", [own(0, 3), null, [new SharedArrayBuffer(64)]]],
      ["an empty buffer", [own(0, 0), null, [new ArrayBuffer(0)]]],
      ["size past the buffer", [own(0, 65), null, [a]]],
      ["the same buffer twice", [[...own(0, 3), ...own(0, 3)], null, [a]]],
      ["the same buffer at two indexes (one clone: one object)", [[...own(0, 3), ...own(1, 3)], null, [a, a]]],
      ["the batch's data", [[PUSH, 0, 1, 0, 0, 8, 0, -1, ...own(0, 3)], data, [data]]],
      ["an object of a push too", [[...own(0, 3), ...[PUSH, 0, 1, 0, -1, 0, 0, 1]], null, [a, [[a], []]]]],
      ["an object of its own push", [own(0, 3, 1), null, [a, [[7, a], []]]]],
      ["cut short", [[OWN, 0, 1, 0, 0, 3, 2, 5], null, [a]]],
    ];
    for (const [why, batch] of bad) expect(readServerBatch(batch).ok, why).toBe(false);
  });
});
