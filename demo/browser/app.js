// The browser demo's page (npm run demo:browser; server.mjs serves it).
//
// The page makes a bus — shared memory when the page is cross-origin
// isolated, private memory in the page when it is not — and one peer per
// worker, wires the capabilities (each worker gets handles to every other
// worker's inbox node, one to the page's node, and worker 0 the token: a
// handle to a node of the page), then hands each worker its peer: by
// `bus.handle` and `peer.ref` to attach and adopt (shared), or served over a
// MessagePort (`bus.serve`, the fallback). After that, the workers talk among
// themselves (worker.js); the page only pings worker 0, draws the bus from
// `bus.inspect()` twice a second, and checks from the workers' reports that
// they all received the multicasts in one order.
import { Bus } from "../../dist/host-browser/index.js";
import { PING, PONG, encode, decode } from "./wire.js";
import { OrderCheck } from "./order.js";
import { drawPicture } from "./picture.js";

const WORKERS = 4;
const INBOX = 4; // each worker's node, made by its first use
const PAGE = 4; // the page's node for pongs
const TOKEN_NODE = 8; // the page's node whose handle travels the ring

const $ = (id) => document.getElementById(id);
const status = { workers: [], rate: 0, total: 0, rtts: [], errors: [] };
globalThis.demo = status; // for the test that checks what the page shows

function note(text) {
  const line = `${new Date().toLocaleTimeString()}  ${text}\n`;
  $("log").textContent = (line + $("log").textContent).slice(0, 4000);
}

const isolated = globalThis.crossOriginIsolated === true;
const bus = await Bus.create();
status.mode = bus.shared ? "shared" : "private";
$("mode").className = `mode ${bus.shared ? "shared" : "fallback"}`;
$("mode").textContent = bus.shared
  ? `cross-origin isolated: one bus in shared memory, ${WORKERS} Web Workers attached to it`
  : `not cross-origin isolated${isolated ? "" : " (no COOP/COEP headers)"}: a private bus in this page, ` +
    `${WORKERS} workers on served peers (RemotePeer over a MessagePort): slower, no attach`;

// the peers and their capabilities, all made here
const page = bus.connect();
const peers = Array.from({ length: WORKERS }, () => bus.connect());
const names = new Map([[page.ref.slot, "page"]]);
peers.forEach((p, i) => names.set(p.ref.slot, `worker ${i}`));
const pageTo = peers.map((p) => p.transfer(INBOX, page));
const setups = peers.map((p, i) => ({
  index: i,
  workers: WORKERS,
  next: (i + 1) % WORKERS,
  to: peers.map((q, j) => (j === i ? null : q.transfer(INBOX, p))),
  toPage: page.transfer(PAGE, p),
  token: i === 0 ? page.transfer(TOKEN_NODE, p) : null,
}));

const check = new OrderCheck(WORKERS);
const started = performance.now();
let lastTotal = 0, lastAt = started;

for (const [i, setup] of setups.entries()) {
  const worker = new Worker(new URL("./worker.js", import.meta.url), { type: "module", name: `worker ${i}` });
  worker.onmessage = ({ data: m }) => {
    if (m.t === "up") note(`worker ${i} is up (${bus.shared ? "attached, adopted its peer" : "RemotePeer connected"})`);
    else if (m.t === "report") {
      status.workers[i] = m;
      check.add(i, m.order, m.violations, m.firstViolation);
    } else if (m.t === "error") {
      status.errors.push(m.message);
      note(`worker ${i} failed: ${m.message}`);
    }
  };
  worker.onerror = (e) => {
    status.errors.push(String(e.message));
    note(`worker ${i}: ${e.message}`);
  };
  if (bus.shared) {
    worker.postMessage({ ...setup, bus: bus.handle, ref: peers[i].ref });
  } else {
    const { port1, port2 } = new MessageChannel();
    bus.serve(peers[i], port1);
    worker.postMessage({ ...setup, port: port2 }, [port2]);
  }
}

// round trips to worker 0, four a second
let pings = 0;
setInterval(() => {
  try {
    page.send(pageTo[0], encode(PING, 255, pings++, performance.now()));
  } catch (e) {
    note(`ping: ${e.message}`);
  }
}, 250);
(async () => {
  for (;;) {
    const m = page.recv();
    if (!m) {
      await page.readable();
      continue;
    }
    if (m.type === "data") {
      const { kind, time } = decode(m.payload);
      if (kind === PONG) status.rtts = [...status.rtts.slice(-39), performance.now() - time];
    }
    m.release();
  }
})().catch((e) => note(`page: ${e.message}`));

// twice a second: counters, the order check, and the picture
setInterval(() => {
  const now = performance.now();
  const total = status.workers.reduce((n, w) => n + (w?.received ?? 0), 0);
  status.rate = ((total - lastTotal) * 1000) / (now - lastAt);
  status.total = total;
  lastTotal = total;
  lastAt = now;
  $("rate").textContent = Math.round(status.rate).toLocaleString();
  $("total").textContent = total.toLocaleString();
  const rtt = [...status.rtts].sort((a, b) => a - b)[status.rtts.length >> 1];
  $("rtt").textContent = rtt === undefined ? "–" : `${(rtt * 1000).toFixed(0)} µs (median of the last ${status.rtts.length})`;

  const result = check.result();
  status.order = result;
  $("order").className = result.ok ? "ok" : "bad";
  $("order").textContent = result.ok
    ? `passed: ${result.compared.toLocaleString()} multicasts compared pairwise, each exactly once, in each sender's order`
    : `FAILED: ${result.why}`;

  const t0 = performance.now();
  const snap = bus.inspect();
  const took = performance.now() - t0;
  const drawn = drawPicture($("picture"), snap, names);
  status.picture = drawn;
  $("counts").textContent = `${drawn.peers} · ${drawn.nodes} · ${drawn.handles}`;
  $("snap").textContent = `${took.toFixed(2)} ms`;

  const rows = status.workers.map((w, i) =>
    `<tr><td>worker ${i}</td><td>${(w?.sent ?? 0).toLocaleString()}</td><td>${(w?.received ?? 0).toLocaleString()}</td>` +
    `<td>${w?.holds ?? 0}</td></tr>`).join("");
  $("workers").innerHTML = `<tr><th>worker</th><th>sent</th><th>received</th><th>holds</th></tr>${rows}`;
}, 500);

note(`bus made (${bus.shared ? "shared" : "private"} memory), ${WORKERS} peers wired, ${Math.round(performance.now() - started)} ms`);
