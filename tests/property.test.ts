/**
 * Property test: random operation sequences against a JS model of what is
 * observable from outside the core.
 *
 * fast-check generates sequences of operations (connect, send, recv, release
 * a slice, transfer, release a handle, destroy, reset, disconnect) on a
 * single-thread bus with small limits. A model runs alongside: it knows which
 * handles each peer holds and with how many references, which node each one
 * names, which messages and notifications each peer must still receive, and
 * which slices are live. After every operation the properties below must
 * hold; any failure names the operation and what was wrong.
 *
 * - Every failure is a Bus1Error with a code from the API's list; an error the
 *   model says must happen does happen, and nothing else but the tolerated
 *   ones (EDQUOT, ENOMEM) fails an operation that the model says is fine.
 * - A received slice is released exactly once: releasing it again, or
 *   releasing it after a flush freed the pool, is ENXIO.
 * - Live slices are 8-byte aligned, never overlap (payload, padding, handle
 *   and object arrays) and keep their bytes until they are released.
 * - A core-assigned handle ID names one node forever: a peer is never handed
 *   an ID it has seen for a different node, nor an ID it released to zero.
 *   Coalescing returns the same ID while the handle lives.
 * - Quotas: live received slices plus queued messages stay within the peer's
 *   query() limits (slices, bytes, objects); live slices stay within the
 *   per-user limits.
 * - Order: on one thread every send commits before the next call, so each
 *   receiver gets its messages and node-destroy notifications in call order
 *   (per-sender FIFO follows), minus the ones "no handle, no news" drops.
 *
 * Where SPEC.md leaves a corner open, the model accepts every reading and
 * says so next to the code ("maybe" entries, owner handles of destroyed nodes
 * coming back through a message, node-release notifications which are only
 * checked for naming an owner handle of the receiver).
 */
import { describe, it } from "vitest";
import fc from "fast-check";
import { Bus, Bus1Error, HANDLE_INVALID } from "bus1-wasm";

type Peer = ReturnType<Bus["connect"]>;
type Message = NonNullable<ReturnType<Peer["recv"]>>;
type Limits = ReturnType<Peer["query"]>;

const ERROR_CODES = new Set([
  "EAGAIN", "EBADF", "EBUSY", "EDQUOT", "EHOSTUNREACH", "EINVAL", "EMSGSIZE", "ENOMEM",
  "ENOTUNIQ", "ENXIO", "EOPNOTSUPP", "EPERM", "ERANGE", "EREMOTE", "ESHUTDOWN", "ESTALE",
]);

const HANDLE_FLAG_MANAGED = 1;
const HANDLE_FLAG_REMOTE = 2;

/** Per-user limits of the bus: small, so quotas are hit often. */
const USER_LIMITS: Limits = { maxSlices: 8, maxHandles: 24, maxInflightBytes: 4096, maxInflightObjects: 4 };
/** Caller-chosen node IDs (bits 0 and 1 clear) the generated operations use. */
const CALLER_IDS = [4, 8, 12, 16, 20];
const MAX_PEERS = 6;
const USERS = 3;
/** Values that are not handle IDs at all: EINVAL wherever an ID is expected. */
const INVALID_IDS: unknown[] = [HANDLE_INVALID, 1.5, Number.NaN, -8, 2 ** 53 + 8, "4"];

// ---------------------------------------------------------------------------
// Operations (what fast-check generates). Indices are resolved modulo what
// exists when the operation runs, so every sequence is meaningful and shrinks.

/** Picks a handle ID of the acting peer; see resolveHandle. */
interface HandlePick { kind: number; idx: number }

type Op =
  | { op: "connect"; user: number }
  | {
      op: "send"; peer: number; dsts: HandlePick[]; handles: HandlePick[]; size: number;
      objects: number; cont: boolean; vecs: number;
    }
  | { op: "recv"; peer: number; count: number }
  | { op: "releaseSlice"; peer: number; kind: number; idx: number }
  | { op: "transfer"; peer: number; src: HandlePick; to: number; toSelf: boolean }
  | { op: "release"; peer: number; handle: HandlePick }
  | { op: "destroy"; peer: number; nodes: HandlePick[]; releaseHandles: boolean }
  | { op: "reset"; peer: number; limits: Limits | null }
  | { op: "disconnect"; peer: number };

const pickArb: fc.Arbitrary<HandlePick> = fc.record({
  kind: fc.nat({ max: 99 }),
  idx: fc.nat({ max: 63 }),
});
const peerArb = fc.nat({ max: 63 });
const limitsArb: fc.Arbitrary<Limits> = fc.record({
  maxSlices: fc.integer({ min: 1, max: USER_LIMITS.maxSlices }),
  maxHandles: fc.integer({ min: 8, max: USER_LIMITS.maxHandles }),
  maxInflightBytes: fc.integer({ min: 2, max: USER_LIMITS.maxInflightBytes / 512 }).map((n) => n * 512),
  maxInflightObjects: fc.integer({ min: 1, max: USER_LIMITS.maxInflightObjects }),
});

