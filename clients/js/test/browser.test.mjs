// @ts-check
/**
 * The library in a real browser (headless Chromium): ES modules from dist/,
 * `mqtt` mapped by an import map to node_modules/mqtt/dist/mqtt.esm.js (what the
 * dashboard does), MQTT over WebSocket to the real broker, HTTP through a
 * same-origin proxy to the real API (as when the API serves the dashboard).
 *
 * Chromium: CHROMIUM_PATH, else /usr/bin/chromium (./chat test installs it).
 */

import assert from "node:assert/strict";
import { spawn } from "node:child_process";
import { existsSync } from "node:fs";
import { mkdtemp, readFile, rm } from "node:fs/promises";
import { createServer } from "node:http";
import { tmpdir } from "node:os";
import { extname, join, normalize, resolve } from "node:path";
import { test } from "node:test";
import { fileURLToPath } from "node:url";

import { API_URL } from "./helpers.mjs";

const ROOT = resolve(fileURLToPath(new URL("..", import.meta.url)));
const TYPES = {
  ".html": "text/html",
  ".js": "text/javascript",
  ".mjs": "text/javascript",
  ".map": "application/json",
};
// Only these are served: the page, the built library and the mqtt browser bundle.
const SERVED = ["test/browser/", "dist/", "node_modules/mqtt/dist/"];
const CHROMIUM = process.env.CHROMIUM_PATH || "/usr/bin/chromium";

/**
 * @param {(result: any) => void} onResult
 * @returns {import("node:http").Server}
 */
function pageServer(onResult) {
  return createServer(async (request, response) => {
    try {
      const url = new URL(request.url ?? "/", "http://localhost");
      /** @type {Buffer[]} */
      const chunks = [];
      for await (const chunk of request) chunks.push(chunk);
      const body = Buffer.concat(chunks);
      if (url.pathname === "/result") {
        onResult(JSON.parse(body.toString("utf8")));
        response.writeHead(204).end();
        return;
      }
      if (url.pathname.startsWith("/v1/")) {
        await proxy(request, url, body, response);
        return;
      }
      const path = normalize(url.pathname).replace(/^\/+/, "");
      if (!SERVED.some((prefix) => path.startsWith(prefix))) {
        response.writeHead(404).end();
        return;
      }
      const data = await readFile(join(ROOT, path));
      response.writeHead(200, {
        "Content-Type":
          TYPES[/** @type {keyof TYPES} */ (extname(path))] ?? "application/octet-stream",
      });
      response.end(data);
    } catch (error) {
      response.writeHead(500).end(String(error));
    }
  });
}

/**
 * Forward a request to the API as it came.
 * @param {import("node:http").IncomingMessage} request
 * @param {URL} url
 * @param {Buffer} body
 * @param {import("node:http").ServerResponse} response
 */
async function proxy(request, url, body, response) {
  /** @type {Record<string, string>} */
  const headers = {};
  for (const name of ["authorization", "content-type", "accept"]) {
    const value = request.headers[name];
    if (typeof value === "string") headers[name] = value;
  }
  const method = request.method ?? "GET";
  const answer = await fetch(`${API_URL}${url.pathname}${url.search}`, {
    method,
    headers,
    ...(method === "GET" || method === "HEAD" ? {} : { body: new Uint8Array(body) }),
  });
  const data = Buffer.from(await answer.arrayBuffer());
  const type = answer.headers.get("content-type");
  response.writeHead(answer.status, type ? { "Content-Type": type } : {});
  response.end(data);
}

test(
  "the library works in a browser, with mqtt's ESM bundle from an import map",
  { timeout: 60_000 },
  async (t) => {
    if (!existsSync(CHROMIUM)) {
      t.skip(`no Chromium at ${CHROMIUM}`);
      return;
    }
    /** @type {(result: any) => void} */
    let settle = () => undefined;
    /** @type {Promise<any>} */
    const result = new Promise((resolvePromise) => {
      settle = resolvePromise;
    });
    const server = pageServer((value) => settle(value));
    await new Promise((listening) => server.listen(0, "127.0.0.1", () => listening(undefined)));
    const address = server.address();
    assert.ok(address !== null && typeof address === "object");
    const profile = await mkdtemp(join(tmpdir(), "chat-js-browser-"));
    const browser = spawn(
      CHROMIUM,
      [
        "--headless=new",
        "--no-sandbox",
        "--disable-gpu",
        "--no-first-run",
        `--user-data-dir=${profile}`,
        `http://127.0.0.1:${address.port}/test/browser/page.html`,
      ],
      // Not detached: in the test runner's process group, so whoever ends the
      // run (tests/integration/test_js_client.py on a timeout) ends Chromium too.
      // TMPDIR: Chromium's own temporary files go into the profile, removed below.
      { stdio: ["ignore", "ignore", "pipe"], env: { ...process.env, TMPDIR: profile } },
    );
    let log = "";
    browser.stderr?.on("data", (chunk) => {
      log = (log + chunk.toString()).slice(-4000);
    });
    // One hook, in this order: the profile can go only once Chromium stopped
    // writing to it, and the server closes at once with no browser connected.
    t.after(async () => {
      await stopBrowser(browser);
      server.closeAllConnections();
      await new Promise((closed) => server.close(() => closed(undefined)));
      await rm(profile, { recursive: true, force: true, maxRetries: 5 });
    });
    /** @type {ReturnType<typeof setTimeout> | undefined} */
    let timer;
    const outcome = await Promise.race([
      result,
      new Promise((_, reject) => {
        timer = setTimeout(
          () => reject(new Error(`no result from the page; Chromium said:\n${log}`)),
          45_000,
        );
      }),
    ]).finally(() => clearTimeout(timer));
    assert.equal(outcome.ok, true, `the page failed: ${outcome.error}\n${outcome.stack}`);
    assert.equal(outcome.ack, "stored");
    assert.equal(outcome.echoedSeq, 1);
    assert.equal(outcome.receivedSeq, 2);
    assert.equal(outcome.lastSeq, 3, "the message sent while the socket was down arrived");
    assert.equal(outcome.mediaMime, "text/plain");
    assert.match(outcome.userAgent, /Chrome/);
  },
);

/**
 * End the browser we started (its main process takes its helpers with it).
 * @param {import("node:child_process").ChildProcess} browser
 */
async function stopBrowser(browser) {
  if (browser.exitCode === null && browser.signalCode === null) {
    const exited = new Promise((done) => browser.once("exit", done));
    browser.kill("SIGTERM");
    const timer = setTimeout(() => browser.kill("SIGKILL"), 5_000);
    await exited;
    clearTimeout(timer);
  }
  browser.stderr?.destroy();
}
