// The demo's messages: 16 bytes, [kind u8, from u8, 0, 0, seq u32, time f64].
export const DATA = 1, PING = 2, PONG = 3, TOKEN = 4, OFFER = 5;

export function encode(kind, from, seq, time) {
  const b = new Uint8Array(16);
  const v = new DataView(b.buffer);
  v.setUint8(0, kind);
  v.setUint8(1, from);
  v.setUint32(4, seq, true);
  v.setFloat64(8, time, true);
  return b;
}

export function decode(payload) {
  // a copy: payload may be a view on shared memory
  const b = payload.slice(0, 16);
  const v = new DataView(b.buffer);
  return { kind: v.getUint8(0), from: v.getUint8(1), seq: v.getUint32(4, true), time: v.getFloat64(8, true) };
}
