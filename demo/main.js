// bus1-wasm demo: an app on the main thread and five plugins, each in its
// own worker thread, on one bus in shared memory: three attached to the bus,
// two sandboxed.
//
// The app owns nodes and hands out capabilities (handles to them); plugins can
// only reach what they were given. A worker gets the bus by `bus.handle` and
// its peer by `peer.ref` (both structured-cloneable, through workerData), then
// calls `Bus.attach(handle)` and `bus.adopt(ref)`, and blocks in `peer.wait()`
// until a message is ready (demo/plugin.mjs). The main thread watches every
// worker with `bus.watch(worker)`.
//
// A sandboxed plugin (demo/sandboxed.mjs) is never given the bus: the app
// serves it one peer over a MessagePort (`bus.serve(peer, port)`), and the
// plugin uses it through `RemotePeer.connect(port)`. It can reach only what
// that peer's handles reach, it is flow-controlled and held to its own quota
// user, and its serving ends when its worker dies.
//
// Each step needs the one before it to have happened in another thread. A
// "director" peer on this thread plays the script: it tells a plugin what to
// do next by a message to the plugin's node 8, and hears back on its own
// node 4. It is scaffolding for the demo, not part of the capability story.
//
// The end measures cross-thread throughput and latency (demo/sink.mjs) and
// the same-thread rate, and prints them with how they were measured.
//
// Run: npm start

import os from "node:os";
import { performance } from "node:perf_hooks";
import { MessageChannel, Worker } from "node:worker_threads";
import { Bus, Bus1Error } from "bus1-wasm";
import {
  SERVICE_NODE, LOG_NODE, CONFIG_NODE, CONTROL_NODE, REPORT_NODE,
  DATA, END, PING, QUIT, encode, decode, say, print, section,
} from "./shared.mjs";

const workers = [];
const servings = []; // every bus.serve of the demo, closed at the end if something failed
let failure = null; // the first error a worker threw

// `transferList`: a sandboxed plugin's port. Only workers on the bus are watched.
function startWorker(bus, file, label, workerData, transferList) {
  const worker = new Worker(new URL(file, import.meta.url), { workerData, transferList });
  if (!transferList) bus.watch(worker); // when it exits, the peer references it still holds are closed
  const entry = { worker, label, thread: worker.threadId, exit: null };
  entry.exited = new Promise((resolve) => worker.once("exit", (code) => {
    entry.exit = code;
    resolve(code);
  }));
  worker.on("error", (e) => { failure ??= new Error(`${label}'s worker failed: ${e?.stack ?? e}`); });
  workers.push(entry);
  return entry;
}

// ---------------------------------------------------------------------------
// The app: a peer of user 0, served from this thread's event loop.

const DICTIONARY = { teh: "the", brwn: "brown", jmups: "jumps", wroks: "works", adn: "and" };

class App {
  constructor(peer) {
    this.peer = peer;
    this.replyTo = new Map(); // plugin name → the app's handle to its reply node
    this.ownerOf = new Map(); // that handle → plugin name
    this.requests = 0;
    this.logLines = 0;
    this.released = new Set(); // own nodes that got node-release
    this.gone = new Set(); // plugins whose reply node was destroyed
    this.talked = new Set(); // plugins the app talked to over a port they sent
    this.paused = false;
  }

  // A port that came in a message: the app and the plugin talk over it, off the bus.
  talkOver(name, port) {
    port.onmessage = ({ data }) => {
      say("app", `on ${name}'s port: "${data}"; closes it`);
      port.close();
      this.talked.add(name);
    };
    port.postMessage(`hello ${name}, the app answers on the port you sent`);
  }

  // transfer: the app holds both peers here, so the handle is installed at once.
  grantService(name, peer) {
    const id = this.peer.transfer(SERVICE_NODE, peer);
    say("app", `transfer(node ${SERVICE_NODE}) → ${name}'s peer holds the service node as handle ${id}`);
    return id;
  }

  // A handle attached to a message reaches the plugin when it receives it.
  sendCapability(name, grant, node, extra = {}) {
    const reply = this.replyTo.get(name);
    say("app", `sends node ${node} (${grant}) attached to a message to ${name}'s reply node (handle ${reply})`);
    this.peer.send(reply, encode({ grant, ...extra }), { handles: [node] });
  }

