// @ts-check
/**
 * Shared helpers of the tests that run against the real system (broker, API,
 * services), which tests/integration/test_js_client.py starts and points to:
 *   CHAT_API_URL      the API, e.g. http://127.0.0.1:8000 (required)
 *   CHAT_MQTT_WS_URL  a broker WebSocket URL to use instead of the device's ws_url
 */

import { randomBytes } from "node:crypto";

import { ChatClient, ChatHttp } from "../dist/index.js";

/** @returns {string} */
function apiUrl() {
  const url = process.env.CHAT_API_URL;
  if (!url)
    throw new Error(
      "CHAT_API_URL is not set: run these tests through tests/integration/test_js_client.py",
    );
  return url;
}

export const API_URL = apiUrl();
export const PASSWORD = "correct horse battery";

/**
 * A fresh username (3-32 of [A-Za-z0-9_.-]): tests share one system, so every
 * user is new.
 * @param {string} prefix
 */
export function uniqueName(prefix) {
  return `${prefix.slice(0, 12)}_${randomBytes(6).toString("hex")}`;
}

/**
 * @typedef {{ http: ChatHttp, userId: string, username: string, name: string }} User
 */

/**
 * Register a new user.
 * @param {string} name the display name (and username prefix)
 * @returns {Promise<User>}
 */
export async function newUser(name) {
  const http = new ChatHttp(API_URL);
  const username = uniqueName(name);
  const session = await http.register(username, PASSWORD, name);
  return { http, userId: session.user_id, username, name };
}

/**
 * A connected client on a new device of `user`, closed when the test ends.
 * @param {import("node:test").TestContext} t
 * @param {User} user
 * @param {Partial<import("../dist/index.js").ChatClientOptions>} [options]
 */
export async function online(t, user, options = {}) {
  const device = await user.http.createDevice("web");
  const client = new ChatClient({
    device,
    userId: user.userId,
    http: user.http,
    ...(process.env.CHAT_MQTT_WS_URL ? { wsUrl: process.env.CHAT_MQTT_WS_URL } : {}),
    ...options,
  });
  await client.connect();
  t.after(() => client.close());
  return client;
}

/**
 * Records every `name` event of `client` from now on.
 * @template {keyof import("../dist/index.js").ChatClientEvents} K
 * @param {ChatClient} client
 * @param {K} name
 * @returns {import("../dist/index.js").ChatClientEvents[K][]}
 */
export function record(client, name) {
  /** @type {import("../dist/index.js").ChatClientEvents[K][]} */
  const seen = [];
  client.on(name, (value) => seen.push(value));
  return seen;
}

/**
 * Wait until `check()` is true (polling), or fail after `timeoutMs`.
 * @param {() => boolean} check
 * @param {string} what
 * @param {number} [timeoutMs]
 */
export async function until(check, what, timeoutMs = 10_000) {
  const deadline = Date.now() + timeoutMs;
  while (!check()) {
    if (Date.now() > deadline) throw new Error(`timed out waiting for ${what}`);
    await sleep(20);
  }
}

/** @param {number} ms */
export function sleep(ms) {
  return new Promise((resolve) => setTimeout(resolve, ms));
}

/**
 * Two users who share a direct conversation.
 * @param {string} a
 * @param {string} b
 */
export async function pair(a, b) {
  const first = await newUser(a);
  const second = await newUser(b);
  const conv = await first.http.createConversation([second.userId]);
  return { a: first, b: second, convId: conv.conv_id };
}
