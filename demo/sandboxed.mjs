// A sandboxed plugin, in its own worker thread. Unlike demo/plugin.mjs it is
// never given the bus: no bus.handle, no peer.ref, no shared memory. It gets
// one MessagePort, over which the app serves it one peer (`bus.serve` on the
// main thread), and the handle IDs of its grant, which are plain numbers.
// `RemotePeer.connect(port)` makes that peer usable here: the same methods as
// a local Peer, each returning a promise; received messages are the plugin's
// own copies, pushed to it over the port.
//
// As in plugin.mjs, the demo's director tells it what to do next by a message
// to its node 8 (it arrives like any other message), and it reports to the
// director's node 4 through a handle it was given.
import { threadId, workerData } from "node:worker_threads";
import { RemotePeer, Bus1Error } from "bus1-wasm";
import { REPLY_NODE, CONTROL_NODE, encode, decode, say as sayAs } from "./shared.mjs";

const { port, name, service, report } = workerData;
const say = (text) => sayAs(name, text);

const peer = await RemotePeer.connect(port);
say(`RemotePeer.connect(port): ${name}'s peer, served from the main thread; `
  + `it holds handles ${service} (the app's service node) and ${report} (the director's report node), and nodes of its own`);

let revoked = false;

// Progress for the director (the demo's script, not part of the story).
async function tell(event, extra = {}) {
  await peer.send(report, encode({ from: name, event, ...extra }));
}

// Awaits a RemotePeer call; a Bus1Error is returned as the error, anything else thrown.
async function attempt(promise) {
  try {
    return { value: await promise, error: null };
  } catch (e) {
    if (!(e instanceof Bus1Error)) throw e;
    return { value: undefined, error: e };
  }
}

async function request(op, text) {
  const sent = peer.send(service, encode({ op, text, from: name }), { handles: [REPLY_NODE] });
  say(`→ app: ${op} "${text}" (remote.send, handle to its node ${REPLY_NODE} attached for the reply)`);
  const { error } = await attempt(sent);
  if (error) say(`request ${op} failed: ${error.code}`);
  await tell(error ? "refused" : "sent", { code: error?.code ?? null });
}

// Tries to reach what it was not given.
async function probe() {
  // Every core-assigned ID below 1024 (n·8 + 1 and n·8 + 3, SPEC.md §3), a
  // send to each, all in flight at once. (Caller-chosen IDs, multiples of 4,
  // would only make nodes of its own.)
  const guesses = [];
  for (let id = 1; id < 1024; id += 2) if ((id & 7) === 1 || (id & 7) === 3) guesses.push(id);
  const probe = encode({ op: "probe", from: name });
  const results = await Promise.all(guesses.map((id) => attempt(peer.send(id, probe))));
  const count = new Map();
  const reached = [];
  results.forEach(({ error }, i) => {
    if (error === null) reached.push(guesses[i]);
    else count.set(error.code, (count.get(error.code) ?? 0) + 1);
  });
  const codes = [...count].map(([code, n]) => `${n} × ${code}`).join(", ");
  say(`sends to ${guesses.length} guessed handle IDs (every core-assigned ID below 1024): `
    + `${codes}; delivered only to ${reached.join(" and ")}, the two handles it was given`);

  // A peer.ref of another peer, forged: a served peer transfers only to itself.
  const forged = { bus: 1, slot: 0, gen: 1 };
  const t = await attempt(peer.transfer(service, forged));
  say(`transfer(${service}, ${JSON.stringify(forged)}), a forged peer.ref, to hand the service node on: `
    + (t.error ? t.error.message : `worked?! → ${t.value}`));
  await tell("probed", { reached, codes });
}

// Passes a MessagePort to the app inside a message; the two then talk over it, off the bus.
async function passPort() {
  const { port1: mine, port2: theirs } = new MessageChannel();
  mine.onmessage = async ({ data }) => {
    say(`on its own port, from the app: "${data}"; answers there`);
    mine.postMessage(`hello app, this is ${name} (thread ${threadId}), off the bus`);
    mine.close();
    await tell("talked");
  };
  await peer.send(service, encode({ op: "port", from: name }), { objects: [theirs] });
  say("→ app: a message with objects: [port] (a MessageChannel's second port, transferred)");
}

// Sends to the app until the bus refuses: the app is not receiving.
async function flood() {
  const junk = encode({ op: "flood", from: name });
  // First without waiting for any answer: the client keeps at most 1024 calls in flight.
  const burst = [];
  let eagain = 0;
  for (let i = 0; i < 1500; i++) burst.push(peer.send(service, junk).then(() => null, (e) => e));
  const results = await Promise.all(burst);
  let queued = 0;
  let code = null;
  for (const e of results) {
    if (e === null) queued++;
    else if (e instanceof Bus1Error && e.code === "EAGAIN") eagain++;
    else if (e instanceof Bus1Error) code ??= e.code;
    else throw e;
  }
  say(`1500 remote.send calls at once: ${queued} taken, ${eagain} × EAGAIN at once (at most 1024 calls wait for the app's side)`);
  // Then 256 calls in flight at a time, until the app's quota refuses.
  while (code === null && queued < 100_000) {
    const batch = [];
    for (let i = 0; i < 256; i++) batch.push(peer.send(service, junk).then(() => null, (e) => e));
    for (const e of await Promise.all(batch)) {
      if (e === null) queued++;
      else if (e instanceof Bus1Error) code ??= e.code;
      else throw e;
    }
  }
  if (code) say(`queued ${queued} messages on the app in all, then ${code}: its user's fair share of the app's quota is used up`);
  else say(`queued ${queued} messages without an error (no quota hit)`);
  await tell("flooded", { queued, code });
}

async function command(body) {
  switch (body.do) {
    case "request":
      await request(body.op, body.text);
      return true;
    case "probe":
      await probe();
      return true;
    case "port":
      await passPort();
      return true;
    case "flood":
      await flood();
      return true;
    case "exit":
      if (revoked) await peer.release(service);
      say(`${revoked ? `released its dead handle ${service}; ` : ""}remote.close(): lets go of its peer, and exits`);
      await tell("bye");
      return false;
    default:
      throw new Error(`${name}: unknown instruction ${JSON.stringify(body)}`);
  }
}

async function onMessage(message) {
  if (message.type === "node-destroy") {
    if (message.destination === service) {
      revoked = true;
      say(`node-destroy for handle ${service}: the app's service node is gone, capability revoked`);
      await tell("revoked");
    } else {
      say(`node-destroy for handle ${message.destination}`);
    }
    return true;
  }
  if (message.type === "node-release") return true;
  const body = decode(message);
  message.release(); // the app's side released the slice when it pushed the copy; this gives the buffer back
  if (message.destination === CONTROL_NODE) return command(body);
  if (body.reply !== undefined) {
    say(`← app: "${body.reply}" (pushed over the port: its own copy of the payload)`);
    await tell("reply", { text: body.reply });
  }
  return true;
}

await tell("up");
for await (const message of peer) {
  if (!(await onMessage(message))) break;
}
await peer.close();