  onMessage(message) {
    if (message.type === "node-release") {
      this.released.add(message.destination);
      say("app", `node-release for node ${message.destination}: no plugin holds it any more`);
      return;
    }
    if (message.type === "node-destroy") {
      const name = this.ownerOf.get(message.destination);
      say("app", `node-destroy for handle ${message.destination}: ${name}'s reply node is gone `
        + `(its peer was disconnected); releasing the handle`);
      this.peer.release(message.destination);
      this.gone.add(name);
      return;
    }
    const body = decode(message);
    const [reply] = message.handles;
    const objects = message.objects;
    message.release();
    if (message.destination === LOG_NODE) {
      this.logLines++;
      say("app", `log: ${body.line}`);
      return;
    }
    this.requests++;
    if (body.op === "flood") return;
    if (body.op === "probe") {
      say("app", `← ${body.from}: a probe on node ${message.destination} (the one app node it holds a handle to)`);
      return;
    }
    if (body.op === "port") {
      const port = objects[0];
      say("app", `← ${body.from}: a message with objects[0] = ${port?.constructor?.name}; posts on it`);
      this.talkOver(body.from, port);
      return;
    }
    // Coalescing: a plugin's reply node arrives as the same ID every time, with
    // one more reference each time; keep one reference per plugin.
    if (this.replyTo.get(body.from) === reply) this.peer.release(reply);
    else {
      this.replyTo.set(body.from, reply);
      this.ownerOf.set(reply, body.from);
    }
    const answer =
      body.op === "spell"
        ? body.text.split(" ").map((w) => DICTIONARY[w] ?? w).join(" ")
        : body.text.replace(/\b\w/g, (c) => c.toUpperCase());
    say("app", `← ${body.from}: ${body.op} on node ${message.destination}, reply handle ${reply}`);
    this.peer.send(reply, encode({ reply: answer }));
  }
}

// ---------------------------------------------------------------------------
// The director: the demo's script (see the top of the file).

class Director {
  constructor(peer) {
    this.peer = peer;
    this.control = new Map(); // plugin name → the director's handle to its node 8
    this.reports = [];
    this.gone = new Set(); // plugins whose node 8 was destroyed
  }

  order(name, instruction) {
    this.peer.send(this.control.get(name), encode(instruction));
  }

  onMessage(message) {
    if (message.type === "node-destroy") {
      for (const [name, id] of this.control) {
        if (id !== message.destination) continue;
        this.gone.add(name);
        say("director", `node-destroy for handle ${id} (${name}'s node ${CONTROL_NODE}): ${name}'s peer is disconnected`);
        this.peer.release(id);
      }
      return;
    }
    if (message.type === "node-release") return; // node 4: no plugin reports any more
    this.reports.push(decode(message));
    message.release();
  }

  // The first report from `name` of one of `events`, taken out of the list.
  take(name, events) {
    const i = this.reports.findIndex((r) => r.from === name && events.includes(r.event));
    return i < 0 ? null : this.reports.splice(i, 1)[0];
  }
}

function drain(participant) {
  for (let m = participant.peer.recv(); m !== null; m = participant.peer.recv()) participant.onMessage(m);
}

// Resolves when one of the peers is readable, or after `ms`.
async function readableAny(peers, ms) {
  const abort = new AbortController();
  const timer = setTimeout(() => abort.abort(), ms);
  try {
    await Promise.race(peers.map((p) => p.readable(abort.signal).then(() => {}, () => {})));
  } finally {
    clearTimeout(timer);
    abort.abort();
  }
}

// Serves the app (unless it is paused) and the director until `done()`
// returns something, without blocking this thread's event loop.
async function until(what, { app, director }, done) {
  const deadline = performance.now() + 10_000;
  for (;;) {
    if (failure) throw failure;
    drain(director);
    if (!app.paused) drain(app);
    const result = done();
    if (result) return result;
    if (performance.now() > deadline) throw new Error(`timed out waiting for ${what}`);
    await readableAny(app.paused ? [director.peer] : [app.peer, director.peer], 50);
  }
}

const expect = (cast, name, ...events) =>
  until(`${name}: ${events.join(" or ")}`, cast, () => cast.director.take(name, events));

// A plugin's request to the app, and whether the bus took it.
async function ask(cast, name, op, text) {
  cast.director.order(name, { do: "request", op, text });
  return (await expect(cast, name, "sent", "refused")).event === "sent";
}

// ---------------------------------------------------------------------------
// The story.

const PLUGINS = [
  { name: "spell", user: 1 },
  { name: "format", user: 2 },
  { name: "flood", user: 3 },
];

// Served plugins: never on the bus, each its own quota user.
const SANDBOXED = [
  { name: "guest", user: 4 },
  { name: "spammer", user: 5 },
];

const ALL = [...PLUGINS, ...SANDBOXED];

