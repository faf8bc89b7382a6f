// Attacks from a red-team review of the served peer's hot paths (large payloads in
// buffers of their own, small payloads snapshotted by copy, a plugin's common
// send, a payload made again when the memory grows), each fixed, the test
// now says what holds. Node only (node:vm for another realm's arrays).
import vm from "node:vm";
import { describe, expect, it } from "vitest";
import { Bus1Error, RemotePeer } from "bus1-wasm";
import { newBus, enc, dec } from "./helpers.js";
import { growAfter, privateBus, bytes } from "./growth/harness.js";
import { served, recvOne, tick } from "./serving.js";
import { readServerBatch } from "../dist/host-common/batch.js";
import { coreOf } from "../dist/host-common/bus.js";


/** What a call did: ok and its result, or its Bus1Error (anything else is named as such). */
function outcome(f: () => unknown): string {
  try {
    return `ok ${JSON.stringify(f())}`;
  } catch (e) {
    return e instanceof Bus1Error ? `${e.code}: ${e.message}` : `NOT Bus1Error ${String(e)}`;
  }
}

/** The same for a promise (its result cut to `max` characters). */
async function settled(pr: Promise<unknown>, max = Infinity): Promise<string> {
  try {
    return `ok ${JSON.stringify(await pr)}`.slice(0, max);
  } catch (e) {
    return e instanceof Bus1Error ? `${e.code}: ${e.message}` : `NOT Bus1Error ${String(e)}`;
  }
}
const settle = (pr: Promise<unknown>) => settled(pr);

const same = (a: Uint8Array, b: Uint8Array) => a.length === b.length && a.every((v, i) => v === b[i]);

/** A bus, an app peer, a served peer (its serving's end observed) and a RemotePeer on it. */
async function world() {
  const bus = await newBus();
  const app = bus.connect(), s = bus.connect();
  const hApp = app.transfer(0x100, s);
  const hS = s.transfer(0x200, app);
  const { serving, port } = served(s, { livenessMs: 0 });
  let closed: string | null = null;
  serving.closed.then((r) => { closed = r; });
  const p = await RemotePeer.connect(port as any);
  return { bus, app, s, hApp, hS, p, closed: () => closed };
}

