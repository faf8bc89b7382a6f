// Red-team tests of lanes, second round (commit c065383: the cut, deferred records).
import { afterEach, describe, expect, it } from "vitest";
import { Worker } from "node:worker_threads";
import { Bus, type Message, type Peer } from "bus1-wasm";

const buses: Bus[] = [];
const workers: Worker[] = [];
afterEach(async () => {
  for (const w of workers.splice(0)) await w.terminate();
  for (const b of buses.splice(0)) { try { b.close(); } catch { /* closed */ } }
});
async function newBus(options: Record<string, unknown> = {}): Promise<Bus> {
  const bus = await Bus.create({ shared: true, ...options } as any);
  buses.push(bus);
  return bus;
}
function start(file: string, data: unknown): Worker {
  const w = new Worker(new URL(`./workers/${file}`, import.meta.url), { workerData: data });
  workers.push(w);
  return w;
}
function result<T>(w: Worker, ms = 20_000): Promise<T> {
  return new Promise((res, rej) => {
    const t = setTimeout(() => rej(new Error("worker timeout")), ms);
    w.once("message", (m) => { clearTimeout(t); res(m); });
    w.once("error", (e) => { clearTimeout(t); rej(e); });
  });
}
/** A message as the test names it (the first payload byte tells S's messages apart); a data slice is released. */
function name(m: Message): string {
  const n = m.type === "data" ? `data ${m.destination}:${m.payload[0]?.toString(16)}` : `${m.type} ${m.destination}`;
  if (m.type === "data") m.release();
  return n;
}
function all(q: Peer): string[] {
  const out: string[] = [];
  for (let m = q.recv(); m; m = q.recv()) out.push(name(m));
  return out;
}
/** Makes S's lane through `to` (8 locked sends), and drains the receiver. */
function makeLane(s: Peer, to: number, q: Peer): void {
  for (let i = 0; i < 8; i++) s.send(to, new Uint8Array(1));
  all(q);
}

describe("lanes: an operation that posts on two queues (SPEC §5)", () => {
  for (const lanes of [true, false]) it(`recv drops an undeliverable message holding handles of O1 and R: node-release to O1 and to R, and S's ${lanes ? "lane messages" : "locked messages (control: S of another user)"} b→R then a→O1 must not make a cycle`, async () => {
    const bus = await newBus();
    const R = bus.connect();            // connected first: its record below O1's, so R's lock is taken before O1's
    const X = bus.connect();
    const S = bus.connect(lanes ? {} : { user: 2 });
    const H = bus.connect({ user: 1 }); // another user: no lane, its send locks O1
    const O1 = bus.connect();
    // R owns D (8, the message's destination), N2 (16, carried) and E (24, S's lane); O1 owns N1 (8), F (16), G (24)
    const eS = R.transfer(24, S), fS = O1.transfer(16, S), gH = O1.transfer(24, H);
    makeLane(S, eS, R);
    makeLane(S, fS, O1);
    const dX = R.transfer(8, X), n1X = O1.transfer(8, X), n2X = R.transfer(16, X);
    X.send(dX, new Uint8Array([0xdd]), { handles: [n1X, n2X] });
    X.release(n1X); X.release(n2X);          // the message holds the last references but the owners'
    R.destroy(8, { releaseHandles: true });  // R lets go of D: the queued message will be dropped at recv

    const ctl = new SharedArrayBuffer(64), c = new Int32Array(ctl);
    const tbuf = new SharedArrayBuffer(16), t = new Float64Array(tbuf);
    const ws = start("lanes-redteam2-lane.mjs", { handle: bus.handle, ref: S.ref, dests: [eS, fS], ctl, tbuf, delayMs: 200 });
    const sDone = result<any>(ws);
    while (Atomics.load(c, 5) === 0) await new Promise((r) => setTimeout(r, 5));
    const wh = start("lanes-redteam-hold.mjs", { handle: bus.handle, ref: H.ref, dest: gH, ctl, tbuf, holdMs: 800, waitAt: 7 });
    const hDone = result<any>(wh);
    while (Atomics.load(c, 0) === 0) await new Promise((r) => setTimeout(r, 5));
    Atomics.store(c, 2, 1); Atomics.notify(c, 2);
    // R locks R, then waits for O1 (held by H's send): meanwhile S sends b to R, then a to O1
    const first = R.recv();
    const s = await sDone, h = await hDone;
    const got = [first ? name(first) : "none", ...all(R)];
    expect(s.error).toBeUndefined();
    expect(h.rc).toBe(1);
    const o1 = all(O1);
    console.log(JSON.stringify({ R: got, O1: o1, sDoneBeforeHCommit: t[1] < t[0] }));
    if (lanes) expect(t[1]).toBeLessThan(t[0]);   // S's two sends completed while R's recv waited for O1
    // S sent b (to R, 0xa0) and then a (to O1, 0xa1). R's recv caused node-release on O1 (N1) and on R (N2).
    const aBeforeRel = o1.indexOf("data 16:a1") < o1.indexOf("node-release 8");
    const relBeforeB = got.indexOf("node-release 16") < got.indexOf("data 24:a0");
    // b → a (one thread, one after the other); a before rel(N1) on O1; rel(N2) before b on R;
    // rel(N1) and rel(N2) are one operation's: no global order has all four
    expect(o1).toContain("data 16:a1"); expect(got).toContain("data 24:a0");
    expect(aBeforeRel && relBeforeB).toBe(false);
  });
});
