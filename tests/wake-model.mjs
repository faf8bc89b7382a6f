// An exhaustive interleaving model of the wake-word protocol (docs/ABI.md §5.5,
// ABI 6; tests/wake-model.test.ts runs it). Sequentially consistent interleavings of single atomic steps.
//
// Shared per slot: W (wake word), Sc (sleepers count), Sa (armed bit).
// Per peer: q (committed receivable messages), disc (disconnected), live, lock.
// Waiters (Peer.wait / readable's loop / WASI waitReady):
//   START  ready()                 (lock-protected look; true -> RECV)
//   [SPIN0 seq0=W; SPIN1 W!=seq0 -> SPINREADY | give up -> L1]   (#spin, not counted)
//   L1 seq=W; L2a Sc++; L2b Sa=1; L3 ready(): true -> L3T (Sc--) -> RECV,
//   error (peer gone) -> EXIT (Sc--); L4 wait(W,seq): W!=seq -> L5 else BLOCKED;
//   BLOCKED -> (notify) L5 | (timeout, budget) L5; L5 Sc-- -> L1
//   RECV recv(): takes one message if any -> START
// Senders: a list of calls; each call = list of destination peers (multicast /
// transaction) or {close: peer} (disconnect, then the slot is reused by `reuse`)
// or {lane: peer} (a lane send: it pushes its message without the peer's lock).
//   lock all dests; commit (q++ on each); per dest: peer_wake = load S; [take arm];
//   W++ ; record (dedup; list of CAP, overflow -> notify at once); unlock; notify list one by one.
//   A lane send: push (q++), then the same peer_wake steps, no lock.
// cfg.drained (the host's drained queue, ABI.md §5.5): a look that finds
// nothing, or a recv that takes the last message, notes dAt = W; while W is
// still dAt (and the peer's lock is free: the host checks the lock word), a
// look answers 0 without the core. "unarmed": only looks before arming do so
// (Peer[READY] without `armed`); "armed": the last look after arming too (a
// mutant, which a lane send defeats).
// Violation: a state whose only enabled steps are timeouts, while a live waiter
// is BLOCKED and (its peer has a message queued, or its peer is disconnected).

/**
 * Explores every interleaving of the configuration `cfg` (above) under the
 * protocol `V0`: "new" (ABI 6), "old" (ABI 5), or a mutant that must fail
 * ("swap": the waiter arms after its look; "bumpFirst": the sender bumps
 * the word before it takes the arm; others below). Returns whether a
 * violation was found, the first one's description and its shortest trace.
 */
