// A worker of the browser demo (app.js says the plan). It holds one peer:
// adopted from the page's shared bus when the page is cross-origin isolated,
// or a served peer (RemotePeer over a MessagePort) when it is not. The code
// below is the same for both: every call is awaited, which costs nothing for
// a local peer's synchronous results.
//
// It multicasts numbered messages to every other worker, checks that what it
// receives comes exactly once and in each sender's order, passes the token
// (a handle to a node of the page) to the next worker when it has it, offers
// the next worker handles to nodes of its own and destroys them again, and
// answers the page's pings. Once a second it reports its counters and the
// order in which it received the others' messages, for the page's check that
// every worker saw one order.
import { Bus, RemotePeer } from "../../dist/host-browser/index.js";
import { DATA, PING, PONG, TOKEN, OFFER, encode, decode } from "./wire.js";

const BURST = 32;
const MAX_OWN_NODES = 2;

self.onmessage = async ({ data: setup }) => {
  self.onmessage = null;
  try {
    await run(setup);
  } catch (e) {
    self.postMessage({ t: "error", index: setup.index, message: String(e?.stack ?? e) });
  }
};

async function run(setup) {
  const { index, workers, to, toPage, next } = setup;
  let peer;
  if (setup.port) peer = await RemotePeer.connect(setup.port);
  else peer = (await Bus.attach(setup.bus)).adopt(setup.ref);

  const others = to.filter((h) => h !== null);
  const lastSeq = new Array(workers).fill(-1);
  let seq = 0, sent = 0, received = 0, violations = 0, firstViolation = "";
  let token = setup.token; // the token's handle while this worker holds it, else null
  const ownNodes = []; // caller-chosen IDs of nodes this worker made and offered
  let nextNode = 16;
  const held = new Set(); // handles to other workers' offered nodes
  let log = []; // [from, seq] of the others' messages, in the order received, since the last report
  const sleep = (ms) => new Promise((r) => setTimeout(r, ms));

  self.postMessage({ t: "up", index });

  // sender: bursts of multicasts to every other worker, backing off while a receiver's quota is full
  (async () => {
    for (;;) {
      for (let i = 0; i < BURST; i++) {
        try {
          await peer.send(others, encode(DATA, index, seq, performance.now()));
        } catch (e) {
          if (e?.code === "EDQUOT") break;
          throw e;
        }
        seq++;
        sent++;
      }
      await sleep(1);
    }
  })().catch(fail);

  // receiver
  (async () => {
    for (;;) {
      const m = await peer.recv();
      if (!m) {
        await peer.readable();
        continue;
      }
      received++;
      if (m.type === "node-destroy") held.delete(m.destination);
      else if (m.type === "data") {
        const { kind, from, seq: s, time } = decode(m.payload);
        if (kind === DATA) {
          if (s !== lastSeq[from] + 1 && !firstViolation) {
            firstViolation = `worker ${index}: from worker ${from} got #${s} after #${lastSeq[from]}`;
          }
          if (s !== lastSeq[from] + 1) violations++;
          lastSeq[from] = s;
          log.push(from, s);
        } else if (kind === PING) {
          await peer.send(toPage, encode(PONG, index, s, time));
        } else if (kind === TOKEN) {
          token = m.handles[0];
        } else if (kind === OFFER) {
          for (const h of m.handles) held.add(h);
        }
      }
      m.release();
    }
  })().catch(fail);

  // the token moves on to the next worker a moment after it arrives
  (async () => {
    for (;;) {
      await sleep(700);
      if (token === null) continue;
      const h = token;
      token = null;
      await peer.send(to[next], encode(TOKEN, index, 0, 0), { handles: [h] });
      await peer.release(h);
    }
  })().catch(fail);

  // nodes come and go: a new one offered to the next worker, the oldest destroyed
  (async () => {
    await sleep(400 * (index + 1));
    for (;;) {
      const id = nextNode;
      nextNode += 4;
      await peer.send(to[next], encode(OFFER, index, 0, 0), { handles: [id] });
      ownNodes.push(id);
      if (ownNodes.length > MAX_OWN_NODES) await peer.destroy([ownNodes.shift()], { releaseHandles: true });
      await sleep(1500);
    }
  })().catch(fail);

  // the report
  for (;;) {
    await sleep(1000);
    const order = Int32Array.from(log);
    log = [];
    self.postMessage({ t: "report", index, sent, received, violations, firstViolation, holds: held.size + (token === null ? 0 : 1),
      order }, [order.buffer]);
  }

  function fail(e) {
    self.postMessage({ t: "error", index, message: String(e?.stack ?? e) });
  }
}
