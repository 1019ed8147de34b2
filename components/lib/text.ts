// UTF-8 for QuickJS guests, which have no TextEncoder/TextDecoder.

/** Encode a string as UTF-8 bytes. */
export function encodeUtf8(text: string): Uint8Array {
  const out: number[] = [];
  for (const ch of text) {
    let c = ch.codePointAt(0)!;
    if (c < 0x80) out.push(c);
    else if (c < 0x800) out.push(0xc0 | (c >> 6), 0x80 | (c & 63));
    else if (c < 0x10000) out.push(0xe0 | (c >> 12), 0x80 | ((c >> 6) & 63), 0x80 | (c & 63));
    else out.push(0xf0 | (c >> 18), 0x80 | ((c >> 12) & 63), 0x80 | ((c >> 6) & 63), 0x80 | (c & 63));
  }
  return new Uint8Array(out);
}

/** Decode UTF-8 bytes; invalid sequences become U+FFFD. */
export function decodeUtf8(bytes: Uint8Array): string {
  let out = '';
  let chunk: number[] = [];
  for (let i = 0; i < bytes.length; ) {
    const b = bytes[i]!;
    let c = 0xfffd;
    let n = 1;
    if (b < 0x80) c = b;
    else if (b >= 0xc2 && b < 0xe0 && i + 1 < bytes.length) { c = ((b & 31) << 6) | (bytes[i + 1]! & 63); n = 2; }
    else if (b >= 0xe0 && b < 0xf0 && i + 2 < bytes.length) { c = ((b & 15) << 12) | ((bytes[i + 1]! & 63) << 6) | (bytes[i + 2]! & 63); n = 3; }
    else if (b >= 0xf0 && b < 0xf5 && i + 3 < bytes.length) {
      c = ((b & 7) << 18) | ((bytes[i + 1]! & 63) << 12) | ((bytes[i + 2]! & 63) << 6) | (bytes[i + 3]! & 63);
      n = 4;
    }
    chunk.push(c);
    i += n;
    if (chunk.length >= 8192) { out += String.fromCodePoint(...chunk); chunk = []; }
  }
  return out + String.fromCodePoint(...chunk);
}

/** True when the bytes look binary (a NUL in the first 8000). */
export function looksBinary(bytes: Uint8Array): boolean {
  const n = Math.min(bytes.length, 8000);
  for (let i = 0; i < n; i++) if (bytes[i] === 0) return true;
  return false;
}
