/**
 * Client-assigned ids (`client_msg_id`, `call_id`). The contract's id pattern
 * is `[A-Za-z0-9_-]{1,64}`; 96 random bits in base64url (16 characters) match
 * it by construction, like the Python client's `secrets.token_urlsafe(12)`.
 */

const ALPHABET = "ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789-_";
const ID_PATTERN = /^[A-Za-z0-9_-]{1,64}$/;

function randomBytes(count: number): Uint8Array {
  const bytes = new Uint8Array(count);
  const webCrypto = (globalThis as { crypto?: { getRandomValues?: (a: Uint8Array) => Uint8Array } })
    .crypto;
  if (webCrypto?.getRandomValues) {
    webCrypto.getRandomValues(bytes);
  } else {
    // React Native without a crypto polyfill: ids must be unique, not secret
    // (the server checks who publishes), so Math.random is good enough here.
    for (let i = 0; i < count; i++) bytes[i] = Math.floor(Math.random() * 256);
  }
  return bytes;
}

/** A fresh id for a `client_msg_id` or a `call_id`. */
export function newId(): string {
  const bytes = randomBytes(12);
  let out = "";
  // 12 bytes = 96 bits = 16 six-bit characters, no padding needed.
  for (let i = 0; i < bytes.length; i += 3) {
    const n = ((bytes[i] ?? 0) << 16) | ((bytes[i + 1] ?? 0) << 8) | (bytes[i + 2] ?? 0);
    out +=
      ALPHABET[(n >> 18) & 63]! +
      ALPHABET[(n >> 12) & 63]! +
      ALPHABET[(n >> 6) & 63]! +
      ALPHABET[n & 63]!;
  }
  return out;
}

/** Whether `value` is a valid contract id (what the server would accept). */
export function isValidId(value: unknown): value is string {
  return typeof value === "string" && ID_PATTERN.test(value);
}