const opArb: fc.Arbitrary<Op> = fc.oneof(
  { weight: 2, arbitrary: fc.record({ op: fc.constant("connect" as const), user: fc.nat({ max: USERS - 1 }) }) },
  {
    weight: 35,
    arbitrary: fc.record({
      op: fc.constant("send" as const),
      peer: peerArb,
      dsts: fc.array(pickArb, { maxLength: 3 }),
      handles: fc.array(pickArb, { maxLength: 3 }),
      size: fc.oneof(
        { weight: 12, arbitrary: fc.integer({ min: 4, max: 700 }) },
        { weight: 1, arbitrary: fc.integer({ min: 701, max: 5000 }) },
      ),
      objects: fc.oneof({ weight: 4, arbitrary: fc.constant(0) }, { weight: 1, arbitrary: fc.integer({ min: 1, max: 2 }) }),
      cont: fc.boolean(),
      vecs: fc.nat({ max: 3 }),
    }),
  },
  { weight: 20, arbitrary: fc.record({ op: fc.constant("recv" as const), peer: peerArb, count: fc.integer({ min: 1, max: 4 }) }) },
  {
    weight: 15,
    arbitrary: fc.record({ op: fc.constant("releaseSlice" as const), peer: peerArb, kind: fc.nat({ max: 9 }), idx: fc.nat({ max: 63 }) }),
  },
  {
    weight: 8,
    arbitrary: fc.record({ op: fc.constant("transfer" as const), peer: peerArb, src: pickArb, to: peerArb, toSelf: fc.boolean() }),
  },
  { weight: 8, arbitrary: fc.record({ op: fc.constant("release" as const), peer: peerArb, handle: pickArb }) },
  {
    weight: 5,
    arbitrary: fc.record({
      op: fc.constant("destroy" as const),
      peer: peerArb,
      nodes: fc.array(fc.record({ kind: fc.oneof({ weight: 5, arbitrary: fc.nat({ max: 29 }) }, { weight: 1, arbitrary: fc.nat({ max: 99 }) }), idx: fc.nat({ max: 63 }) }), { maxLength: 3 }),
      releaseHandles: fc.boolean(),
    }),
  },
  { weight: 2, arbitrary: fc.record({ op: fc.constant("reset" as const), peer: peerArb, limits: fc.option(limitsArb, { freq: 2 }) }) },
  { weight: 1, arbitrary: fc.record({ op: fc.constant("disconnect" as const), peer: peerArb }) },
);

// ---------------------------------------------------------------------------
// The model.

interface NodeModel {
  key: number;
  owner: PeerModel;
  ownerId: number;
  live: boolean;
}

interface HandleModel {
  id: number;
  node: NodeModel;
  refs: number;
}

interface SentMessage {
  id: number;
  sender: PeerModel;
  payload: Uint8Array;
  /** Attached handles; a node destroyed at send time arrives as HANDLE_INVALID. */
  handles: { node: NodeModel; liveAtSend: boolean }[];
  objects: unknown[];
  /** Bytes of the slice. */
  size: number;
  /** Bytes charged to the receiver: the slice and one record per object. */
  charged: number;
}

/** Something a receiver must (or, if `maybe`, may) still receive. */
interface Entry {
  kind: "data" | "node-destroy";
  /** data: the destination node; node-destroy: the destroyed node. */
  node: NodeModel;
  msg: SentMessage | null;
  /** SPEC.md does not settle whether it is delivered. */
  maybe: boolean;
}

/** The entries one transaction queued on one receiver. */
interface Group {
  tx: number;
  entries: Entry[];
  /**
   * `continue` may be set with no modelled entry following: a flush can add
   * node-release notifications (not modelled) to its transaction, and an
   * entry the model dropped may still be counted by the core.
   */
  loose: boolean;
}

interface SliceModel {
  message: Message;
  msg: SentMessage;
  offset: number;
  size: number;
}

interface PeerModel {
  index: number;
  user: number;
  peer: Peer;
  alive: boolean;
  limits: Limits;
  handles: Map<number, HandleModel>;
  byNode: Map<NodeModel, HandleModel>;
  /** Every core-assigned ID this peer was ever handed, and its node. */
  everSeen: Map<number, NodeModel>;
  /** Core-assigned IDs whose handle reached zero references. */
  gone: Set<number>;
  queue: Group[];
  slices: Map<number, SliceModel>;
  /** Messages whose slice is gone (released or flushed): releasing again is ENXIO. */
  released: Message[];
  /** Last message ID received from each sender: per-sender FIFO. */
  lastFrom: Map<number, number>;
}

function sliceSize(payloadLength: number, handles: number, objects: number): number {
  return align8(payloadLength) + 8 * handles + align8(4 * objects);
}

/** A host object's record in the bus memory, charged as bytes: on a single-thread bus, its header alone. */
const RECORD_BYTES = 24;

function align8(n: number): number {
  return (n + 7) & ~7;
}

function payloadFor(id: number, size: number): Uint8Array {
  const bytes = new Uint8Array(size);
  new DataView(bytes.buffer).setUint32(0, id, true);
  for (let i = 4; i < size; i++) bytes[i] = (id * 7 + i * 13) & 0xff;
  return bytes;
}

function sameBytes(a: Uint8Array, b: Uint8Array): boolean {
  if (a.length !== b.length) return false;
  for (let i = 0; i < a.length; i++) if (a[i] !== b[i]) return false;
  return true;
}

class PropertyViolation extends Error {}

function check(cond: unknown, what: string): asserts cond {
  if (!cond) throw new PropertyViolation(what);
}

type Outcome<T> = { ok: true; value: T } | { ok: false; code: string };

/** Runs one API call; anything thrown that is not a proper Bus1Error fails the property. */
function attempt<T>(what: string, fn: () => T): Outcome<T> {
  try {
    return { ok: true, value: fn() };
  } catch (e) {
    if (e instanceof PropertyViolation) throw e;
    check(e instanceof Bus1Error, `${what}: threw something that is not a Bus1Error: ${String(e)}`);
    const code = (e as Bus1Error).code;
    check(ERROR_CODES.has(code), `${what}: Bus1Error with unknown code ${String(code)}`);
    check(e instanceof Error, `${what}: Bus1Error is not an Error`);
    return { ok: false, code };
  }
}

/**
 * `must`: errors one of which has to happen (empty: the call should succeed).
 * `tolerated`: errors that may always happen (quota, memory).
 */
