// @ts-check
/** Network losses: catch-up, outbox re-sends, Last Will presence, revoked devices. */

import assert from "node:assert/strict";
import net from "node:net";
import { test } from "node:test";

import { ChatClient, ChatHttp, NotAuthorizedError, newId } from "../dist/index.js";
import { API_URL, PASSWORD, newUser, online, pair, record, sleep, until } from "./helpers.mjs";

const PRESENCE_DEBOUNCE_MS = 2_000; // the test system's PRESENCE_OFFLINE_DEBOUNCE_SECONDS

/**
 * @param {import("./helpers.mjs").User} user
 * @param {string} convId
 * @param {number} count
 */
async function sendOverHttp(user, convId, count) {
  for (let i = 0; i < count; i++) {
    await user.http.send(convId, { client_msg_id: newId(), kind: "text", text: `missed ${i}` });
  }
}

test("back from a network loss, a client gets each missed message once (persistent session)", async (t) => {
  const { a, b, convId } = await pair("snd", "away");
  const bob = await online(t, b);
  const got = record(bob, "message");
  await sendOverHttp(a, convId, 2);
  await until(() => got.length === 2, "the first two messages");
  const disconnected = bob.waitFor("disconnected");
  const recovered = bob.waitFor("recovered");
  bob.dropConnection();
  await disconnected;
  await sendOverHttp(a, convId, 5);
  await recovered;
  await until(() => got.length >= 7, "the missed messages");
  await sleep(300);
  assert.deepEqual(
    got.map((m) => m.seq),
    [1, 2, 3, 4, 5, 6, 7],
  );
});

test("catch-up over HTTP brings what the broker did not keep", async (t) => {
  const { a, b, convId } = await pair("snd", "lost");
  // A clean start on every reconnect: the broker forgets what it queued, so
  // only the client's catch-up (POST /v1/sync) can bring the missed messages.
  const bob = await online(t, b, { mqttOptions: { clean: true } });
  const got = record(bob, "message");
  await sendOverHttp(a, convId, 1);
  await until(() => got.length === 1, "the first message");
  const disconnected = bob.waitFor("disconnected");
  const recovered = bob.waitFor("recovered");
  bob.dropConnection();
  await disconnected;
  await sendOverHttp(a, convId, 3);
  const { caughtUp } = await recovered;
  assert.equal(caughtUp, 3);
  assert.deepEqual(
    got.map((m) => [m.seq, m.text]),
    [
      [1, "missed 0"],
      [2, "missed 0"],
      [3, "missed 1"],
      [4, "missed 2"],
    ],
  );
  // Live delivery works again after the reconnect.
  const live = bob.waitFor("message", (m) => m.seq === 5);
  await sendOverHttp(a, convId, 1);
  await live;
});

/**
 * A TCP relay to the API that can be cut: `cut()` ends every open connection
 * and closes new ones at once (to a client, the API is unreachable); otherwise
 * the bytes go to the real API unchanged.
 */
async function apiRelay() {
  const target = new URL(API_URL);
  /** @type {Set<net.Socket>} */
  const open = new Set();
  let down = false;
  const relay = {
    refused: 0,
    url: "",
    cut() {
      down = true;
      for (const socket of open) socket.destroy();
    },
    mend() {
      down = false;
    },
  };
  const server = net.createServer((socket) => {
    if (down) {
      relay.refused++;
      socket.destroy();
      return;
    }
    const upstream = net.connect(Number(target.port), target.hostname);
    open.add(socket);
    socket.on("close", () => open.delete(socket));
    socket.pipe(upstream).pipe(socket);
    socket.on("error", () => upstream.destroy());
    upstream.on("error", () => socket.destroy());
    upstream.on("close", () => socket.destroy());
  });
  await new Promise((resolve) => server.listen(0, "127.0.0.1", () => resolve(undefined)));
  const address = /** @type {net.AddressInfo} */ (server.address());
  relay.url = `http://127.0.0.1:${address.port}`;
  return { relay, close: () => server.close() };
}

test("a catch-up that fails after a reconnect is asked again", async (t) => {
  const { a, b, convId } = await pair("snd", "retry");
  const { relay, close } = await apiRelay();
  t.after(close);
  const http = new ChatHttp(relay.url);
  await http.login(b.username, PASSWORD);
  // A clean start: only the catch-up can bring what was sent meanwhile.
  const bob = await online(t, b, { http, mqttOptions: { clean: true } });
  const errors = record(bob, "error");
  const disconnected = bob.waitFor("disconnected");
  const recovered = bob.waitFor("recovered");
  relay.cut();
  bob.dropConnection();
  await disconnected;
  await sendOverHttp(a, convId, 2);
  await until(() => relay.refused > 0, "a first catch-up that fails");
  relay.mend();
  const { caughtUp } = await recovered;
  assert.equal(caughtUp, 2);
  assert.deepEqual(errors, []);
});

