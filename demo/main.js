// bus1-wasm demo: an app and its plugins on one bus.
//
// The app owns nodes and hands out capabilities (handles to them); plugins can
// only reach what they were given. Everything runs on this thread for now.
// Each plugin touches nothing but its own Peer and the handle IDs in its
// grant, so it can move into a worker_thread later: the worker would get
// `peer.ref` and the grant through workerData, call `bus.adopt(ref)` after
// `Bus.attach(bus.handle)`, and loop on `peer.wait()` instead of `pump()`.
//
// Run: npm start

import { performance } from "node:perf_hooks";
import { Bus, Bus1Error, HANDLE_INVALID } from "bus1-wasm";

const encoder = new TextEncoder();
const decoder = new TextDecoder();

function encode(body) {
  return encoder.encode(JSON.stringify(body));
}

// TextDecoder refuses views on shared memory: decode a copy of the slice.
function decode(message) {
  return JSON.parse(decoder.decode(message.payload.slice()));
}

function say(who, text) {
  console.log(`${who.padEnd(8)} ${text}`);
}

// Runs a bus call; a Bus1Error is printed and returned as its code.
function attempt(who, what, fn) {
  try {
    return { ok: true, value: fn() };
  } catch (e) {
    if (!(e instanceof Bus1Error)) throw e;
    say(who, `${what} failed: ${e.code}`);
    return { ok: false, code: e.code };
  }
}

// ---------------------------------------------------------------------------
// Plugin side: could move into a worker_thread as is.

// Caller-chosen node ID (bits 0 and 1 clear): the plugin's reply node.
const REPLY_NODE = 4;

class Plugin {
  // grant: { service } — the plugin's handle ID for the app's service node.
  constructor(name, peer, grant) {
    this.name = name;
    this.peer = peer;
    this.service = grant.service;
    this.log = HANDLE_INVALID;
    this.pending = 0;
  }

  // A request to the app's service node. The reply comes to REPLY_NODE, which
  // the first send creates; attaching it gives the app the right to answer.
  request(op, text) {
    const r = attempt(this.name, `request ${op}`, () =>
      this.peer.send(this.service, encode({ op, text, from: this.name }), { handles: [REPLY_NODE] }),
    );
    if (r.ok) {
      this.pending++;
      say(this.name, `→ app: ${op} "${text}" (reply handle ${REPLY_NODE} attached)`);
    }
    return r;
  }

  onMessage(message) {
    if (message.type === "node-destroy") {
      const what = message.destination === this.service ? "the app's service node" : `node ${message.destination}`;
      say(this.name, `node-destroy for handle ${message.destination}: ${what} is gone, capability revoked`);
      return;
    }
    if (message.type === "node-release") {
      say(this.name, `node-release for node ${message.destination}: nobody else holds a handle to it now`);
      return;
    }
    const body = decode(message);
    const handles = message.handles;
    message.release();
    if (body.reply !== undefined) {
      this.pending--;
      say(this.name, `← app: "${body.reply}"`);
    } else if (body.grant === "log") {
      this.log = handles[0];
      say(this.name, `← app: a handle to the app's log node, arriving in a message as ID ${this.log}`);
      this.peer.send(this.log, encode({ line: `${this.name} is up, ${this.pending} requests open` }));
    } else if (body.grant === "config") {
      say(this.name, `← app: config ${JSON.stringify(body.config)}; done with it, releasing handle ${handles[0]}`);
      this.peer.release(handles[0]);
    }
  }
}

// ---------------------------------------------------------------------------
// App side.

const SERVICE_NODE = 4; // requests from plugins
const LOG_NODE = 8; // log lines from plugins that were given it
const CONFIG_NODE = 12; // handed out once, to show node-release

const DICTIONARY = { teh: "the", brwn: "brown", jmups: "jumps" };

class App {
  constructor(peer) {
    this.name = "app";
    this.peer = peer;
    this.replyTo = new Map(); // plugin name → the app's handle to its reply node
    this.requests = 0;
  }

  // transfer: the app holds both peers, so the handle is installed at once.
  grantService(plugin) {
    const id = this.peer.transfer(SERVICE_NODE, plugin.peer);
    say(this.name, `transfer(node ${SERVICE_NODE}) → ${plugin.name} holds the service node as handle ${id}`);
    return { service: id };
  }

  // A handle attached to a message reaches the plugin when it receives it.
  sendCapability(replyHandle, grant, node, extra = {}) {
    this.peer.send(replyHandle, encode({ grant, ...extra }), { handles: [node] });
    say(this.name, `sent node ${node} (${grant}) attached to a message to reply handle ${replyHandle}`);
  }

