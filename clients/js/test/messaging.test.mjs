// @ts-check
/** Messaging over MQTT over WebSocket, between JS clients, against the real system. */

import assert from "node:assert/strict";
import { test } from "node:test";

import { newId } from "../dist/index.js";
import { newUser, online, pair, record, sleep, until } from "./helpers.mjs";

test("two JS clients exchange messages; the sender's own devices get them too", async (t) => {
  const { a, b, convId } = await pair("alice", "bob");
  const alice = await online(t, a);
  const bob = await online(t, b);
  assert.equal(alice.connected, true);
  const toBob = bob.waitFor("message", (m) => m.conv_id === convId && m.text === "hi Bob");
  const echo = alice.waitFor("message", (m) => m.conv_id === convId && m.text === "hi Bob");
  const ack = await alice.sendText(convId, "hi Bob");
  assert.equal(ack.status, "stored");
  assert.equal(ack.seq, 1);
  const received = await toBob;
  assert.equal(received.id, ack.id);
  assert.equal(received.sender_id, a.userId);
  assert.equal((await echo).seq, 1);

  const toAlice = alice.waitFor("message", (m) => m.text === "hi Alice");
  await bob.sendText(convId, "hi Alice", { replyTo: received.id });
  const reply = await toAlice;
  assert.equal(reply.seq, 2);
  assert.equal(reply.reply_to, received.id);

  // What MQTT delivered is what the server stored.
  const history = await b.http.history(convId);
  assert.deepEqual(
    history.map((m) => [m.seq, m.sender_id, m.text]),
    [
      [1, a.userId, "hi Bob"],
      [2, b.userId, "hi Alice"],
    ],
  );
});

test("sends of one device keep their order; each message arrives once", async (t) => {
  const { a, b, convId } = await pair("ord", "rec");
  const sender = await online(t, a);
  const receiver = await online(t, b);
  const got = record(receiver, "message");
  const acks = await Promise.all(
    Array.from({ length: 20 }, (_, i) => sender.sendText(convId, `m${i}`)),
  );
  assert.deepEqual(
    acks.map((ack) => ack.seq),
    Array.from({ length: 20 }, (_, i) => i + 1),
  );
  await until(() => got.length >= 20, "20 messages");
  await sleep(200);
  assert.deepEqual(
    got.map((m) => [m.seq, m.text]),
    Array.from({ length: 20 }, (_, i) => [i + 1, `m${i}`]),
  );
});

test("a re-send with the same client_msg_id is acked duplicate and not delivered again", async (t) => {
  const { a, b, convId } = await pair("dup", "dupr");
  const sender = await online(t, a);
  const receiver = await online(t, b);
  const got = record(receiver, "message");
  const clientMsgId = newId();
  const first = await sender.sendText(convId, "once", { clientMsgId });
  assert.equal(first.status, "stored");
  const again = await sender.sendText(convId, "twice?", { clientMsgId });
  assert.equal(again.status, "duplicate");
  assert.equal(again.id, first.id);
  assert.equal(again.seq, first.seq);
  await until(() => got.length >= 1, "the message");
  await sleep(300);
  assert.deepEqual(
    got.map((m) => m.text),
    ["once"],
  );
});

test("a rejected send is an ack, not an error", async (t) => {
  const { convId } = await pair("own", "ownr");
  const eve = await online(t, await newUser("eve"));
  const ack = await eve.sendText(convId, "let me in");
  assert.equal(ack.status, "rejected");
  assert.equal(ack.error?.code, "not_member");
  const tooLong = await eve.sendText(convId, "x".repeat(4001));
  assert.equal(tooLong.status, "rejected");
});

test("typing reaches the other members only; read receipts reach everyone", async (t) => {
  const { a, b, convId } = await pair("typ", "rdr");
  const alice = await online(t, a);
  const bob = await online(t, b);
  const aliceTyping = record(alice, "typing");
  const typing = bob.waitFor("typing", (e) => e.conv_id === convId && e.user_id === a.userId);
  await alice.setTyping(convId, true);
  const seen = await typing;
  assert.equal(seen.typing, true);

  const bobGets = bob.waitFor("message", (m) => m.text === "read me");
  const ack = await alice.sendText(convId, "read me");
  await bobGets;
  const readByBob = alice.waitFor("read", (r) => r.conv_id === convId && r.user_id === b.userId);
  const ownRead = bob.waitFor("read", (r) => r.conv_id === convId && r.user_id === b.userId);
  await bob.markRead(convId, ack.seq ?? 0);
  assert.equal((await readByBob).seq, ack.seq);
  assert.equal((await ownRead).seq, ack.seq, "the reader's own devices are told too");
  const summary = (await b.http.listConversations()).find((c) => c.conv_id === convId);
  assert.equal(summary?.read_seq, ack.seq);
  assert.deepEqual(aliceTyping, [], "typing is not echoed to the typist");
});

test("a gap is filled from history before the live message", async (t) => {
  const { a, b, convId } = await pair("gap", "gapr");
  for (const text of ["one", "two", "three"]) {
    await a.http.send(convId, { client_msg_id: newId(), kind: "text", text });
  }
  const bob = await online(t, b);
  bob.seed(convId, 1); // the app showed seq 1 from history; 2 and 3 it never saw
  const got = record(bob, "message");
  const alice = await online(t, a);
  await alice.sendText(convId, "four");
  await until(() => got.length >= 3, "gap and live message");
  assert.deepEqual(
    got.map((m) => [m.seq, m.text]),
    [
      [2, "two"],
      [3, "three"],
      [4, "four"],
    ],
  );
  assert.equal(bob.lastSeq(convId), 4);
});

test("media sent over MQTT arrives with its media object", async (t) => {
  const { a, b, convId } = await pair("med", "medr");
  const alice = await online(t, a);
  const bob = await online(t, b);
  const media = await a.http.upload(
    new TextEncoder().encode("hello file"),
    "hello.txt",
    "text/plain",
  );
  const arrives = bob.waitFor("message", (m) => m.media?.media_id === media.media_id);
  const ack = await alice.sendMedia(convId, "file", media.media_id, "caption");
  assert.equal(ack.status, "stored");
  const message = await arrives;
  assert.equal(message.kind, "file");
  assert.equal(message.text, "caption");
  assert.equal(message.media?.name, "hello.txt");
});