async function story(bus) {
  section("one bus, three plugins attached to it, two sandboxed");
  say("app", `Bus.create(): ${bus.shared ? "shared" : "private"} memory; the app is a peer of user 0 on this thread`);
  const app = new App(bus.connect({ user: 0 }));
  const director = new Director(bus.connect({ user: 9 }));
  const cast = { app, director };
  const peers = new Map();
  for (const { name, user } of PLUGINS) {
    const peer = bus.connect({ user });
    peers.set(name, peer);
    const service = app.grantService(name, peer);
    director.control.set(name, peer.transfer(CONTROL_NODE, director.peer));
    const report = director.peer.transfer(REPORT_NODE, peer);
    const { worker } = startWorker(bus, "./plugin.mjs", name, { handle: bus.handle, ref: peer.ref, name, service, report });
    say("main", `new Worker(plugin.mjs) → thread ${worker.threadId} for ${name} (user ${user}), `
      + `given bus.handle, ${name}'s peer.ref and handle ${service}; bus.watch(worker)`);
  }
  const served = new Map(); // name → { serving, reason, entry }
  for (const { name, user } of SANDBOXED) {
    // The same grant, made while this thread holds the peer; then the peer is served.
    const peer = bus.connect({ user });
    const service = app.grantService(name, peer);
    director.control.set(name, peer.transfer(CONTROL_NODE, director.peer));
    const report = director.peer.transfer(REPORT_NODE, peer);
    const { port1, port2 } = new MessageChannel();
    const serving = bus.serve(peer, port1);
    servings.push(serving);
    const entry = startWorker(bus, "./sandboxed.mjs", name, { port: port2, name, service, report }, [port2]);
    const s = { serving, reason: null, entry };
    serving.closed.then((reason) => {
      s.reason = reason;
      say("app", `serving.closed for ${name}: "${reason}"`);
    });
    served.set(name, s);
    say("main", `new Worker(sandboxed.mjs) → thread ${entry.worker.threadId} for ${name} (user ${user}), given one `
      + `MessagePort and the numbers ${service}, ${report}: no bus.handle, no peer.ref (and no bus.watch); `
      + `bus.serve(peer, port1) took over this thread's reference`);
  }
  for (const { name } of ALL) {
    await expect(cast, name, "up");
    peers.get(name)?.close();
  }
  say("main", "closed this thread's references to the attached plugins' peers: each worker's is now the only one");

  section("requests and replies, across threads");
  // both in flight at once: the lines of the two threads interleave
  await Promise.all([ask(cast, "spell", "spell", "teh quick brwn fox"), ask(cast, "format", "format", "jmups over the lazy dog")]);
  await expect(cast, "spell", "reply");
  await expect(cast, "format", "reply");
  await ask(cast, "spell", "spell", "teh end");
  await expect(cast, "spell", "reply");

  section("capabilities in messages");
  app.sendCapability("format", "log", LOG_NODE);
  app.sendCapability("format", "config", CONFIG_NODE, { config: { width: 72 } });
  const { id: logId } = await expect(cast, "format", "log");
  await expect(cast, "format", "config");
  await until("the log line and node-release", cast, () => app.logLines > 0 && app.released.has(CONFIG_NODE));
  director.order("spell", { do: "try", id: logId, whose: "format's" });
  await expect(cast, "spell", "tried");

  section("a sandboxed plugin: one served peer, nothing else");
  // The app serves guest like any other plugin: the same node, the same reply path.
  await ask(cast, "guest", "spell", "teh sandbox wroks");
  await expect(cast, "guest", "reply");
  director.order("guest", { do: "probe" });
  await expect(cast, "guest", "probed");
  director.order("guest", { do: "port" });
  await until("the talk over guest's port", cast, () => app.talked.has("guest") && director.take("guest", ["talked"]));

  section("quotas: flooding plugins, one attached, one sandboxed");
  app.paused = true;
  say("app", "busy: stops receiving for a while");
  director.order("flood", { do: "flood" });
  await expect(cast, "flood", "flooded");
  director.order("spammer", { do: "flood" });
  await expect(cast, "spammer", "flooded");
  say("app", `stats(): ${app.peer.stats().slices} of its ${app.peer.query().maxSlices} slices are taken by queued messages, `
    + "each flooder held to its user's fair share (SPEC.md §8)");
  const others = [["spell", "spell", "teh quota works"], ["format", "format", "so does format"], ["guest", "spell", "adn guest"]];
  const through = await Promise.all(others.map(([name, op, text]) => ask(cast, name, op, text)));
  if (through.every(Boolean)) {
    say("app", "spell, format and guest still got through while flood and spammer are refused; back to receiving");
  } else {
    say("app", "back to receiving");
  }
  app.paused = false;
  const before = app.requests;
  for (let i = 0; i < others.length; i++) if (through[i]) await expect(cast, others[i][0], "reply");
  say("app", `drained ${app.requests - before} requests (the floods included) and released their slices`);

  section("revocation");
  say("app", `destroy(node ${SERVICE_NODE}, releaseHandles): every holder is told, in its own thread or over its `
    + "port; the app drops its own handle");
  app.peer.destroy(SERVICE_NODE, { releaseHandles: true });
  for (const { name } of ALL) await expect(cast, name, "revoked");
  await ask(cast, "spell", "spell", "anyone there?");
  await ask(cast, "guest", "spell", "anyone there?");

  section("workers exit");
  for (const { name } of PLUGINS) director.order(name, { do: "exit" });
  for (const { name } of PLUGINS) await expect(cast, name, "bye");
  await until("the workers' exit", cast, () =>
    PLUGINS.every(({ name }) => director.gone.has(name))
    && app.gone.has("spell") && app.gone.has("format") && app.released.has(LOG_NODE));

  section("sandboxed plugins end: one lets go, one is killed");
  director.order("spammer", { do: "exit" });
  await expect(cast, "spammer", "bye");
  await until("spammer's serving to end", cast, () => served.get("spammer").reason !== null && director.gone.has("spammer"));
  const guest = served.get("guest").entry;
  say("main", `guest's worker.terminate(): its thread dies mid-loop, with its RemotePeer open`);
  guest.worker.terminate();
  await until("guest's serving to end", cast, () =>
    served.get("guest").reason !== null && director.gone.has("guest") && app.gone.has("guest"));
  await until("the workers' exit", cast, () => workers.every((w) => w.exit !== null));
  for (const w of workers) {
    say("main", `${w.label}'s worker (thread ${w.thread}) exited with code ${w.exit}${w === guest ? " (terminated)" : ""}`);
  }
  // The app and the director stay open until bus.close() at the end. A
  // readable() leaves Atomics.waitAsync pending on the peer's wake word for
  // up to 1 s; if the peer were closed and its slot reused by a new peer in
  // that time, the late waiter-count decrement would land on the new peer
  // and its wait() would miss wake-ups (a host bug, reported).
}