function expectOutcome<T>(what: string, r: Outcome<T>, must: Set<string>, tolerated: readonly string[] = []): void {
  if (r.ok) {
    check(must.size === 0, `${what}: succeeded, expected one of ${[...must].join(" ")}`);
    return;
  }
  const allowed = must.has(r.code) || tolerated.includes(r.code);
  check(allowed, `${what}: failed with ${r.code}, expected ${must.size ? `one of ${[...must].join(" ")}` : "success"}`);
}

/** A handle argument as the model understands it. */
interface Resolved {
  id: unknown;
  /** held: a live handle of the caller; new: a caller-chosen ID naming nothing; stale: an ID naming nothing; invalid: not an ID. */
  kind: "held" | "new" | "stale" | "invalid";
  handle?: HandleModel;
}

class Model {
  peers: PeerModel[] = [];
  private nodeKeys = 0;
  private msgIds = 0;
  private txIds = 0;
  log: string[] = [];

  constructor(readonly bus: Bus) {}

  // --- helpers --------------------------------------------------------------

  /** Mostly a connected peer; now and then any peer, disconnected ones included. */
  peerAt(i: number): PeerModel {
    const connected = this.peers.filter((p) => p.alive);
    if (i % 16 === 15 || connected.length === 0) return this.peers[i % this.peers.length];
    return connected[i % connected.length];
  }

  resolveHandle(pm: PeerModel, pick: HandlePick): Resolved {
    const remote = [...pm.handles.values()].filter((h) => h.node.owner !== pm);
    const held = [...pm.handles.values()];
    const callerChosen = (): Resolved => {
      const id = CALLER_IDS[pick.idx % CALLER_IDS.length];
      const handle = pm.handles.get(id);
      return handle ? { id, kind: "held", handle } : { id, kind: "new" };
    };
    if (pick.kind < 30) return callerChosen();
    if (pick.kind < 80) {
      if (remote.length === 0) return callerChosen();
      const handle = remote[pick.idx % remote.length];
      return { id: handle.id, kind: "held", handle };
    }
    if (pick.kind < 92) {
      if (held.length === 0) return callerChosen();
      const handle = held[pick.idx % held.length];
      return { id: handle.id, kind: "held", handle };
    }
    if (pick.kind < 96 && pm.gone.size > 0) {
      const gone = [...pm.gone];
      return { id: gone[pick.idx % gone.length], kind: "stale" };
    }
    if (pick.kind < 98) {
      // A core-assigned ID no peer of this run is ever handed.
      return { id: (2 ** 20 + pick.idx) * 8 + HANDLE_FLAG_MANAGED + HANDLE_FLAG_REMOTE, kind: "stale" };
    }
    return { id: INVALID_IDS[pick.idx % INVALID_IDS.length], kind: "invalid" };
  }

  createNode(pm: PeerModel, id: number): HandleModel {
    const node: NodeModel = { key: ++this.nodeKeys, owner: pm, ownerId: id, live: true };
    const handle: HandleModel = { id, node, refs: 1 };
    check(!pm.handles.has(id), `model: node ${id} created over a live handle`);
    pm.handles.set(id, handle);
    pm.byNode.set(node, handle);
    return handle;
  }

  /**
   * After a failed call that named fresh caller-chosen IDs: did the call create
   * the node anyway? `release` answers without changing anything: a fresh live
   * node has one (pinned) reference, so EBUSY; an ID naming nothing is ENXIO.
   */
  probeNewIds(pm: PeerModel, what: string, ids: Iterable<number>): void {
    for (const id of new Set(ids)) {
      const r = attempt(`${what}: probe release(${id})`, () => pm.peer.release(id));
      check(!r.ok, `${what}: probe release(${id}) of a node the failed call may have created succeeded`);
      check(r.code === "ENXIO" || r.code === "EBUSY", `${what}: probe release(${id}) gave ${r.code}`);
      if (r.code === "EBUSY") this.createNode(pm, id);
    }
  }

  /**
   * A handle to `node` is given to `pm` (transfer, or receiving a message).
   * Checks the ID the core chose and updates the references.
   */
  giveHandle(pm: PeerModel, node: NodeModel, id: number, what: string): void {
    check(Number.isSafeInteger(id) && id >= 0, `${what}: handle ID ${id} is not a non-negative safe integer`);
    const held = pm.byNode.get(node);
    if (held) {
      check(id === held.id, `${what}: peer ${pm.index} holds node ${node.key} as ${held.id} but was given ${id} (no coalescing)`);
      held.refs++;
      return;
    }
    if (node.owner === pm) {
      // The owner gets its own node back as the owner ID. Its own handle can
      // only be missing if the node was destroyed and released meanwhile;
      // SPEC.md does not say what comes back then, so accept the owner ID
      // unless it names another node now, or a fresh core-assigned ID.
      check(node.live === false, `${what}: owner ${pm.index} lost the handle of live node ${node.key}`);
      if (id === node.ownerId) {
        check(!pm.handles.has(id), `${what}: owner ID ${id} handed out for node ${node.key} while it names another node`);
        this.addHandle(pm, node, id);
        return;
      }
    } else {
      check((id & HANDLE_FLAG_MANAGED) !== 0, `${what}: handle ${id} to a remote node lacks the MANAGED flag`);
      check((id & HANDLE_FLAG_REMOTE) !== 0, `${what}: handle ${id} to a remote node lacks the REMOTE flag`);
    }
    check(!pm.gone.has(id), `${what}: peer ${pm.index} was handed ${id} again after releasing it to zero`);
    const seen = pm.everSeen.get(id);
    check(seen === undefined, `${what}: peer ${pm.index} was handed ${id} for node ${node.key}, but ${id} named node ${seen?.key}`);
    check(!pm.handles.has(id), `${what}: ${id} already names a handle of peer ${pm.index}`);
    this.addHandle(pm, node, id);
  }