{

describe("A: own-memory view at offset 0 while send_begin grows (private bus)", () => {
  for (const [off, n] of [[0, 1], [0, 10], [0, 64], [0, 65], [8, 10]] as const) {
    it(`#sendOne view(mem, ${off}, ${n})`, async () => {
      const bus = await privateBus();
      const a = bus.connect(), b = bus.connect();
      const h = b.transfer(0x100, a);
      const mem = bus.handle.memory;
      const view = new Uint8Array(mem.buffer, off, n);
      const expected = view.slice();
      const g = growAfter(bus, ["send_begin"]);
      const r = outcome(() => a.send(h, view));
      g.off();
      const m = b.recv();
      expect(r).toMatch(/^ok/);
      expect(m && [...m.payload]).toEqual([...expected]);
    });
  }
  // readPayload copies one of at most 64 bytes; a larger one is a view of the memory, made again when it grows
  for (const [off, n] of [[0, 0], [0, 10], [8, 100]] as const) {
    it(`#sendMany [view(mem, ${off}, ${n}), 100 bytes]`, async () => {
      const bus = await privateBus();
      const a = bus.connect(), b = bus.connect();
      const h = b.transfer(0x100, a);
      const view = new Uint8Array(bus.handle.memory.buffer, off, n);
      const expected = [...view, ...bytes(100, 1)];
      const g = growAfter(bus, ["send_begin"]);
      const r = outcome(() => a.send([h], [view, bytes(100, 1)]));
      g.off();
      expect(r).toMatch(/^ok/);
      expect(g.count).toBeGreaterThan(0);
      expect([...b.recv()!.payload]).toEqual(expected);
    });
  }
});

describe("B: RemotePeer fast path with genuine Uint8Arrays that are not instanceof Uint8Array", () => {
  const makers: [string, () => Uint8Array][] = [
    ["cross-realm (vm)", () => vm.runInNewContext("new Uint8Array([1,2,3])")],
    ["null prototype", () => Object.setPrototypeOf(new Uint8Array([1, 2, 3]), null)],
    ["null prototype with own size 0", () => Object.assign(Object.setPrototypeOf(new Uint8Array([1, 2, 3]), null), { size: 0 })],
  ];
  for (const [name, make] of makers) {
    it(name, async () => {
      const { app, hApp, p, bus } = await world();
      // the local peer takes it
      const local = bus.connect(); const hl = app.transfer(0x300, local);
      let r: string;
      try { r = `ok ${JSON.stringify(await p.send(hApp, make()))}`; } catch (e) { r = e instanceof Bus1Error ? `${e.code}: ${e.message}` : `NOT Bus1Error ${String(e)}`; }
      await tick(5);
      const got = app.recv();
      // then an ordinary send
      let r2: string;
      try { r2 = `ok ${JSON.stringify(await Promise.race([p.send(hApp, enc("after")), tick(500).then(() => "timeout")]))}`; } catch (e) { r2 = e instanceof Bus1Error ? `${e.code}: ${e.message}` : `NOT Bus1Error ${String(e)}`; }
      await tick(5);
      const got2 = app.recv();
      let r3: string;
      try { r3 = `ok ${JSON.stringify(await p.stats())}`.slice(0, 40); } catch (e) { r3 = String(e); }
      let r4: string;
      try { r4 = `ok ${JSON.stringify(await p.send(hApp, enc("after2")))}`; } catch (e) { r4 = String(e); }
      await tick(5);
      const got4 = app.recv();
      expect(r).toMatch(/^ok/);
      expect(got && [...got.payload]).toEqual([1, 2, 3]);
      expect(r2).toMatch(/^ok/);
    });
  }
});
}

{

describe("B2: one bad (cross-realm) payload among sends of one turn", () => {
  it("corrupts a queued message of the same batch", async () => {
    const { app, hApp, p } = await world();
    const bad = vm.runInNewContext("new Uint8Array([1,2,3])");
    const rs = [p.send(hApp, enc("one")), p.send(hApp, enc("two")), p.send(hApp, bad), p.send(hApp, enc("XYZ"))];
    const outs = await Promise.all(rs.map(settle));
    await tick(10);
    const got: string[] = [];
    for (let m = app.recv(); m; m = app.recv()) got.push(dec(m.payload));
    expect(got).toEqual(["one", "two", "\x01\x02\x03", "XYZ"]);
  });
});

describe("D: bad destination numbers, local vs remote", () => {
  const dsts = [NaN, -0, 0, Infinity, -Infinity, 2 ** 53, 2 ** 53 + 2, Number.MAX_SAFE_INTEGER, -1, 0.5, -(2 ** 53), Number.MIN_VALUE];
  for (const d of dsts) {
    for (const payload of [undefined, new Uint8Array(3)]) {
      it(`send(${Object.is(d, -0) ? "-0" : d}, ${payload ? "3 bytes" : "none"})`, async () => {
        const { p, bus, closed } = await world();
        const local = bus.connect();
        let lo: string;
        try { lo = `ok ${JSON.stringify(local.send(d, payload))}`; } catch (e) { lo = e instanceof Bus1Error ? `${e.code}: ${e.message}` : `NOT ${e}`; }
        let sync = "no";
        let pr: Promise<unknown>;
        try { pr = p.send(d, payload); } catch (e) { sync = String(e); pr = Promise.resolve(); }
        const re = await settle(pr);
        const after = await settle(p.stats());
        expect(sync).toBe("no");
        expect(re).toBe(lo);
        expect(after).toMatch(/^ok/);
        expect(closed()).toBeNull();
      });
    }
  }
});

describe("F: payload changed or detached right after send() returns", () => {
  for (const n of [0, 1, 63, 64, 65, 1000, 70_000]) {
    it(`${n} bytes`, async () => {
      const { app, hApp, p } = await world();
      const a = new Uint8Array(n).fill(7);
      const b = new Uint8Array(n).fill(9);
      const pa = p.send(hApp, a);
      a.fill(1);
      const pb = p.send(hApp, b); // queued in this turn (not the first item)
      b.fill(2);
      if (n) structuredClone(b.buffer, { transfer: [b.buffer] }); // detach b
      const c = new Uint8Array(new ArrayBuffer(n + 8, { maxByteLength: n + 100 } as any)); c.fill(5);
      const pc = p.send(hApp, c);
      (c.buffer as any).resize(0);
      expect([await settle(pa), await settle(pb), await settle(pc)]).toEqual(Array(3).fill('ok {"errors":[null]}'));
      await tick(5);
      const got = [];
      for (let m = app.recv(); m; m = app.recv()) got.push(m.payload.length ? `${m.payload.length}x${m.payload[0]}` : "0");
      expect(got).toEqual([n ? `${n}x7` : "0", n ? `${n}x9` : "0", `${n + 8}x5`]);
    });
  }
});
}