// ---------------------------------------------------------------------------
// Measured figures.

const sleeper = new Int32Array(new SharedArrayBuffer(4));

// Blocks this thread until `peer` has a message (main thread: Node allows it).
function recvBlocking(peer, ms = 10_000) {
  for (;;) {
    const message = peer.recv();
    if (message) return message;
    if (!peer.wait(ms)) throw new Error("the measuring worker did not answer");
  }
}

function fmt(n, digits = 0) {
  return n.toLocaleString("en-US", { maximumFractionDigits: digits, minimumFractionDigits: digits });
}

// main → worker: sends `size`-byte messages for `ms`, then an end marker;
// the clock stops when the worker's count for it comes back.
function oneWay(source, toSink, size, ms) {
  const payload = new Uint8Array(size); // payload[0] = DATA
  const end = new Uint8Array([END]);
  let sent = 0;
  let backoffs = 0;
  const start = performance.now();
  while (performance.now() - start < ms) {
    for (let i = 0; i < 1000; i++) {
      try {
        source.send(toSink, payload);
        sent++;
      } catch (e) {
        if (!(e instanceof Bus1Error) || e.code !== "EDQUOT") throw e;
        backoffs++; // the worker's queue is full: let it catch up
        Atomics.wait(sleeper, 0, 0, 0.1);
      }
    }
  }
  source.send(toSink, end);
  const reply = recvBlocking(source);
  const elapsed = performance.now() - start;
  const [count, bytes] = new Float64Array(reply.payload.slice().buffer);
  reply.release();
  if (count !== sent || bytes !== sent * size) throw new Error(`sent ${sent} messages, the worker counted ${count}`);
  return { count, elapsed, backoffs, perSecond: count / (elapsed / 1000), mbPerSecond: bytes / (elapsed / 1000) / 1e6 };
}

function pingPong(source, toSink, rounds, ms) {
  const ping = new Uint8Array([PING]);
  const samples = [];
  const start = performance.now();
  for (let i = 0; i < rounds && performance.now() - start < ms; i++) {
    const t = performance.now();
    source.send(toSink, ping);
    recvBlocking(source).release();
    samples.push((performance.now() - t) * 1000);
  }
  samples.sort((a, b) => a - b);
  const at = (q) => samples[Math.min(samples.length - 1, Math.floor(q * samples.length))];
  return { rounds: samples.length, median: at(0.5), p10: at(0.1), p90: at(0.9), p99: at(0.99) };
}