  private addHandle(pm: PeerModel, node: NodeModel, id: number): void {
    const handle: HandleModel = { id, node, refs: 1 };
    pm.handles.set(id, handle);
    pm.byNode.set(node, handle);
    if (id & HANDLE_FLAG_MANAGED) pm.everSeen.set(id, node);
  }

  /** One reference of `h` goes away; at zero the handle is gone. */
  dropRef(pm: PeerModel, h: HandleModel): void {
    h.refs--;
    if (h.refs > 0) return;
    pm.handles.delete(h.id);
    pm.byNode.delete(h.node);
    if (h.id & HANDLE_FLAG_MANAGED) pm.gone.add(h.id);
    // No handle, no news: what is queued for the node is dropped. If a queued
    // message carries a handle to the node, the peer may get one back before
    // it reaches those entries; whether they are delivered then is open.
    const regain = pm.queue.some((g) =>
      g.entries.some((e) => e.msg?.handles.some((a) => a.node === h.node && a.liveAtSend)),
    );
    for (const g of pm.queue) {
      g.entries = g.entries.filter((e) => {
        if (e.node !== h.node) return true;
        e.maybe = true;
        g.loose = true;
        return regain;
      });
    }
  }

  newPeerModel(peer: Peer, user: number): PeerModel {
    return {
      index: this.peers.length, user, peer, alive: true, limits: { ...USER_LIMITS },
      handles: new Map(), byNode: new Map(), everSeen: new Map(), gone: new Set(),
      queue: [], slices: new Map(), released: [], lastFrom: new Map(),
    };
  }

  /** Queues node-destroy for `nodes` on every peer that holds, or is being sent, a handle to one. */
  queueDestroy(nodes: NodeModel[], loose: boolean, except: PeerModel | null = null): void {
    const tx = ++this.txIds;
    for (const q of this.peers) {
      if (!q.alive || q === except) continue;
      const entries: Entry[] = [];
      for (const node of nodes) {
        const inFlight = q.queue.some((g) => g.entries.some((e) => e.msg?.handles.some((a) => a.node === node && a.liveAtSend)));
        if (q.byNode.has(node) || inFlight) entries.push({ kind: "node-destroy", node, msg: null, maybe: false });
      }
      if (entries.length) q.queue.push({ tx, entries, loose });
    }
  }

  /** reset({flush}) and disconnect: destroy all nodes, release all handles, drop the queue, free the pool. */
  flush(pm: PeerModel): void {
    const owned = [...pm.handles.values()].filter((h) => h.node.owner === pm && h.node.live).map((h) => h.node);
    for (const node of owned) node.live = false;
    pm.queue = [];
    this.queueDestroy(owned, true, pm);
    for (const h of [...pm.handles.values()]) {
      h.refs = 1;
      this.dropRef(pm, h);
    }
    for (const s of pm.slices.values()) pm.released.push(s.message);
    pm.slices.clear();
  }

  // --- invariants checked after every operation ------------------------------

  checkInvariants(what: string): void {
    const perUser = new Map<number, { slices: number; bytes: number; objects: number }>();
    for (const pm of this.peers) {
      if (!pm.alive) continue;
      const q = attempt(`${what}: query() of peer ${pm.index}`, () => pm.peer.query());
      check(q.ok, `${what}: query() of live peer ${pm.index} failed with ${!q.ok && q.code}`);
      for (const key of Object.keys(pm.limits) as (keyof Limits)[]) {
        check(q.value[key] === pm.limits[key], `${what}: query().${key} of peer ${pm.index} is ${q.value[key]}, expected ${pm.limits[key]}`);
      }

      let slices = 0, bytes = 0, objects = 0;
      for (const s of pm.slices.values()) {
        slices++;
        bytes += s.msg.charged;
        objects += s.msg.objects.length;
        check(
          sameBytes(s.message.payload, s.msg.payload),
          `${what}: payload of live slice ${s.offset} (message #${s.msg.id}) of peer ${pm.index} changed before release` +
            (s.message.payload.length === 0 ? " (the view is empty: detached when memory grew?)" : ""),
        );
      }
      const user = perUser.get(pm.user) ?? { slices: 0, bytes: 0, objects: 0 };
      user.slices += slices;
      user.bytes += bytes;
      user.objects += objects;
      perUser.set(pm.user, user);
      // Queued messages were charged when they were sent.
      for (const g of pm.queue) {
        for (const e of g.entries) {
          if (e.kind !== "data" || e.maybe || !e.msg) continue;
          slices++;
          bytes += e.msg.charged;
          objects += e.msg.objects.length;
        }
      }
      const lim = pm.limits;
      check(slices <= lim.maxSlices, `${what}: peer ${pm.index} holds ${slices} slices (live + queued) > maxSlices ${lim.maxSlices}`);
      check(bytes <= lim.maxInflightBytes, `${what}: peer ${pm.index} holds ${bytes} bytes (live + queued) > maxInflightBytes ${lim.maxInflightBytes}`);
      check(objects <= lim.maxInflightObjects, `${what}: peer ${pm.index} holds ${objects} objects (live + queued) > maxInflightObjects ${lim.maxInflightObjects}`);
    }
    for (const [user, u] of perUser) {
      check(u.slices <= USER_LIMITS.maxSlices, `${what}: user ${user} holds ${u.slices} live slices > ${USER_LIMITS.maxSlices}`);
      check(u.bytes <= USER_LIMITS.maxInflightBytes, `${what}: user ${user} holds ${u.bytes} live bytes > ${USER_LIMITS.maxInflightBytes}`);
      check(u.objects <= USER_LIMITS.maxInflightObjects, `${what}: user ${user} holds ${u.objects} live objects > ${USER_LIMITS.maxInflightObjects}`);
    }
  }