{

describe("E: a stream locked by the post itself (another transferable of the same post)", () => {
  for (const objs of ["[T.readable, T]", "[T.writable, T]", "msg1 [T.readable], msg2 [T]"]) {
    it(objs, async () => {
      const { app, hS, p, closed } = await world();
      const T = new TransformStream();
      app.send(hS, bytes(70_000, 1));
      if (objs === "[T.readable, T]") app.send(hS, bytes(30_000, 2), { objects: [T.readable, T], transfer: [T.readable, T] } as any);
      else if (objs === "[T.writable, T]") app.send(hS, bytes(30_000, 2), { objects: [T.writable, T], transfer: [T.writable, T] } as any);
      else { app.send(hS, bytes(30_000, 2), { objects: [T.readable], transfer: [T.readable] } as any); app.send(hS, bytes(10, 5), { objects: [T], transfer: [T] } as any); }
      app.send(hS, bytes(100, 3));
      const got: string[] = [];
      for (let i = 0; i < (objs.startsWith("msg1") ? 4 : 3); i++) {
        let m;
        try { m = await Promise.race([recvOne(p), tick(300).then(() => null)]); } catch (e) { got.push(`recv: ${String(e)}`); break; }
        if (!m) break;
        got.push(`${m.payload.length} objs=${m.objects.map((o: any) => o instanceof Bus1Error ? o.code : o?.constructor?.name).join(",")}`);
      }
      await tick(20);
      expect(closed()).toBeNull();
      // the first to move goes; the other, which that one locks, arrives as EOPNOTSUPP in its place
      const side = objs.includes("writable") ? "WritableStream" : "ReadableStream";
      expect(got).toEqual(objs.startsWith("msg1")
        ? ["70000 objs=", `30000 objs=${side}`, "10 objs=EOPNOTSUPP", "100 objs="]
        : ["70000 objs=", `30000 objs=${side},EOPNOTSUPP`, "100 objs="]);
    });
  }
});

describe("G: a getter in options shrinks/detaches the payload's buffer after it was read", () => {
  for (const n of [1, 63, 64, 65, 1000]) {
    for (const how of ["shrink", "detach", "fill"]) {
      it(`${n} bytes, ${how}`, async () => {
        const bus = await newBus();
        const app = bus.connect(), s = bus.connect(), s2 = bus.connect();
        const hApp = app.transfer(0x100, s);
        const hApp2 = app.transfer(0x200, s2);
        const { port } = served(s2, { livenessMs: 0 });
        const p = await RemotePeer.connect(port as any);
        const mk = () => {
          const buf = new (ArrayBuffer as any)(n, { maxByteLength: n * 2 });
          const u = new Uint8Array(buf); u.fill(4);
          const opts = { handles: { get length() { if (how === "shrink") buf.resize(0); else if (how === "detach") structuredClone(buf, { transfer: [buf] }); else u.fill(8); return 0; } } };
          return { u, opts };
        };
        let lo: string; { const { u, opts } = mk(); try { lo = `ok ${JSON.stringify(s.send(hApp, u, opts))}`; } catch (e) { lo = e instanceof Bus1Error ? `${e.code}: ${e.message}` : `NOT ${e}`; } }
        const lm = app.recv();
        let sync = "no"; let pr: Promise<unknown> = Promise.resolve();
        { const { u, opts } = mk(); try { pr = p.send(hApp2, u, opts); } catch (e) { sync = String(e); } }
        const re = await settle(pr);
        await tick(5);
        const rm = app.recv();
        const after = await settle(p.send(hApp2, enc("z")));
        await tick(5);
        const am = app.recv();
        expect(sync).toBe("no");
        expect(re).toBe(lo);
      });
    }
  }
});

describe("H: seed / push lists frozen, local vs remote", () => {
  it("lists", async () => {
    const { app, hS, p, bus } = await world();
    app.send(hS, enc("x"));
    const m = await recvOne(p);
    const lp = bus.connect(); const hl = lp.transfer(0x300, app);
    app.send(hl, enc("x"));
    const lm = lp.recv()!;
    app.send(hS, enc("y"), { objects: [{ a: 1 }] });
    const m2 = await recvOne(p);
    app.send(hl, enc("y"), { objects: [{ a: 1 }] });
    const lm2 = lp.recv()!;
    const r = await p.send(hS, enc("z"));
    const l = app.send(hS, enc("z"));
  });
});
}