test("a device that was never online catches up with sync", async (t) => {
  const { a, b, convId } = await pair("snd", "new");
  await sendOverHttp(a, convId, 4);
  const bob = await online(t, b);
  const got = record(bob, "message");
  bob.seed(convId, 1);
  assert.equal(await bob.catchUp(), 3);
  assert.deepEqual(
    got.map((m) => m.seq),
    [2, 3, 4],
  );
  assert.equal(await bob.catchUp(), 0, "nothing twice");
});

test("a send made while the connection is down goes out after the reconnect", async (t) => {
  const { a, b, convId } = await pair("out", "rcv");
  const alice = await online(t, a);
  const bob = await online(t, b);
  const arrives = bob.waitFor("message", (m) => m.text === "written offline");
  const disconnected = alice.waitFor("disconnected");
  const recovered = alice.waitFor("recovered");
  alice.dropConnection();
  await disconnected;
  assert.equal(alice.connected, false);
  const sending = alice.sendText(convId, "written offline");
  assert.equal(alice.pendingSends, 1);
  const { resent } = await recovered;
  assert.equal(resent, 1);
  const ack = await sending;
  assert.equal(ack.status, "stored");
  assert.equal((await arrives).id, ack.id);
  assert.equal(alice.pendingSends, 0);
});

test("a send whose ack does not come is re-sent with the same client_msg_id", async (t) => {
  const { a, b, convId } = await pair("lossy", "rcv");
  const alice = await online(t, a, { ackTimeoutMs: 400 });
  const bob = await online(t, b);
  const got = record(bob, "message");
  // Fault injection: the first publish of a message "succeeds" but never
  // reaches the broker, as when a send is lost on the way.
  const mqtt = /** @type {any} */ (alice).client;
  const publish = mqtt.publish.bind(mqtt);
  /** @type {string[]} */
  const onWire = [];
  let lost = 0;
  mqtt.publish = (
    /** @type {string} */ topic,
    /** @type {string} */ payload,
    /** @type {any} */ opts,
    /** @type {any} */ cb,
  ) => {
    if (topic.startsWith("conv/") && topic.includes("/msg/")) {
      onWire.push(payload);
      if (lost === 0) {
        lost += 1;
        cb?.();
        return mqtt;
      }
    }
    return publish(topic, payload, opts, cb);
  };
  const started = Date.now();
  const ack = await alice.sendText(convId, "second time lucky");
  assert.equal(ack.status, "stored");
  assert.ok(Date.now() - started >= 400, "re-sent only after the ack timeout");
  assert.equal(onWire.length, 2);
  assert.equal(onWire[0], onWire[1], "the re-send is the same payload, same client_msg_id");
  await until(() => got.length === 1, "the message");
  await sleep(300);
  assert.equal(got.length, 1);
});

test("a peer sees the Last Will: a lost connection is presence offline", async (t) => {
  const { a, b } = await pair("watch", "gone");
  const alice = await online(t, a);
  const comesOnline = alice.waitFor("presence", (p) => p.user_id === b.userId && p.online);
  // No quick reconnect: the device stays away after its socket dies.
  const bob = await online(t, b, { reconnectPeriodMs: 60_000 });
  const came = await comesOnline;
  assert.equal(came.last_seen, null);
  assert.equal((await a.http.presence(b.userId)).online, true);
  const goesOffline = alice.waitFor(
    "presence",
    (p) => p.user_id === b.userId && !p.online,
    PRESENCE_DEBOUNCE_MS + 8_000,
  );
  bob.dropConnection(); // no DISCONNECT: the broker publishes the Will
  const left = await goesOffline;
  assert.notEqual(left.last_seen, null);
  assert.equal((await a.http.presence(b.userId)).online, false);
  await bob.close();
});

test("a graceful close says offline too", async (t) => {
  const { a, b } = await pair("watch", "bye");
  const alice = await online(t, a);
  const device = await b.http.createDevice("android");
  const bob = new ChatClient({ device, userId: b.userId, http: b.http });
  const comesOnline = alice.waitFor("presence", (p) => p.user_id === b.userId && p.online);
  await bob.connect();
  await comesOnline;
  const goesOffline = alice.waitFor("presence", (p) => p.user_id === b.userId && !p.online);
  await bob.close();
  assert.equal((await goesOffline).user_id, b.userId);
});

test("removing a device drops its connection and its credentials stop working", async (t) => {
  const user = await newUser("revoked");
  const device = await user.http.createDevice("web");
  const client = new ChatClient({ device, userId: user.userId, http: user.http });
  await client.connect();
  t.after(() => client.close());
  const refused = client.waitFor("error", (e) => e instanceof NotAuthorizedError);
  await user.http.deleteDevice(device.device_id);
  assert.ok((await refused) instanceof NotAuthorizedError);
  assert.equal(client.connected, false);
  const again = new ChatClient({ device, userId: user.userId });
  await assert.rejects(again.connect(5_000), NotAuthorizedError);
});
