// @ts-check
/** The HTTP part against the real API: accounts, devices, conversations, history, sync, media. */

import assert from "node:assert/strict";
import { test } from "node:test";

import { ApiError, ChatHttp, newId } from "../dist/index.js";
import { API_URL, PASSWORD, newUser, pair } from "./helpers.mjs";

test("register, log in, create a device with MQTT credentials", async () => {
  const alice = await newUser("alice");
  const again = new ChatHttp(API_URL);
  const session = await again.login(alice.username, PASSWORD);
  assert.equal(session.user_id, alice.userId);
  assert.equal(again.userId, alice.userId);
  const device = await again.createDevice("ios");
  assert.match(device.mqtt.ws_url, /^ws:\/\//);
  assert.equal(device.mqtt.username, device.device_id);
  assert.equal(device.mqtt.client_id, device.device_id);
  const wrong = await again.login(alice.username, "not the password").catch((e) => e);
  assert.ok(wrong instanceof ApiError);
  assert.equal(wrong.status, 401);
  assert.equal(wrong.code, "invalid_credentials");
  const taken = await new ChatHttp(API_URL)
    .register(alice.username, PASSWORD, "Other")
    .catch((e) => e);
  assert.ok(taken instanceof ApiError && taken.code === "username_taken");
  await again.deleteDevice(device.device_id);
});

test("conversations, HTTP send with duplicate, history and sync", async () => {
  const { a, b, convId } = await pair("ann", "ben");
  const again = await a.http.createConversation([b.userId]);
  assert.equal(again.conv_id, convId, "a direct pair is one conversation");
  const clientMsgId = newId();
  const first = await a.http.send(convId, {
    client_msg_id: clientMsgId,
    kind: "text",
    text: "hello",
  });
  assert.equal(first.status, 201);
  assert.equal(first.duplicate, false);
  assert.equal(first.message.seq, 1);
  const dup = await a.http.send(convId, {
    client_msg_id: clientMsgId,
    kind: "text",
    text: "changed",
  });
  assert.equal(dup.duplicate, true);
  assert.equal(dup.message.id, first.message.id);
  assert.equal(dup.message.text, "hello", "the first body wins");
  await a.http.send(convId, { client_msg_id: newId(), kind: "text", text: "second" });
  const history = await b.http.history(convId);
  assert.deepEqual(
    history.map((m) => m.seq),
    [1, 2],
  );
  assert.deepEqual(
    (await b.http.history(convId, { afterSeq: 1 })).map((m) => m.text),
    ["second"],
  );
  const summaries = await b.http.listConversations();
  const summary = summaries.find((c) => c.conv_id === convId);
  assert.equal(summary?.unread_count, 2);
  assert.equal(summary?.last_seq, 2);
  const synced = await b.http.sync({ [convId]: 1 });
  assert.deepEqual(
    synced.find((c) => c.conv_id === convId)?.messages.map((m) => m.seq),
    [2],
  );
  const refused = await new ChatHttp(API_URL, { token: "nope" })
    .listConversations()
    .catch((e) => e);
  assert.ok(refused instanceof ApiError && refused.code === "unauthorized");
  const stranger = await newUser("eve");
  const notMember = await stranger.http
    .send(convId, { client_msg_id: newId(), kind: "text", text: "hi" })
    .catch((e) => e);
  assert.ok(notMember instanceof ApiError);
  assert.equal(notMember.code, "not_member");
  assert.equal(notMember.status, 403);
});

test("media upload, send and download", async () => {
  const { a, b, convId } = await pair("mia", "max");
  const bytes = new TextEncoder().encode("a small text file\n");
  const media = await a.http.upload(bytes, "notes.txt", "text/plain");
  assert.equal(media.mime, "text/plain");
  assert.equal(media.size, bytes.length);
  assert.equal(media.kind, "file");
  const sent = await a.http.send(convId, {
    client_msg_id: newId(),
    kind: "file",
    media_id: media.media_id,
    text: "see attached",
  });
  assert.equal(sent.message.media?.media_id, media.media_id);
  const downloaded = new Uint8Array(await b.http.download(sent.message.media?.url ?? ""));
  assert.deepEqual(downloaded, bytes);
  const blob = await a.http.upload(new Blob([bytes]), "again.txt");
  assert.equal(blob.size, bytes.length);
});

test("presence over HTTP, calls history and mute", async () => {
  const { a, b, convId } = await pair("pia", "pat");
  const presence = await a.http.presence(b.userId);
  assert.equal(presence.user_id, b.userId);
  assert.equal(presence.online, false);
  const calls = await a.http.calls({ limit: 10 });
  assert.deepEqual(calls, { calls: [], missed_unseen: 0 });
  assert.equal(await a.http.markCallsSeen(), 0);
  assert.deepEqual(await a.http.mute(convId, true), { conv_id: convId, muted: true });
});