  // --- operations -----------------------------------------------------------

  connect(user: number): void {
    if (this.peers.length >= MAX_PEERS) return;
    const what = `connect({ user: ${user} })`;
    const r = attempt(what, () => this.bus.connect({ user }));
    expectOutcome(what, r, new Set());
    if (r.ok) this.peers.push(this.newPeerModel(r.value, user));
  }

  send(o: Extract<Op, { op: "send" }>): void {
    const pm = this.peerAt(o.peer);
    const dsts = o.dsts.map((p) => this.resolveHandle(pm, p));
    // Attached handles: no duplicates (SPEC.md does not say whether they are allowed).
    const handles = o.handles.map((p) => this.resolveHandle(pm, p)).filter((h, i, all) => all.findIndex((x) => Object.is(x.id, h.id)) === i);
    const id = ++this.msgIds;
    const payload = payloadFor(id, o.size);
    const objects = Array.from({ length: o.objects }, (_, i) => ({ message: id, object: i }));
    const what = `peer ${pm.index}: send #${id} to [${dsts.map((d) => String(d.id))}] handles [${handles.map((h) => String(h.id))}] ${o.size} B${objects.length ? ` ${objects.length} objects` : ""}${o.cont ? " continue" : ""}`;
    const size = sliceSize(o.size, handles.length, objects.length);
    const charged = size + RECORD_BYTES * objects.length;

    const all = [...dsts, ...handles];
    const must = new Set<string>();
    if (!pm.alive) must.add("ESHUTDOWN");
    if (all.some((d) => d.kind === "invalid")) must.add("EINVAL");
    if (all.some((d) => d.kind === "stale")) must.add("ENXIO");
    const dstIds = dsts.map((d) => d.id);
    if (new Set(dstIds).size !== dstIds.length) must.add("ENOTUNIQ");
    const hard = must.size > 0;

    // Per destination, assuming the arguments are fine.
    const nodeOf = (d: Resolved): NodeModel | null => d.handle?.node ?? null;
    const unreachable = dsts.map((d) => d.kind === "held" && !nodeOf(d)!.live);
    const tooBig = dsts.map((d) => {
      const node = nodeOf(d);
      const receiver = node ? node.owner : pm; // a new node belongs to the sender
      if (node && !node.live) return false;
      return charged > receiver.limits.maxInflightBytes || objects.length > receiver.limits.maxInflightObjects;
    });
    const anyTooBig = tooBig.some(Boolean);
    if (!hard && !o.cont && unreachable.some(Boolean)) must.add("EHOSTUNREACH");
    if (!hard && !o.cont && anyTooBig) must.add("EMSGSIZE");

    const vecs = splitPayload(payload, o.vecs);
    const r = attempt(what, () =>
      pm.peer.send(dstIds as number[], vecs, { handles: handles.map((h) => h.id) as number[], objects, continue: o.cont }),
    );
    const fresh = all.filter((d) => d.kind === "new").map((d) => d.id as number);
    const tolerated = ["ENOMEM"];
    if (!o.cont || fresh.length > 0) tolerated.push("EDQUOT"); // creating a node may be charged
    if (hard && !o.cont) tolerated.push("EHOSTUNREACH", "EDQUOT");
    if (anyTooBig) tolerated.push("EMSGSIZE", "EDQUOT");
    if (hard && anyTooBig) must.add("EMSGSIZE");
    expectOutcome(what, r, must, tolerated);

    if (!r.ok) {
      if (pm.alive) this.probeNewIds(pm, what, fresh);
      return;
    }
    // The call went through: fresh caller-chosen IDs are nodes of the sender now.
    for (const fid of new Set(fresh)) this.createNode(pm, fid);
    const resolvedNode = (d: Resolved): NodeModel => pm.handles.get(d.id as number)!.node;

    const errors = r.value.errors;
    check(Array.isArray(errors) && errors.length === dsts.length, `${what}: errors has length ${errors?.length}, expected ${dsts.length}`);
    const msg: SentMessage = {
      id, sender: pm, payload, objects, size, charged,
      handles: handles.map((h) => {
        const node = resolvedNode(h);
        return { node, liveAtSend: node.live };
      }),
    };
    const groups = new Map<PeerModel, Group>();
    const tx = ++this.txIds;
    dsts.forEach((d, i) => {
      const node = resolvedNode(d);
      const err = errors[i];
      if (!o.cont) {
        check(err === null, `${what}: errors[${i}] is ${err} without continue`);
      } else if (!node.live) {
        check(err === "EHOSTUNREACH", `${what}: destination ${d.id} (node ${node.key} destroyed) got ${err}, expected EHOSTUNREACH`);
      } else if (tooBig[i]) {
        check(err === "EDQUOT" || err === "EMSGSIZE", `${what}: destination ${d.id} cannot hold ${charged} B but got ${err}`);
      } else {
        check(err === null || err === "EDQUOT", `${what}: destination ${d.id} (live node ${node.key}) got ${err}`);
      }
      if (err !== null) return;
      check(node.live, `${what}: message to destroyed node ${node.key} was accepted`);
      const receiver = node.owner;
      check(receiver.alive, `${what}: message to node ${node.key} of disconnected peer ${receiver.index} was accepted`);
      let g = groups.get(receiver);
      if (!g) {
        g = { tx, entries: [], loose: false };
        groups.set(receiver, g);
      }
      g.entries.push({ kind: "data", node, msg, maybe: false });
    });
    for (const [receiver, g] of groups) receiver.queue.push(g);
  }

