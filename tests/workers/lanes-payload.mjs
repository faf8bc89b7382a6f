// Payloads of tests/lanes.test.ts and of its worker (lanes-agent.mjs): a
// 12-byte header (tag, seq, length, little-endian u32 each), then a pattern
// that depends on all three, so a payload that was cut, moved, overwritten
// or mixed up with another is caught by readPayload.

/** A payload of `size` bytes (at least 12) for message `seq` of sender `tag`. */
export function makePayload(tag, seq, size) {
  const p = new Uint8Array(Math.max(size, 12));
  const v = new DataView(p.buffer);
  v.setUint32(0, tag, true);
  v.setUint32(4, seq, true);
  v.setUint32(8, p.length, true);
  for (let i = 12; i < p.length; i++) p[i] = (tag * 131 + seq * 31 + i * 7 + (i >> 8)) & 255;
  return p;
}

/** The header of a payload made by makePayload, with `intact` false if any byte is not what was sent. */
export function readPayload(p) {
  if (p.length < 12) return { tag: -1, seq: -1, intact: false };
  const v = new DataView(p.buffer, p.byteOffset, p.byteLength);
  const tag = v.getUint32(0, true), seq = v.getUint32(4, true);
  let intact = v.getUint32(8, true) === p.length;
  for (let i = 12; intact && i < p.length; i++) if (p[i] !== ((tag * 131 + seq * 31 + i * 7 + (i >> 8)) & 255)) intact = false;
  return { tag, seq, intact };
}