function sameThread(bus, size, ms) {
  const sender = bus.connect({ user: 100 });
  const receiver = bus.connect({ user: 100 });
  const dst = receiver.transfer(4, sender);
  const payload = new Uint8Array(size).fill(0xab);
  const round = (n) => {
    for (let i = 0; i < n; i++) {
      sender.send(dst, payload);
      const message = receiver.recv();
      if (message === null) throw new Error("a message sent on this thread was not ready");
      message.release();
    }
  };
  round(20_000); // warm-up
  let count = 0;
  const start = performance.now();
  let elapsed = 0;
  while (elapsed < ms) {
    round(10_000);
    count += 10_000;
    elapsed = performance.now() - start;
  }
  sender.disconnect();
  receiver.disconnect();
  const perSecond = count / (elapsed / 1000);
  return { count, elapsed, perSecond, mbPerSecond: (perSecond * size) / 1e6 };
}

async function benchmark(bus) {
  section(`measured here: ${os.cpus().length} cores, Node ${process.version}, ${os.cpus()[0]?.model?.trim() ?? "unknown CPU"}`);
  // One user on both ends: quotas apply (16384 slices, 16 MiB in flight by
  // default) but no fair share between users.
  const source = bus.connect({ user: 100 });
  const sink = bus.connect({ user: 100 });
  const toSink = sink.transfer(4, source);
  const back = source.transfer(4, sink);
  const { worker, exited } = startWorker(bus, "./sink.mjs", "sink", { handle: bus.handle, ref: sink.ref, back });
  say("main", `new Worker(sink.mjs) → thread ${worker.threadId}; bus.watch(worker)`);
  await source.readable();
  source.recv().release();
  sink.close();

  print("method: main sends N messages to node 4 of a peer the worker holds, as fast as send() allows,");
  print("        for 1 s (after a 0.2 s warm-up), sleeping 0.1 ms when the receiver's quota says EDQUOT;");
  print("        the worker blocks in wait(), then recv() and release() each; the clock stops when main");
  print("        receives the worker's count after an end marker. Sender and worker are one user.");
  for (const [label, size] of [["64 B", 64], ["1 KiB", 1024]]) {
    oneWay(source, toSink, size, 200);
    const m = oneWay(source, toSink, size, 1000);
    print(`  main → worker ${label.padStart(5)}: ${fmt(m.perSecond)} messages/s, ${fmt(m.mbPerSecond, 1)} MB/s `
      + `(${m.count} messages in ${fmt(m.elapsed)} ms, ${m.backoffs} EDQUOT back-offs)`);
  }

  print("method: main sends a 1-byte ping and blocks in wait() for the worker's 1-byte pong, which the");
  print("        worker sends as soon as its own wait() returns; each round timed alone; 1000 warm-up rounds.");
  pingPong(source, toSink, 1000, 500);
  const l = pingPong(source, toSink, 20_000, 1500);
  print(`  round trip main ⇄ worker: median ${fmt(l.median, 1)} µs (p10 ${fmt(l.p10, 1)}, p90 ${fmt(l.p90, 1)}, `
    + `p99 ${fmt(l.p99, 1)} µs) over ${l.rounds} rounds`);

  print("method: for reference, one thread: send → recv → release to a peer of the same user, for 0.5 s");
  print("        after 20000 warm-up rounds.");
  for (const [label, size] of [["64 B", 64], ["1 KiB", 1024]]) {
    const m = sameThread(bus, size, 500);
    print(`  same thread   ${label.padStart(5)}: ${fmt(m.perSecond)} messages/s, ${fmt(m.mbPerSecond, 1)} MB/s `
      + `(${m.count} messages in ${fmt(m.elapsed)} ms)`);
  }

  source.send(toSink, new Uint8Array([QUIT]));
  await exited;
  source.close();
}

// ---------------------------------------------------------------------------

print("bus1-wasm demo: an app on the main thread, each plugin in its own worker thread, one shared bus;");
print("three plugins attached to the bus, two sandboxed on a served peer each");
const bus = await Bus.create();
const started = performance.now();
try {
  await story(bus);
  await benchmark(bus);
} finally {
  // Workers have exited by now; terminate() and close() are the safety net if something failed.
  for (const serving of servings) serving.close("the demo ended");
  await Promise.all(workers.map((w) => w.worker.terminate()));
  bus.close();
}
print(`\n(${fmt((performance.now() - started) / 1000, 1)} s; every worker exited, the bus is closed in every thread)`);