  recv(o: Extract<Op, { op: "recv" }>): void {
    const pm = this.peerAt(o.peer);
    for (let n = 0; n < o.count && this.recvOne(pm); n++);
  }

  /** One recv(); true if it returned a message. */
  private recvOne(pm: PeerModel): boolean {
    const what = `peer ${pm.index}: recv()`;
    const r = attempt(what, () => pm.peer.recv());
    expectOutcome(what, r, new Set(pm.alive ? [] : ["ESHUTDOWN"]));
    if (!r.ok) return false;
    if (r.value === null) {
      this.expectEmpty(pm, what);
      return false;
    }
    this.received(pm, r.value, what);
    return true;
  }

  /** recv() said EAGAIN: nothing the model requires may be pending. */
  private expectEmpty(pm: PeerModel, what: string): void {
    for (const g of pm.queue) {
      for (const e of g.entries) {
        check(
          e.maybe || !pm.byNode.has(e.node),
          `${what}: returned null, but ${describeEntry(e)} (transaction ${g.tx}) is still due`,
        );
      }
    }
    pm.queue = [];
  }

  private received(pm: PeerModel, m: Message, what: string): void {
    check(["data", "node-destroy", "node-release"].includes(m.type), `${what}: message type ${m.type}`);
    if (m.type === "node-release") {
      // Release notifications are not modelled (withdrawal makes their timing
      // an implementation choice); they must name an owner handle of the receiver.
      const h = pm.handles.get(m.destination);
      check(h && h.node.owner === pm, `${what}: node-release for ${m.destination}, which is not a node handle of peer ${pm.index}`);
      this.checkNotification(m, what);
      return;
    }
    for (;;) {
      const g = pm.queue[0];
      check(g, `${what}: unexpected ${describeMessage(m)}: nothing is due`);
      // Drop what "no handle, no news" has dropped.
      const due = g.entries.filter((e) => e.maybe || pm.byNode.has(e.node));
      if (due.length !== g.entries.length) g.loose = true;
      g.entries = due;
      const idx = g.entries.findIndex((e) => this.matches(pm, e, m));
      if (idx < 0) {
        const owed = g.entries.filter((e) => !e.maybe);
        check(owed.length === 0, `${what}: got ${describeMessage(m)}, expected ${owed.map(describeEntry).join(" or ")} (transaction ${g.tx})`);
        pm.queue.shift();
        continue;
      }
      const [e] = g.entries.splice(idx, 1);
      const stillDue = g.entries.some((x) => !x.maybe && pm.byNode.has(x.node));
      check(m.continue === true || !stillDue, `${what}: ${describeMessage(m)} lacks continue, but its transaction ${g.tx} has more for this peer`);
      check(
        m.continue === false || g.entries.length > 0 || g.loose,
        `${what}: ${describeMessage(m)} has continue, but nothing of transaction ${g.tx} follows`,
      );
      if (g.entries.length === 0) pm.queue.shift();
      if (e.kind === "node-destroy") this.checkNotification(m, what);
      else this.receivedData(pm, m, e.msg!, what);
      return;
    }
  }

  private matches(pm: PeerModel, e: Entry, m: Message): boolean {
    // No handle, no news: whatever is delivered names a handle the peer holds.
    const h = pm.byNode.get(e.node);
    if (e.kind !== m.type || !h || m.destination !== h.id) return false;
    if (e.kind === "node-destroy") return true;
    if (m.payload.length < 4) return false;
    return new DataView(m.payload.buffer, m.payload.byteOffset, 4).getUint32(0, true) === e.msg!.id;
  }

  private checkNotification(m: Message, what: string): void {
    check(m.offset === -1, `${what}: ${m.type} has offset ${m.offset}, expected -1`);
    check(m.payload.length === 0, `${what}: ${m.type} has a ${m.payload.length} B payload`);
    check(m.handles.length === 0 && m.objects.length === 0, `${what}: ${m.type} carries handles or objects`);
    m.release(); // a no-op for notifications
  }

  private receivedData(pm: PeerModel, m: Message, msg: SentMessage, what: string): void {
    const last = pm.lastFrom.get(msg.sender.index) ?? 0;
    check(msg.id >= last, `${what}: message #${msg.id} from peer ${msg.sender.index} after #${last}: not FIFO`);
    pm.lastFrom.set(msg.sender.index, msg.id);

    check(sameBytes(m.payload, msg.payload), `${what}: payload of message #${msg.id} differs from what was sent`);
    // Compared by value: identity across one thread is likely but not promised.
    check(JSON.stringify(m.objects) === JSON.stringify(msg.objects), `${what}: objects of message #${msg.id} differ`);
    check(m.handles.length === msg.handles.length, `${what}: message #${msg.id} has ${m.handles.length} handles, sent ${msg.handles.length}`);
    msg.handles.forEach((a, i) => {
      const got = m.handles[i];
      const hwhat = `${what}: handle [${i}] of message #${msg.id}`;
      if (!a.liveAtSend) {
        check(got === HANDLE_INVALID, `${hwhat}: node ${a.node.key} was destroyed before the send, got ${got}, expected HANDLE_INVALID`);
      } else if (got === HANDLE_INVALID) {
        // Only open case: the owner's own handle is gone (destroyed and released).
        check(
          a.node.owner === pm && !pm.byNode.has(a.node),
          `${hwhat}: HANDLE_INVALID for node ${a.node.key}, but the message was ordered before the node was destroyed` +
            ` (SPEC.md §4: only a node destroyed before the message is ordered gives HANDLE_INVALID)`,
        );
      } else {
        this.giveHandle(pm, a.node, got, hwhat);
      }
    });

    const off = m.offset;
    check(Number.isInteger(off) && off >= 0 && off % 8 === 0, `${what}: slice offset ${off} is not a non-negative multiple of 8`);
    for (const s of pm.slices.values()) {
      check(
        off + msg.size <= s.offset || s.offset + s.size <= off,
        `${what}: slice ${off}+${msg.size} of message #${msg.id} overlaps live slice ${s.offset}+${s.size} of message #${s.msg.id}`,
      );
    }
    pm.slices.set(off, { message: m, msg, offset: off, size: msg.size });
  }