{
const settle = (pr: Promise<unknown>) => settled(pr, 60);

describe("B3: failed fast-path sends leave their pending calls behind", () => {
  it("1024 failures, then every call is EAGAIN", async () => {
    const bus = await newBus();
    const app = bus.connect(), s = bus.connect();
    const hApp = app.transfer(0x100, s);
    const { port } = served(s, { livenessMs: 0 });
    const p = await RemotePeer.connect(port as any);
    const bad = vm.runInNewContext("new Uint8Array([1,2,3])");
    for (let i = 0; i < 1024; i++) { await settle(p.send(hApp, bad)); await p.query(); }
    const r = await settle(p.query());
    expect(r).toMatch(/^ok/);
  });
});

describe("H2: seed lists", () => {
  it("local vs remote", async () => {
    const bus = await newBus();
    const app = bus.connect(), s = bus.connect(), l = bus.connect();
    s.send([], enc("seed"), { seed: true });
    l.send([], enc("seed"), { seed: true });
    const lm = l.recv({ seed: true })!;
    const { port } = served(s, { livenessMs: 0 });
    const p = await RemotePeer.connect(port as any);
    const rm = (await p.recv({ seed: true }))!;
  });
});

describe("R: reaches() and an Error's cause (non-enumerable, kept by structured clone)", () => {
  it("an OWN buffer reachable as an object's error.cause", () => {
    const OWN = 12;
    const a = new ArrayBuffer(64);
    const err = structuredClone(new Error("x", { cause: a }));
    const batch = structuredClone([[OWN, 0, 1, 0, 0, 3, 0, 1], null, [a, [[{ e: new Error("x", { cause: a }) }], []]]]);
    const r = readServerBatch(batch as unknown[]);
    const x = r.ok ? (r.messages[0] as any) : null;
    expect(r.ok).toBe(false);
  });
});
}