export function check(V0 = "new", cfg = {}) {
  // bumpFirstSwap: the sender bumps before it takes the arm, and the waiter arms after its look
  const V = V0 === "bumpFirstSwap" ? "bumpFirst" : V0;
  const WSWAP = V0 === "swap" || V0 === "bumpFirstSwap";

  // ---- configuration -------------------------------------------------------------------
  const CAP = cfg.cap ?? 8;
  const SPIN = cfg.spin ?? true;
  const TIMEOUTS = cfg.timeouts ?? 1; // per waiter
  const KILL = cfg.kill ?? -1; // index of a waiter that may be terminated (not in a call)
  // peers: [{slot}], waiters: [{peer}], senders: [[call...]] with call = [peer...] | {close, reuse}
  const peers = cfg.peers ?? [{ slot: 0 }];
  const waiterPeers = cfg.waiters ?? [0, 0];
  const senders = cfg.senders ?? [[[0]], [[0]]];
  const nslots = Math.max(...peers.map((p) => p.slot)) + 1;
  const initialLive = peers.map((p) => !p.later);

  function init() {
    return {
      W: Array(nslots).fill(0), Sc: Array(nslots).fill(0), Sa: Array(nslots).fill(cfg.staleArm ? 1 : 0),
      q: peers.map(() => 0), disc: peers.map(() => 0), live: initialLive.map((x) => (x ? 1 : 0)),
      lock: peers.map(() => -1),
      w: waiterPeers.map((p) => ({ p, pc: "START", seq: 0, seq0: 0, to: TIMEOUTS, dead: 0, dAt: -1 })),
      s: senders.map(() => ({ pc: "IDLE", call: 0, k: 0, sv: 0, nt: 0, list: [] })),
    };
  }
  const clone = (x) => ({
    W: x.W.slice(), Sc: x.Sc.slice(), Sa: x.Sa.slice(), q: x.q.slice(), disc: x.disc.slice(),
    live: x.live.slice(), lock: x.lock.slice(),
    w: x.w.map((o) => ({ ...o })), s: x.s.map((o) => ({ ...o, list: o.list.slice() })),
  });
  // Compact key. W only grows and is only compared for equality with seq/seq0
  // read from it: keep, per waiter, whether its seq is still current, not the
  // numbers. With cfg.sym, waiters of one peer (but the killable one) are
  // interchangeable: their codes are sorted.
  const PCS = ["START", "SPIN0", "SPIN1", "SPINREADY", "L1", "L2a", "L2b", "L3", "L3T", "L3E", "L4", "BLOCKED", "L5", "RECV", "EXIT"];
  const SEQ_PCS = new Set(["L2a", "L2b", "L3", "L4", "BLOCKED"]);
  const key = (x) => {
    let k = x.Sc.join(",") + ";" + x.Sa.join("") + ";" + x.q.join(",") + ";" + x.disc.join("") + x.live.join("") + ";" + x.lock.join(",") + ";";
    const ws = x.w.map((o, i) => {
      const W = x.W[peers[o.p].slot];
      const code = o.dead ? "D" : PCS.indexOf(o.pc).toString(36) + (SEQ_PCS.has(o.pc) && o.seq !== W ? "s" : "") +
        (o.pc === "SPIN1" && o.seq0 !== W ? "z" : "") + (o.dAt === W ? "d" : "") + o.to;
      return { g: cfg.sym && i !== KILL ? "p" + o.p : "i" + i, code };
    });
    if (cfg.sym) ws.sort((u, v) => (u.g < v.g ? -1 : u.g > v.g ? 1 : u.code < v.code ? -1 : u.code > v.code ? 1 : 0));
    k += ws.map((u) => u.g + u.code).join(" ") + ";";
    k += x.s.map((o) => o.pc + o.call + "." + o.k + (o.pc === "TAKE" || o.pc === "TAKEB" ? "v" + o.sv : "") + (o.pc === "BUMP" ? "n" + o.nt : "") + "[" + o.list.join(",") + "]").join(" ");
    return k;
  };

  function notifyAll(x, slot, one = false) {
    for (const w of x.w) {
      if (!w.dead && w.pc === "BLOCKED" && peers[w.p].slot === slot) {
        w.pc = "L5";
        if (V === "notifyOne" || one) return;
      }
    }
  }

  // ready(): 1, 0 or -1 (EBADF/ESHUTDOWN)
  function look(x, p) {
    if (!x.live[p] || x.disc[p]) return -1;
    return x.q[p] > 0 ? 1 : 0;
  }

  function destsOf(call) { return Array.isArray(call) ? call : call.lane !== undefined ? [call.lane] : [call.close]; }

  // Peer[READY] with the drained queue: `early` is a look before arming
  function hostLook(x, me, p, early) {
    const sl = peers[p].slot;
    if (cfg.drained && (early || cfg.drained === "armed") && me.dAt === x.W[sl]) return 0;
    const r = look(x, p);
    if (cfg.drained && r === 0) me.dAt = x.W[sl];
    return r;
  }

  function peerWake(x, t, S, p) {
    const sl = peers[p].slot;
    let notify = false;
    if (V === "old") {
      x.W[sl]++;
      notify = x.Sc[sl] !== 0;
    } else if (V === "bumpFirst") {
      x.W[sl]++;
      if (x.Sc[sl] && x.Sa[sl]) { notify = x.Sa[sl] === 1; x.Sa[sl] = 0; }
    } else {
      // load S, then (if count and armed) atomic.and — modelled as two steps by the caller
      throw new Error("peerWake for split variants is stepwise");
    }
    return notify;
  }

  function record(x, S, sl) {
    if (S.list.includes(sl)) return;
    if (S.list.length >= CAP) { notifyAll(x, sl); return; }
    S.list.push(sl);
  }

  // all enabled steps of thread t: [{label, next, timeout}]
  function steps(x) {
    const out = [];
    x.w.forEach((w, i) => {
      if (w.dead || w.pc === "EXIT") return;
      const P = w.p, sl = peers[P].slot;
      const go = (label, f, timeout = false) => {
        const y = clone(x);
        f(y, y.w[i]);
        out.push({ label: `w${i}: ${label}`, y, timeout });
      };
      if (i === KILL) {
        // terminated anywhere outside a call (calls are atomic steps here)
        go("TERMINATED", (y, me) => { me.dead = 1; });
      }
      const lockFree = x.lock[P] === -1;
      // cfg.nolock: ready() looks without the peer's lock (sees the commit at once)
      const lookFree = cfg.nolock ? true : lockFree;
      switch (w.pc) {
        case "START":
          if (!lockFree) break;
          go("ready() first look", (y, me) => {
            const r = hostLook(y, me, P, true);
            me.pc = r === 1 ? "RECV" : r < 0 ? "EXIT" : SPIN ? "SPIN0" : "L1";
          });
          break;
        case "SPIN0":
          go("spin: seq0 = W", (y, me) => { me.seq0 = y.W[sl]; me.pc = "SPIN1"; });
          // a spinner may also not get a place: straight to L1
          go("spin: no place, sleep path", (y, me) => { me.pc = "L1"; });
          break;
        case "SPIN1":
          if (x.W[sl] !== w.seq0) go("spin: W moved", (y, me) => { me.pc = "SPINREADY"; });
          go("spin: time up", (y, me) => { me.pc = "L1"; });
          break;
        case "SPINREADY":
          if (!lockFree) break;
          go("spin: ready()", (y, me) => { const r = hostLook(y, me, P, true); me.pc = r === 1 ? "RECV" : r < 0 ? "EXIT" : "L1"; });
          break;
        case "L1":
          go(`seq = W (${x.W[sl]})`, (y, me) => { me.seq = y.W[sl]; me.pc = WSWAP ? "L2a" : V === "orFirst" ? "L2b" : "L2a"; });
          break;
        case "L2a":
          go("Sc++", (y, me) => { y.Sc[sl]++; me.pc = WSWAP ? "L3" : V === "orFirst" ? "L3" : V === "old" ? "L3" : "L2b"; });
          break;
        case "L2b":
          go("Sa = 1", (y, me) => { y.Sa[sl] = 1; me.pc = WSWAP ? "L4" : V === "orFirst" ? "L2a" : "L3"; });
          break;
        case "L3":
          if (!lookFree) break;
          go("ready()", (y, me) => {
            const r = hostLook(y, me, P, false);
            me.pc = r === 1 ? "L3T" : r < 0 ? "L3E" : WSWAP ? "L2b" : "L4";
          });
          break;
        case "L3T":
          go("Sc-- (ready)", (y, me) => { y.Sc[sl]--; me.pc = "RECV"; });
          break;
        case "L3E":
          go("Sc-- (error), exit", (y, me) => { y.Sc[sl]--; me.pc = "EXIT"; });
          break;
        case "L4":
          go(`Atomics.wait(W, ${w.seq}) W=${x.W[sl]}`, (y, me) => { me.pc = y.W[sl] !== me.seq ? "L5" : "BLOCKED"; });
          break;
        case "BLOCKED":
          if (w.to > 0) go("timeout", (y, me) => { me.to--; me.pc = "L5"; }, true);
          break;
        case "L5":
          go("Sc--", (y, me) => { y.Sc[sl]--; me.pc = "L1"; });
          break;
        case "RECV":
          if (!lockFree) break;
          go("recv()", (y, me) => {
            if (y.live[P] && !y.disc[P] && y.q[P] > 0) y.q[P]--;
            // MSG_FLAG_DRAINED (or EAGAIN): nothing else ready
            if (cfg.drained && y.live[P] && !y.disc[P] && y.q[P] === 0) me.dAt = y.W[sl];
            me.pc = "START";
          });
          break;
      }
    });
    x.s.forEach((S, i) => {
      const calls = senders[i];
      const go = (label, f) => {
        const y = clone(x);
        f(y, y.s[i]);
        out.push({ label: `s${i}: ${label}`, y, timeout: false });
      };
      const call = calls[S.call];
      switch (S.pc) {
        case "IDLE": {
          if (S.call >= calls.length) break;
          const ds = destsOf(call);
          if (ds.some((d) => !x.live[d])) break; // a peer not connected yet (slot reuse)
          if (call.lane !== undefined) {
            go(`lane push to ${call.lane}`, (y, me) => {
              if (!y.disc[call.lane]) y.q[call.lane]++;
              me.pc = "WAKE"; me.k = 0; me.list = [];
            });
            break;
          }
          if (!ds.every((d) => x.lock[d] === -1)) break;
          go(`lock ${ds} and commit`, (y, me) => {
            for (const d of ds) y.lock[d] = i;
            if (Array.isArray(call) && !cfg.lateCommit) { for (const d of ds) if (!y.disc[d]) y.q[d]++; }
            else y.disc[call.close] = 1;
            me.pc = "WAKE"; me.k = 0; me.list = [];
          });
          break;
        }
        case "WAKE": {
          const ds = destsOf(call);
          if (S.k >= ds.length) { go(call.lane !== undefined ? "lane send done" : "unlock", (y, me) => {
            // cfg.lateCommit: the message becomes visible only after its peer_wake (a wrong order)
            if (cfg.lateCommit && Array.isArray(call)) { for (const d of ds) if (!y.disc[d]) y.q[d]++; }
            if (call.lane === undefined) for (const d of ds) y.lock[d] = -1;
            me.pc = "FLUSH";
          }); break; }
          const d = ds[S.k], sl = peers[d].slot;
          if (V === "bumpFirst") {
            go(`peer_wake(${d}): W++ first (${x.W[sl] + 1})`, (y, me) => { y.W[sl]++; me.pc = "LOADB"; });
          } else if (V === "old") {
            go(`peer_wake(${d}) [${V}]`, (y, me) => {
              const n = peerWake(y, i, me, d);
              if (n) record(y, me, sl);
              me.k++;
            });
          } else {
            go(`peer_wake(${d}): s = S (${x.Sc[sl]}${x.Sa[sl] ? "|A" : ""})`, (y, me) => {
              me.sv = y.Sc[sl] * 2 + y.Sa[sl]; me.pc = "TAKE";
            });
          }
          break;
        }
        case "LOADB": {
          const d = destsOf(call)[S.k], sl = peers[d].slot;
          go(`s = S (${x.Sc[sl]}${x.Sa[sl] ? "|A" : ""})`, (y, me) => { me.sv = y.Sc[sl] * 2 + y.Sa[sl]; me.pc = "TAKEB"; });
          break;
        }
        case "TAKEB": {
          const d = destsOf(call)[S.k], sl = peers[d].slot;
          const cnt = S.sv >> 1, arm = S.sv & 1;
          go(`take arm (after the bump)`, (y, me) => {
            let nt = 0;
            if (cnt && arm) { nt = y.Sa[sl]; y.Sa[sl] = 0; }
            if (nt) record(y, me, sl);
            me.k++; me.pc = "WAKE";
          });
          break;
        }
        case "TAKE": {
          const d = destsOf(call)[S.k], sl = peers[d].slot;
          const cnt = S.sv >> 1, arm = S.sv & 1;
          go(`take arm`, (y, me) => {
            me.nt = 0;
            if ((cnt || V === "noCountCheck") && arm) { me.nt = y.Sa[sl]; y.Sa[sl] = 0; }
            me.pc = "BUMP";
          });
          break;
        }
        case "BUMP": {
          const d = destsOf(call)[S.k], sl = peers[d].slot;
          go(`W++ (${x.W[sl] + 1})${S.nt ? " notify later" : ""}`, (y, me) => {
            y.W[sl]++;
            if (me.nt) record(y, me, sl);
            me.k++; me.pc = "WAKE";
          });
          break;
        }
        case "FLUSH":
          if (S.list.length === 0) {
            go("call done", (y, me) => {
              if (!Array.isArray(call) && call.reuse !== undefined) { y.live[call.close] = 0; y.live[call.reuse] = 1; }
              me.pc = "IDLE"; me.call++;
            });
          } else {
            go(`notify W${S.list[0]}`, (y, me) => { const sl = me.list.shift(); notifyAll(y, sl); });
          }
          break;
      }
    });
    return out;
  }

  function violation(x) {
    for (const [i, w] of x.w.entries()) {
      if (w.dead || w.pc !== "BLOCKED") continue;
      const P = w.p;
      if (!x.live[P] || x.disc[P]) return `w${i} sleeps on a gone/disconnected peer ${P}`;
      if (x.q[P] > 0) return `w${i} sleeps while peer ${P} has ${x.q[P]} message(s)`;
    }
    return null;
  }

  // breadth-first: the first violation found has a shortest trace. Per state
  // only its parent's number and the step taken are kept; the trace is replayed.
  const index = new Map();
  const par = [], stepNo = [];
  let states = 0, terminal = 0, found = null, cut = false;
  const root = init();
  index.set(key(root), 0); par.push(-1); stepNo.push(-1);
  let frontier = [[0, root]];
  const t0 = Date.now();
  outer: while (frontier.length) {
    const next = [];
    for (const [id, x] of frontier) {
      states++;
      const st = steps(x);
      if (!st.some((s) => !s.timeout)) {
        terminal++;
        const v = violation(x);
        if (v) { found = { v, id, x }; break outer; }
      }
      st.forEach((s, j) => {
        const k2 = key(s.y);
        if (index.has(k2)) return;
        const id2 = par.length;
        index.set(k2, id2); par.push(id); stepNo.push(j);
        next.push([id2, s.y]);
      });
    }
    frontier = next;
    if (cfg.maxStates && states > cfg.maxStates) { cut = true; break; }
  }
  const ms = Date.now() - t0;
  let trace = null;
  if (found) {
    trace = [];
    const js = [];
    for (let c = found.id; par[c] !== -1; c = par[c]) js.push(stepNo[c]);
    let x = root;
    for (const j of js.reverse()) { const s = steps(x)[j]; trace.push(s.label); x = s.y; }
    trace.push("final: W=" + x.W + " Sc=" + x.Sc + " Sa=" + x.Sa + " q=" + x.q + " disc=" + x.disc + " live=" + x.live);
  }
  return { ok: !found, violation: found ? found.v : null, states, quiescent: terminal, ms, trace, cut };
}

// as a command: node tests/wake-model.mjs VARIANT 'JSON config'
if (import.meta.url === `file://${process.argv[1]}`) {
  const r = check(process.argv[2] ?? "new", JSON.parse(process.argv[3] ?? "{}"));
  console.log(r.ok ? `ok, ${r.states} states, ${r.quiescent} quiescent, ${r.ms} ms` : `VIOLATION after ${r.states} states: ${r.violation}`);
  if (r.trace) for (const l of r.trace) console.log("   " + l);
}