  releaseSlice(o: Extract<Op, { op: "releaseSlice" }>): void {
    this.releaseSliceOf(this.peerAt(o.peer), o);
  }

  private releaseSliceOf(pm: PeerModel, o: { kind: number; idx: number }): void {
    const live = [...pm.slices.values()];
    if (o.kind <= 6 && live.length > 0) {
      const s = live[o.idx % live.length];
      const what = `peer ${pm.index}: release slice ${s.offset} (message #${s.msg.id})`;
      check(sameBytes(s.message.payload, s.msg.payload), `${what}: payload changed before release (view of ${s.message.payload.length} B)`);
      const r = attempt(what, () => (o.idx % 2 ? s.message.release() : pm.peer.releaseSlice(s.offset)));
      expectOutcome(what, r, new Set());
      pm.slices.delete(s.offset);
      pm.released.push(s.message);
      if (pm.released.length > 16) pm.released.shift();
      return;
    }
    if (o.kind <= 8) {
      // A message whose slice is gone; its offset may serve a newer slice by now.
      const stale = pm.released.filter((m) => !pm.slices.has(m.offset));
      if (stale.length === 0) return;
      const m = stale[o.idx % stale.length];
      const what = `peer ${pm.index}: second release of slice ${m.offset}`;
      const r = attempt(what, () => m.release());
      expectOutcome(what, r, new Set([pm.alive ? "ENXIO" : "ESHUTDOWN"]));
      return;
    }
    let off = 8 * (1 + o.idx) * 64 + (o.idx % 3 === 0 ? 3 : 0);
    while (pm.slices.has(off)) off += 8;
    const what = `peer ${pm.index}: releaseSlice(${off}) of no slice`;
    const r = attempt(what, () => pm.peer.releaseSlice(off));
    expectOutcome(what, r, new Set([pm.alive ? "ENXIO" : "ESHUTDOWN"]), ["EINVAL"]);
  }

  transfer(o: Extract<Op, { op: "transfer" }>): void {
    const pm = this.peerAt(o.peer);
    const to = o.toSelf ? pm : this.peerAt(o.to);
    const src = this.resolveHandle(pm, o.src);
    const what = `peer ${pm.index}: transfer(${String(src.id)}, peer ${to.index})`;
    const must = new Set<string>();
    const tolerated = ["EDQUOT", "ENOMEM"];
    const destroyed = src.kind === "held" && !src.handle!.node.live;
    if (!pm.alive) must.add("ESHUTDOWN");
    else if (!to.alive && destroyed) tolerated.push("ESHUTDOWN"); // or HANDLE_INVALID
    else if (!to.alive) must.add("ESHUTDOWN");
    if (src.kind === "invalid") must.add("EINVAL");
    if (src.kind === "stale") must.add("ENXIO");
    const r = attempt(what, () => (o.toSelf ? pm.peer.transfer(src.id as number) : pm.peer.transfer(src.id as number, to.peer)));
    expectOutcome(what, r, must, tolerated);
    if (!r.ok) {
      if (src.kind === "new" && pm.alive) this.probeNewIds(pm, what, [src.id as number]);
      return;
    }
    const handle = src.kind === "new" ? this.createNode(pm, src.id as number) : src.handle!;
    if (!handle.node.live) {
      check(r.value === HANDLE_INVALID, `${what}: node ${handle.node.key} is destroyed, got ${r.value}, expected HANDLE_INVALID`);
      return;
    }
    this.giveHandle(to, handle.node, r.value, what);
  }

  release(o: Extract<Op, { op: "release" }>): void {
    const pm = this.peerAt(o.peer);
    const h = this.resolveHandle(pm, o.handle);
    const what = `peer ${pm.index}: release(${String(h.id)})`;
    const must = new Set<string>();
    if (!pm.alive) must.add("ESHUTDOWN");
    else if (h.kind === "invalid") must.add("EINVAL");
    else if (h.kind !== "held") must.add("ENXIO"); // release never creates a node
    else if (h.handle!.node.owner === pm && h.handle!.node.live && h.handle!.refs === 1) must.add("EBUSY");
    const r = attempt(what, () => pm.peer.release(h.id as number));
    expectOutcome(what, r, must);
    if (r.ok) this.dropRef(pm, h.handle!);
  }

