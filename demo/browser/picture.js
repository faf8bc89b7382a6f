// Draws a bus snapshot (bus.inspect(), host-common/types.ts BusSnapshot) as
// an SVG: each connected peer a box on a circle, its nodes as dots beside
// it, and a line from each peer to every node of another peer it holds a
// handle to. The token (the page's node 8, passed around the ring) is drawn
// dashed. Returns what it drew: counts, who holds the token, the live nodes.
const NS = "http://www.w3.org/2000/svg";
const W = 640, H = 560, CX = W / 2, CY = H / 2 + 10, R = 190;

function el(name, attrs, text) {
  const e = document.createElementNS(NS, name);
  for (const [k, v] of Object.entries(attrs)) e.setAttribute(k, String(v));
  if (text !== undefined) e.textContent = text;
  return e;
}

export function drawPicture(svg, snap, names) {
  const peers = snap.peers.filter((p) => p.state === "connected");
  const at = new Map(); // peer id → { x, y, name }
  peers.forEach((p, i) => {
    const a = -Math.PI / 2 + (2 * Math.PI * i) / peers.length;
    at.set(p.id, { x: CX + R * Math.cos(a), y: CY + R * Math.sin(a), a, name: names.get(p.slot) ?? `peer ${p.id}` });
  });
  // the token: the node the page owns under its ID 8
  const pageId = peers.find((p) => names.get(p.slot) === "page")?.id;
  const token = snap.peers.find((p) => p.id === pageId)?.handles.find((h) => h.owner && h.id === 8)?.node;

  const dots = new Map(); // node id → { x, y }
  const live = snap.nodes.filter((n) => !n.destroyed && at.has(n.owner));
  const byOwner = new Map();
  for (const n of live) byOwner.set(n.owner, [...(byOwner.get(n.owner) ?? []), n]);
  for (const [owner, nodes] of byOwner) {
    const { x, y, a } = at.get(owner);
    nodes.forEach((n, k) => {
      const spread = (k - (nodes.length - 1) / 2) * 0.32;
      dots.set(n.id, { x: x + 62 * Math.cos(a + Math.PI + spread), y: y + 62 * Math.sin(a + Math.PI + spread) });
    });
  }

  svg.replaceChildren();
  let handles = 0, tokenHolder = null;
  for (const p of peers) {
    const from = at.get(p.id);
    for (const h of p.handles) {
      if (h.owner || h.id < 0) continue;
      const to = dots.get(h.node);
      if (!to) continue;
      handles++;
      const isToken = h.node === token;
      if (isToken) tokenHolder = from.name;
      svg.append(el("line", {
        x1: from.x, y1: from.y, x2: to.x, y2: to.y,
        stroke: isToken ? "#c2410c" : "#94a3b8", "stroke-width": isToken ? 2.5 : 1,
        "stroke-dasharray": isToken ? "6 4" : "none", opacity: isToken ? 1 : 0.7,
      }));
    }
  }
  for (const [id, d] of dots) {
    svg.append(el("circle", { cx: d.x, cy: d.y, r: id === token ? 7 : 5, fill: id === token ? "#c2410c" : "#2563eb" }));
  }
  for (const p of peers) {
    const { x, y, name } = at.get(p.id);
    svg.append(el("rect", { x: x - 52, y: y - 22, width: 104, height: 44, rx: 8, fill: "#fff", stroke: "#1d2330" }));
    svg.append(el("text", { x, y: y - 4, "text-anchor": "middle", "font-size": 13, "font-weight": 600 }, name));
    svg.append(el("text", { x, y: y + 13, "text-anchor": "middle", "font-size": 11, fill: "#555" },
      `${p.handles.length} handles · ${p.queue.length} queued`));
  }
  svg.append(el("text", { x: 12, y: 22, "font-size": 12, fill: "#555" },
    `${peers.length} peers · ${live.length} nodes · ${handles} handles to other peers' nodes · ` +
    `${snap.transactions.length} transactions queued`));
  return { peers: peers.length, nodes: live.length, handles, tokenHolder, nodeIds: live.map((n) => n.id) };
}
