// @ts-check
/** What the broker refuses, seen from a JS client. */

import assert from "node:assert/strict";
import { test } from "node:test";

import mqtt from "mqtt";

import { ChatClient, NotAuthorizedError, topics } from "../dist/index.js";
import { newUser, online, pair, record, sleep } from "./helpers.mjs";

/**
 * A bare MQTT connection with a device's credentials (no library on top).
 * @param {import("../dist/index.js").Device} device
 */
async function bare(device) {
  return mqtt.connectAsync(process.env.CHAT_MQTT_WS_URL || device.mqtt.ws_url, {
    protocolVersion: 5,
    clientId: device.mqtt.client_id,
    username: device.mqtt.username,
    password: device.mqtt.password,
    reconnectPeriod: 0,
  });
}

test("the broker refuses subscribing to another user's topics", async (t) => {
  const { a, b, convId } = await pair("victim", "friend");
  const eve = await newUser("eve");
  const device = await eve.http.createDevice("web");
  const conn = await bare(device);
  t.after(() => conn.endAsync());
  /** @type {string[]} */
  const leaked = [];
  conn.on("message", (topic) => leaked.push(topic));
  for (const filter of [topics.userRoot(a.userId), "user/#", "#", `conv/${convId}/msg/+`]) {
    await assert.rejects(conn.subscribeAsync(filter, { qos: 1 }), /Subscribe error/, filter);
  }
  // Her own topics are fine.
  const granted = await conn.subscribeAsync(topics.userRoot(eve.userId), { qos: 1 });
  assert.equal(granted[0]?.qos, 1);
  const bob = await online(t, b);
  await bob.sendText(convId, "private");
  await sleep(300);
  assert.deepEqual(leaked, []);
});

test("the broker refuses publishing as someone else", async (t) => {
  const { a, b, convId } = await pair("victim", "friend");
  const bob = await online(t, b);
  const got = record(bob, "message");
  const mallory = await newUser("mallory");
  const conn = await bare(await mallory.http.createDevice("web"));
  t.after(() => conn.endAsync());
  const forged = JSON.stringify({ client_msg_id: "forged1", kind: "text", text: "from Alice" });
  await assert.rejects(
    conn.publishAsync(topics.convUp(convId, "msg", a.userId), forged, { qos: 1 }),
    /Not authorized/i,
  );
  await sleep(300);
  assert.deepEqual(got, []);
});

test("a user who is not an operator cannot read the operators' queue", async (t) => {
  const user = await newUser("nosy");
  const device = await user.http.createDevice("web");
  const client = new ChatClient({ device, userId: user.userId, operatorViews: { queue: true } });
  t.after(() => client.close());
  await assert.rejects(client.connect(), NotAuthorizedError);
  assert.equal(client.connected, false);
});

test("wrong credentials are refused at connect", async () => {
  const user = await newUser("wrong");
  const device = await user.http.createDevice("web");
  const forged = { ...device, mqtt: { ...device.mqtt, password: "not-the-password" } };
  const client = new ChatClient({ device: forged, userId: user.userId });
  await assert.rejects(client.connect(5_000), NotAuthorizedError);
});