  destroy(o: Extract<Op, { op: "destroy" }>): void {
    const pm = this.peerAt(o.peer);
    const ids = o.nodes.map((p) => this.resolveHandle(pm, p));
    const what = `peer ${pm.index}: destroy([${ids.map((d) => String(d.id))}]${o.releaseHandles ? ", releaseHandles" : ""})`;
    const must = new Set<string>();
    if (!pm.alive) must.add("ESHUTDOWN");
    for (const d of ids) {
      if (d.kind === "invalid") must.add("EINVAL");
      if (d.kind === "stale") must.add("ENXIO");
      if (d.kind === "held" && d.handle!.node.owner !== pm) must.add("EREMOTE");
      if (d.kind === "held" && d.handle!.node.owner === pm && !d.handle!.node.live) must.add("ESTALE");
    }
    if (new Set(ids.map((d) => d.id)).size !== ids.length) must.add("ENOTUNIQ");
    const r = attempt(what, () => pm.peer.destroy(ids.map((d) => d.id) as number[], { releaseHandles: o.releaseHandles }));
    const fresh = ids.filter((d) => d.kind === "new").map((d) => d.id as number);
    const tolerated = fresh.length > 0 ? ["EDQUOT", "ENOMEM"] : []; // creating a node may be charged
    if (!pm.alive && ids.length === 0) {
      must.clear(); // an empty list may do nothing even then
      tolerated.push("ESHUTDOWN");
    }
    expectOutcome(what, r, must, tolerated);
    if (!r.ok) {
      if (pm.alive) this.probeNewIds(pm, what, fresh);
      return;
    }
    if (ids.length === 0) return;
    const handles = ids.map((d) => (d.kind === "new" ? this.createNode(pm, d.id as number) : d.handle!));
    for (const h of handles) h.node.live = false;
    this.queueDestroy(handles.map((h) => h.node), false);
    if (o.releaseHandles) for (const h of handles) this.dropRef(pm, h);
  }

  reset(o: Extract<Op, { op: "reset" }>): void {
    const pm = this.peerAt(o.peer);
    // New limits come with a flush, so current usage never exceeds them.
    const options = o.limits ? { flush: true, limits: o.limits } : { flush: true };
    const what = `peer ${pm.index}: reset(${JSON.stringify(options)})`;
    const r = attempt(what, () => pm.peer.reset(options));
    expectOutcome(what, r, new Set(pm.alive ? [] : ["ESHUTDOWN"]));
    if (!r.ok) return;
    this.flush(pm);
    if (o.limits) pm.limits = { ...o.limits };
  }

  disconnect(o: Extract<Op, { op: "disconnect" }>): void {
    const pm = this.peerAt(o.peer);
    const what = `peer ${pm.index}: disconnect()`;
    const r = attempt(what, () => pm.peer.disconnect());
    expectOutcome(what, r, new Set(pm.alive ? [] : ["ESHUTDOWN"]));
    if (!r.ok) return;
    this.flush(pm);
    pm.alive = false;
    const later: [string, () => unknown][] = [["recv", () => pm.peer.recv()], ["query", () => pm.peer.query()]];
    for (const [call, fn] of later) {
      const after = attempt(`${what} then ${call}()`, fn);
      expectOutcome(`${what} then ${call}()`, after, new Set(["ESHUTDOWN"]));
    }
  }

  apply(o: Op): void {
    switch (o.op) {
      case "connect": return this.connect(o.user);
      case "send": return this.send(o);
      case "recv": return this.recv(o);
      case "releaseSlice": return this.releaseSlice(o);
      case "transfer": return this.transfer(o);
      case "release": return this.release(o);
      case "destroy": return this.destroy(o);
      case "reset": return this.reset(o);
      case "disconnect": return this.disconnect(o);
    }
  }

  /** Receive everything and release every live slice once. */
  drain(): void {
    for (const pm of this.peers) {
      if (!pm.alive) continue;
      // Receiving releases nothing, so this is bounded by the quota; the
      // final null checks that nothing the model owes is still queued.
      for (let i = 0; i < 1000 && this.recvOne(pm); i++);
      while (pm.slices.size > 0) this.releaseSliceOf(pm, { kind: 0, idx: 0 });
      check(pm.slices.size === 0, `drain: peer ${pm.index} still has live slices`);
    }
  }
}

function splitPayload(payload: Uint8Array, vecs: number): Uint8Array | Uint8Array[] {
  if (vecs === 0) return payload;
  const parts: Uint8Array[] = [];
  const step = Math.ceil(payload.length / vecs);
  for (let at = 0; at < payload.length; at += step) parts.push(payload.subarray(at, at + step));
  return parts;
}

function describeEntry(e: Entry): string {
  return e.kind === "data" ? `message #${e.msg!.id} to node ${e.node.key} (ID ${e.node.ownerId})` : `node-destroy of node ${e.node.key}`;
}

function describeMessage(m: Message): string {
  if (m.type !== "data") return `${m.type} for ${m.destination}`;
  const id = m.payload.length >= 4 ? new DataView(m.payload.buffer, m.payload.byteOffset, 4).getUint32(0, true) : "?";
  return `message #${id} to ${m.destination}`;
}

/** Three peers of three users, each holding a handle to node 4 of each other. */
function bootstrap(model: Model): void {
  for (let user = 0; user < 3; user++) model.connect(user);
  for (const from of model.peers) {
    for (const to of model.peers) {
      if (to !== from) model.transfer({ op: "transfer", peer: from.index, src: { kind: 0, idx: 0 }, to: to.index, toSelf: false });
    }
  }
}

async function runSequence(ops: Op[]): Promise<void> {
  const bus = await Bus.create({ shared: false, limits: USER_LIMITS });
  try {
    const model = new Model(bus);
    bootstrap(model);
    model.checkInvariants("bootstrap");
    ops.forEach((o, step) => {
      model.apply(o);
      model.checkInvariants(`step ${step} (${o.op})`);
    });
    model.drain();
    model.checkInvariants("drain");
  } finally {
    bus.close();
  }
}

describe("random operation sequences", () => {
  it("keep slices, handle IDs, quotas and order consistent with the model", async () => {
    const env = (globalThis as { process?: { env: Record<string, string | undefined> } }).process?.env;
    const seed = env?.FC_SEED ? Number(env.FC_SEED) : undefined;
    await fc.assert(fc.asyncProperty(fc.array(opArb, { minLength: 1, maxLength: 200, size: "max" }), runSequence), {
      numRuns: 60,
      seed,
      interruptAfterTimeLimit: 90_000,
    });
  }, 120_000);
});
