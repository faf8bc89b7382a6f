// A plugin, in its own worker thread. It gets the bus handle, a reference to
// its peer and the handle IDs of its grant through workerData, and nothing
// else: it can reach only the nodes those handles name.
//
// It blocks in peer.wait() until something arrives: a reply or a capability
// from the app (to its node 4), a notification, or the demo director's next
// instruction (to its node 8), which stands in for whatever would make a real
// plugin act.
import { threadId, workerData } from "node:worker_threads";
import { Bus, Bus1Error } from "bus1-wasm";
import { REPLY_NODE, CONTROL_NODE, encode, decode, say as sayAs } from "./shared.mjs";

const { handle, ref, name, service, report } = workerData;
const say = (text) => sayAs(name, text);

const bus = await Bus.attach(handle);
const peer = bus.adopt(ref);
say(`Bus.attach(bus.handle), bus.adopt(peer.ref): this thread now holds a reference to ${name}'s peer`);

let log = null; // handle to the app's log node, once given
let revoked = false;

// Progress for the director (the demo's script, not part of the story).
function tell(event, extra = {}) {
  peer.send(report, encode({ from: name, event, ...extra }));
}

// Runs a bus call; a Bus1Error is printed and returned as its code.
function attempt(what, fn) {
  try {
    fn();
    return null;
  } catch (e) {
    if (!(e instanceof Bus1Error)) throw e;
    say(`${what} failed: ${e.code}`);
    return e.code;
  }
}

// A request to the app's service node. The reply comes to REPLY_NODE, which
// the first send creates; attaching it gives the app the right to answer.
function request(op, text) {
  const code = attempt(`request ${op}`, () =>
    peer.send(service, encode({ op, text, from: name }), { handles: [REPLY_NODE] }),
  );
  if (code === null) say(`→ app: ${op} "${text}" (handle to its node ${REPLY_NODE} attached for the reply)`);
  tell(code === null ? "sent" : "refused", { code });
}

// Sends to the app until the bus refuses: the app is not receiving.
function flood() {
  const junk = encode({ op: "flood", from: name });
  let queued = 0;
  let code = null;
  for (; queued < 100_000; queued++) {
    try {
      peer.send(service, junk);
    } catch (e) {
      if (!(e instanceof Bus1Error)) throw e;
      code = e.code;
      break;
    }
  }
  if (code) say(`queued ${queued} messages on the app, then ${code}: its fair share of the app's quota is used up`);
  else say(`queued ${queued} messages without an error (no quota hit)`);
  tell("flooded", { queued, code });
}

function command(body) {
  switch (body.do) {
    case "request":
      request(body.op, body.text);
      return true;
    case "flood":
      flood();
      return true;
    case "try": {
      // Handle IDs are local to a peer: another peer's number means nothing here.
      const code = attempt(`send to ${body.id} (${body.whose} ID of the log node)`, () =>
        peer.send(body.id, encode({ line: `${name} sneaks in` })),
      );
      if (code === null) say(`sending to ${body.id} worked: that ID names something of ${name}'s own`);
      tell("tried", { code });
      return true;
    }
    case "exit":
      if (revoked) {
        peer.release(service);
        say(`released its dead handle ${service}; closing the bus in this thread and exiting`);
      } else {
        say("closing the bus in this thread and exiting");
      }
      tell("bye");
      return false;
    default:
      throw new Error(`${name}: unknown instruction ${JSON.stringify(body)}`);
  }
}

function fromApp(message) {
  const body = decode(message);
  const handles = message.handles;
  message.release();
  if (body.reply !== undefined) {
    say(`← app: "${body.reply}"`);
    tell("reply", { text: body.reply });
  } else if (body.grant === "log") {
    log = handles[0];
    say(`← app: a handle to the app's log node, arriving in a message as ID ${log}`);
    peer.send(log, encode({ line: `${name} (thread ${threadId}) holds the log node as handle ${log}` }));
    tell("log", { id: log });
  } else if (body.grant === "config") {
    say(`← app: config ${JSON.stringify(body.config)}; done with it, releasing handle ${handles[0]}`);
    peer.release(handles[0]);
    tell("config");
  }
}

function onMessage(message) {
  if (message.type === "node-destroy") {
    if (message.destination === service) {
      revoked = true;
      say(`node-destroy for handle ${service}: the app's service node is gone, capability revoked`);
      tell("revoked");
    } else {
      say(`node-destroy for handle ${message.destination}`);
    }
    return true;
  }
  if (message.type === "node-release") {
    say(`node-release for node ${message.destination}: nobody else holds a handle to it now`);
    return true;
  }
  if (message.destination === CONTROL_NODE) {
    const body = decode(message);
    message.release();
    return command(body);
  }
  fromApp(message);
  return true;
}

tell("up");
for (let running = true; running;) {
  const message = peer.recv();
  if (message === null) {
    if (!peer.wait(20_000)) {
      say("nothing for 20 s: giving up");
      break;
    }
    continue;
  }
  running = onMessage(message);
}
bus.close();