  onMessage(message) {
    if (message.type === "node-release") {
      say(this.name, `node-release for node ${message.destination}: no plugin holds it any more`);
      return;
    }
    if (message.type === "node-destroy") {
      say(this.name, `node-destroy for node ${message.destination} (own node, handle kept)`);
      return;
    }
    const body = decode(message);
    const [reply] = message.handles;
    message.release();
    if (message.destination === LOG_NODE) {
      say(this.name, `log: ${body.line}`);
      return;
    }
    this.requests++;
    if (body.op === "flood") return;
    // Coalescing: a plugin's reply node arrives as the same ID every time, with
    // one more reference each time; keep one reference per plugin.
    if (this.replyTo.get(body.from) === reply) this.peer.release(reply);
    else this.replyTo.set(body.from, reply);
    const answer =
      body.op === "spell"
        ? body.text.split(" ").map((w) => DICTIONARY[w] ?? w).join(" ")
        : body.text.replace(/\b\w/g, (c) => c.toUpperCase());
    say(this.name, `← request ${body.op} on node ${message.destination}, reply handle ${reply}`);
    this.peer.send(reply, encode({ reply: answer }));
  }
}

// Delivers until no participant has anything left to receive.
function pump(participants) {
  let busy = true;
  while (busy) {
    busy = false;
    for (const p of participants) {
      for (let m = p.peer.recv(); m !== null; m = p.peer.recv()) {
        busy = true;
        p.onMessage(m);
      }
    }
  }
}

// ---------------------------------------------------------------------------
// The story.

function section(title) {
  console.log(`\n== ${title}`);
}

function story(bus) {
  section("peers");
  const app = new App(bus.connect({ user: 0 }));
  const names = ["spell", "format", "flood"];
  const peers = names.map((name, i) => bus.connect({ user: i + 1 }));
  say("app", "peer of user 0; plugins spell, format, flood are peers of users 1, 2, 3");

  section("capabilities by transfer");
  const grants = names.map((name, i) => app.grantService({ name, peer: peers[i] }));
  const plugins = names.map((name, i) => new Plugin(name, peers[i], grants[i]));
  const [spell, format, flood] = plugins;
  const everyone = [app, ...plugins];

  section("requests and replies");
  spell.request("spell", "teh quick brwn fox");
  format.request("format", "jmups over the lazy dog");
  pump(everyone);
  spell.request("spell", "teh end");
  pump(everyone);

  section("capabilities in messages");
  const formatReply = app.replyTo.get("format");
  app.sendCapability(formatReply, "log", LOG_NODE);
  app.sendCapability(formatReply, "config", CONFIG_NODE, { config: { width: 72 } });
  pump(everyone);
  if (format.log !== spell.service) {
    // Handle IDs are local to a peer: format's number means nothing to spell.
    const r = attempt("spell", `send to ${format.log} (format's ID of the log node)`, () =>
      spell.peer.send(format.log, encode({ line: "spell sneaks in" })),
    );
    if (r.ok) say("spell", `sending to ${format.log} worked: that ID names something of spell's own`);
  }

  section("quotas: a flooding plugin");
  let queued = 0;
  let code = null;
  const junk = encode({ op: "flood", from: "flood" });
  for (; queued < 100_000; queued++) {
    try {
      flood.peer.send(flood.service, junk);
    } catch (e) {
      if (!(e instanceof Bus1Error)) throw e;
      code = e.code;
      break;
    }
  }
  if (code) say("flood", `queued ${queued} messages on the app, then ${code}: its fair share is used up`);
  else say("flood", `queued ${queued} messages without an error (no quota hit)`);
  if (spell.request("spell", "teh quota works").ok) say("spell", "still gets through while flood is blocked");
  format.request("format", "so does format");
  const before = app.requests;
  pump(everyone);
  say("app", `drained ${app.requests - before} requests (flood included) and released their slices`);

  section("revocation");
  app.peer.destroy(SERVICE_NODE, { releaseHandles: true });
  say("app", `destroy(node ${SERVICE_NODE}): every holder is told, the app drops its own handle`);
  pump(everyone);
  spell.request("spell", "anyone there?");
  spell.peer.release(spell.service);
  say("spell", `released its dead handle ${spell.service}`);

  return { app, plugins };
}

// ---------------------------------------------------------------------------
// Measured figures: send → recv → release on one thread.

function measure(bus, size, seconds) {
  const sender = bus.connect({ user: 100 });
  const receiver = bus.connect({ user: 101 });
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
  round(10_000); // warm-up: let the JIT and the pool settle
  const batch = 10_000;
  let count = 0;
  const start = performance.now();
  let elapsed = 0;
  while (elapsed < seconds * 1000) {
    round(batch);
    count += batch;
    elapsed = performance.now() - start;
  }
  sender.disconnect();
  receiver.disconnect();
  const perSecond = count / (elapsed / 1000);
  return { count, elapsed, perSecond, mbPerSecond: (perSecond * size) / 1e6 };
}

function benchmark(bus) {
  section("measured here: send → recv → release, one thread, one destination");
  for (const [label, size] of [["64 B", 64], ["1 KiB", 1024]]) {
    const m = measure(bus, size, 1);
    const rate = Math.round(m.perSecond).toLocaleString("en-US");
    console.log(`${label.padStart(6)}: ${rate} messages/s, ${m.mbPerSecond.toFixed(1)} MB/s of payload (${m.count} messages in ${m.elapsed.toFixed(0)} ms)`);
  }
}

console.log("bus1-wasm demo: one bus, an app and three plugins, all on this thread");
const bus = await Bus.create();
try {
  story(bus);
  benchmark(bus);
} finally {
  bus.close();
}