{
describe("M: the bus's memory never reaches a plugin inside an object: an error's cause, a getter that answers twice", () => {
  for (const shared of [false, true]) {
    for (const wrap of ["plain object", "error cause", ...(shared ? [] : ["getter, second read"])]) {
      it(`${wrap} (${shared ? "shared" : "private"} bus)`, async () => {
        const bus = await newBus({ shared });
        const app = bus.connect(), s = bus.connect(), other = bus.connect(), third = bus.connect();
        const hS = s.transfer(0x200, app);
        other.send(app.transfer(0x100, other), enc("x"));
        other.send(third.transfer(0x300, other), enc("secret of another peer"));
        const m = app.recv()!; // m.payload: a view of the bus's memory
        const { port } = served(s, { livenessMs: 0 });
        const p = await RemotePeer.connect(port as any);
        let reads = 0;
        const obj = wrap === "plain object" ? { cause: m.payload }
          : wrap === "error cause" ? new Error("bad input", { cause: m.payload })
          : { get cause() { return reads++ ? m.payload : null; } };
        app.send(hS, enc("x"), { objects: [obj] });
        const o = (await recvOne(p)).objects[0];
        expect(o).toBeInstanceOf(Bus1Error);
        expect((o as Bus1Error).code).toBe("EOPNOTSUPP");
      });
    }
  }
});
}

{
class Sub extends Uint8Array { get byteLength() { return 1; } get buffer() { throw new Error("no"); } get byteOffset() { return 5; } }
const kinds: [string, (n: number) => Uint8Array][] = [
  ["SAB", (n) => new Uint8Array(new SharedArrayBuffer(n + 3), 3, n).fill(7)],
  ["subclass with lying getters", (n) => new Sub(n).fill(7)],
  ["length-tracking resizable at 2", (n) => { const b = new (ArrayBuffer as any)(n + 2, { maxByteLength: 1000 }); const u = new Uint8Array(b, 2); u.fill(7); return u; }],
  ["patched instance props", (n) => Object.defineProperties(new Uint8Array(n).fill(7), { length: { value: 1000 }, byteLength: { value: 1000 } })],
];
describe("P: payload kinds, local vs remote", () => {
  for (const [name, mk] of kinds) for (const n of [0, 1, 63, 64, 65, 300]) {
    it(`${name} ${n}`, async () => {
      const bus = await newBus();
      const app = bus.connect(), s = bus.connect(), s2 = bus.connect();
      const h1 = app.transfer(0x100, s), h2 = app.transfer(0x200, s2);
      const { port } = served(s2, { livenessMs: 0 });
      const p = await RemotePeer.connect(port as any);
      const out = (r: unknown) => JSON.stringify(r);
      let lo: string; try { lo = out(s.send(h1, mk(n))); } catch (e) { lo = String(e); }
      const lm = app.recv();
      let ro: string; try { ro = out(await p.send(h2, mk(n))); } catch (e) { ro = String(e); }
      await tick(3);
      const rm = app.recv();
      const d = (m: any) => m ? `${m.payload.length}:${m.payload.every((x: number) => x === 7)}` : "-";
      expect(`${ro} ${d(rm)}`).toBe(`${lo} ${d(lm)}`);
      expect(d(lm)).toBe(n ? `${n}:true` : "0:true");
    });
  }
});
describe("S: shared bus, own memory at offset 0 while memory grows", () => {
  for (const n of [1, 64, 65]) it(`${n}`, async () => {
    const bus = await newBus({ shared: true });
    const a = bus.connect(), b = bus.connect();
    const h = b.transfer(0x100, a);
    const view = new Uint8Array(bus.handle.memory.buffer, 0, n);
    const want = [...view];
    const g = growAfter(bus, ["send_begin"]);
    a.send(h, view);
    g.off();
    expect(g.count).toBe(1);
    expect([...b.recv()!.payload]).toEqual(want);
  });
});
}

{
it("Uint8Array[Symbol.hasInstance] replaced after load", async () => {
  const bus = await newBus();
  const app = bus.connect(), s = bus.connect();
  const h = app.transfer(0x100, s);
  const { port } = served(s, { livenessMs: 0 });
  const p = await RemotePeer.connect(port as any);
  Object.defineProperty(Uint8Array, Symbol.hasInstance, { value: () => false, configurable: true });
  let r: string;
  try { r = JSON.stringify(await p.send(h, enc("hi"))); } catch (e) { r = String(e); }
  delete (Uint8Array as any)[Symbol.hasInstance];
  await tick(3);
  const m = app.recv();
  expect(m && dec(m.payload)).toBe("hi");
});
}
