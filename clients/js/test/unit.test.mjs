// @ts-check
/** The pure parts, without a broker: outbox, seq tracking, topics, ids, event rules. */

import assert from "node:assert/strict";
import { describe, test } from "node:test";

import {
  ChatClient,
  Outbox,
  OutboxClosedError,
  PublishRefusedError,
  SeqTracker,
  SupportVersions,
  TimeoutError,
  TypedEmitter,
  encodeSend,
  isValidId,
  newId,
  topics,
} from "../dist/index.js";

/** A publish function that records payloads; each call gets a controllable PUBACK. */
function fakeWire() {
  /** @type {{convId: string, payload: string, puback: {resolve: () => void, reject: (e: Error) => void}}[]} */
  const published = [];
  let connected = true;
  /** @type {import("../dist/index.js").PublishFn} */
  const publish = (convId, payload) => {
    if (!connected) throw new Error("not connected");
    /** @type {any} */
    const puback = {};
    const promise = new Promise((resolve, reject) => {
      puback.resolve = resolve;
      puback.reject = reject;
    });
    published.push({ convId, payload, puback });
    return /** @type {Promise<void>} */ (promise);
  };
  return {
    published,
    publish,
    /** @param {boolean} value */
    setConnected(value) {
      connected = value;
    },
  };
}

/**
 * @param {string} convId
 * @param {string} clientMsgId
 * @param {number} seq
 * @returns {import("../dist/index.js").Ack}
 */
function stored(convId, clientMsgId, seq) {
  return { client_msg_id: clientMsgId, conv_id: convId, status: "stored", id: `m${seq}`, seq };
}

/** @param {string} id @param {string} [text] */
function textBody(id, text = "hi") {
  return /** @type {const} */ ({ client_msg_id: id, kind: "text", text });
}

describe("outbox", () => {
  test("keeps one send in flight per conversation, in send order", async () => {
    const wire = fakeWire();
    const outbox = new Outbox(wire.publish);
    const first = outbox.send("c1", textBody("a"));
    const second = outbox.send("c1", textBody("b"));
    const other = outbox.send("c2", textBody("x"));
    assert.deepEqual(
      wire.published.map((p) => [p.convId, JSON.parse(p.payload).client_msg_id]),
      [
        ["c1", "a"],
        ["c2", "x"],
      ],
    );
    assert.equal(outbox.waiting("c1").length, 1);
    assert.equal(outbox.onAck(stored("c1", "a", 1)), true);
    assert.equal((await first).seq, 1);
    assert.equal(JSON.parse(wire.published[2]?.payload ?? "{}").client_msg_id, "b");
    outbox.onAck(stored("c1", "b", 2));
    outbox.onAck(stored("c2", "x", 1));
    assert.equal((await second).seq, 2);
    assert.equal((await other).seq, 1);
    assert.equal(outbox.size, 0);
  });

  test("re-sends with the same client_msg_id after the ack timeout, byte for byte", () => {
    const wire = fakeWire();
    let now = 1_000;
    const outbox = new Outbox(wire.publish, { now: () => now });
    void outbox.send("c1", textBody("a", "hello"));
    now += 4_999;
    assert.equal(outbox.resendOverdue(5_000), 0);
    now += 1;
    assert.equal(outbox.resendOverdue(5_000), 1);
    assert.equal(wire.published.length, 2);
    assert.equal(wire.published[0]?.payload, wire.published[1]?.payload);
    assert.equal(outbox.inFlight()[0]?.publishCount, 2);
  });

  test("holds sends while disconnected and publishes them on resendAll", async () => {
    const wire = fakeWire();
    const outbox = new Outbox(wire.publish);
    wire.setConnected(false);
    const pending = outbox.send("c1", textBody("a"));
    assert.equal(wire.published.length, 0);
    assert.equal(outbox.inFlight()[0]?.publishFailed, true);
    wire.setConnected(true);
    assert.equal(outbox.resendAll({ onlyFailed: true }), 1);
    assert.equal(outbox.resendAll({ onlyFailed: true }), 0, "nothing goes out twice");
    outbox.onAck({ ...stored("c1", "a", 7), status: "duplicate" });
    assert.equal((await pending).status, "duplicate");
  });

  test("the same pending send is queued once; foreign and null acks are ignored", () => {
    const wire = fakeWire();
    const outbox = new Outbox(wire.publish);
    const one = outbox.send("c1", textBody("a"));
    assert.equal(outbox.send("c1", textBody("a", "other body")), one);
    assert.equal(outbox.onAck(stored("c1", "zzz", 1)), false);
    assert.equal(outbox.onAck({ client_msg_id: null, conv_id: "c1", status: "rejected" }), false);
    assert.equal(wire.published.length, 1);
  });

  test("a refused publish fails its send and lets the next one go", async () => {
    const wire = fakeWire();
    const outbox = new Outbox(wire.publish);
    const refused = outbox.send("c1", textBody("a"));
    const next = outbox.send("c1", textBody("b"));
    wire.published[0]?.puback.reject(new PublishRefusedError("not authorized", 0x87));
    await assert.rejects(refused, PublishRefusedError);
    assert.equal(wire.published.length, 2);
    wire.published[1]?.puback.reject(new Error("connection closed")); // not final
    assert.equal(outbox.size, 1);
    outbox.onAck(stored("c1", "b", 1));
    assert.equal((await next).seq, 1);
  });

  test("close fails what is unacked", async () => {
    const outbox = new Outbox(fakeWire().publish);
    const pending = outbox.send("c1", textBody("a"));
    outbox.close("bye");
    await assert.rejects(pending, OutboxClosedError);
    await assert.rejects(outbox.send("c1", textBody("b")), OutboxClosedError);
  });

  test("payloads leave out empty optional fields", () => {
    assert.equal(
      encodeSend({ client_msg_id: "a", kind: "text", text: "t", reply_to: undefined }),
      '{"client_msg_id":"a","kind":"text","text":"t"}',
    );
  });
});

describe("seq tracker", () => {
  test("a baseline, holes, late deliveries and seeding", () => {
    const seqs = new SeqTracker();
    seqs.add("c", 5);
    assert.equal(seqs.floor("c"), 5);
    assert.equal(seqs.seen("c", 4), false, "below the first live seq is unknown, not seen");
    seqs.add("c", 4);
    assert.equal(seqs.seen("c", 4), true);
    seqs.add("c", 7);
    assert.equal(seqs.floor("c"), 5);
    assert.equal(seqs.last("c"), 7);
    seqs.add("c", 6);
    assert.equal(seqs.floor("c"), 7);
    seqs.seed("d", 10);
    assert.equal(seqs.seen("d", 3), true);
    assert.deepEqual(seqs.floors(), { c: 7, d: 10 });
  });
});

describe("topics", () => {
  test("builds the contract's topics and parses what arrives", () => {
    assert.equal(topics.convUp("c1", "msg", "u1"), "conv/c1/msg/u1");
    assert.equal(topics.callUp("k1", "accept", "u1"), "call/k1/accept/u1");
    assert.equal(topics.presence("u1", "d1"), "presence/u1/d1");
    assert.equal(topics.userRoot("u1"), "user/u1/#");
    assert.deepEqual(topics.parseDown("u1", "user/u1/conv/c9/read"), {
      kind: "conv",
      convId: "c9",
      what: "read",
    });
    assert.deepEqual(topics.parseDown("u1", "user/u1/call/current"), { kind: "callState" });
    assert.deepEqual(topics.parseDown("u1", "user/u1/support/desk"), { kind: "desk" });
    assert.deepEqual(topics.parseDown("u1", "ops/floor"), { kind: "floor" });
    assert.deepEqual(topics.parseDown("u1", "user/u2/ack"), { kind: "other" });
    assert.deepEqual(topics.parseDown("u1", "user/u1/conv/c9/nope"), { kind: "other" });
  });
});

describe("ids", () => {
  test("are valid contract ids and differ", () => {
    const ids = new Set(Array.from({ length: 1000 }, () => newId()));
    assert.equal(ids.size, 1000);
    for (const id of ids) assert.ok(isValidId(id) && id.length === 16, id);
    assert.equal(isValidId("a/b"), false);
  });
});

describe("support versions", () => {
  test("drop an older version, keep equal and newer ones", () => {
    const versions = new SupportVersions();
    assert.equal(versions.accept("t", 2), true);
    assert.equal(versions.accept("t", 1), false);
    assert.equal(versions.accept("t", 2), true);
    assert.equal(versions.accept("t", 3, "queued 3 position 2"), true);
    assert.equal(versions.accept("t", 3, "queued 3 position 2"), false, "a repeat");
    assert.equal(versions.accept("t", 3, "queued 3 position 1"), true);
    assert.equal(versions.get("t"), 3);
  });
});

describe("emitter", () => {
  test("waitFor resolves on a match and times out otherwise", async () => {
    /** @extends {TypedEmitter<{ n: number }>} */
    class Numbers extends TypedEmitter {
      /** @param {number} n */
      fire(n) {
        this.emit("n", n);
      }
    }
    const numbers = new Numbers();
    const even = numbers.waitFor("n", (n) => n % 2 === 0, 1_000);
    numbers.fire(1);
    numbers.fire(4);
    assert.equal(await even, 4);
    await assert.rejects(
      numbers.waitFor("n", () => true, 20),
      TimeoutError,
    );
    assert.equal(numbers.listenerCount("n"), 0);
  });
});

describe("event rules of the client (fed directly, no broker)", () => {
  const device = {
    device_id: "d1",
    mqtt: {
      ws_url: "ws://127.0.0.1:1/mqtt",
      tcp_host: "",
      tcp_port: 0,
      username: "d1",
      password: "",
      client_id: "d1",
    },
  };
  /** @param {ChatClient} client @param {string} topic @param {unknown} payload */
  const feed = (client, topic, payload) =>
    /** @type {any} */ (client).route(topic, new TextEncoder().encode(JSON.stringify(payload)));

  test("late live events of a call that ended here are dropped", () => {
    const client = new ChatClient({ device, userId: "u1" });
    /** @type {string[]} */
    const seen = [];
    client.on("call", (e) => seen.push(`${e.call_id}:${e.event}`));
    const base = { from: "u2", to: "u1", media: "audio" };
    feed(client, "user/u1/call", { ...base, event: "incoming", call_id: "k1" });
    feed(client, "user/u1/call", { ...base, event: "cancelled", call_id: "k1" });
    feed(client, "user/u1/call", { ...base, event: "incoming", call_id: "k1" });
    feed(client, "user/u1/call", { ...base, event: "accepted", call_id: "k1" });
    assert.deepEqual(seen, ["k1:incoming", "k1:cancelled"]);
  });

  test("support events older than the ticket's version are dropped", () => {
    const client = new ChatClient({ device, userId: "u1" });
    /** @type {string[]} */
    const seen = [];
    client.on("support", (e) => seen.push(`${e.event}@${e.version}`));
    const base = { ticket_id: "t1", conv_id: "c1" };
    feed(client, "user/u1/support", {
      ...base,
      event: "assigned",
      version: 2,
      agent: { id: "o", name: "O" },
    });
    feed(client, "user/u1/support", { ...base, event: "queued", version: 1, position: 3 });
    feed(client, "user/u1/support", { ...base, event: "closed", version: 3 });
    assert.deepEqual(seen, ["assigned@2", "closed@3"]);
    assert.equal(client.ticketVersion("t1"), 3);
  });

  test("an older retained snapshot never replaces a newer one", () => {
    const client = new ChatClient({ device, userId: "u1" });
    /** @type {string[]} */
    const seen = [];
    client.on("queue", (q) => seen.push(q.updated_at));
    feed(client, "ops/queue", { tickets: [], updated_at: "2026-01-01T00:00:02.000Z" });
    feed(client, "ops/queue", { tickets: [], updated_at: "2026-01-01T00:00:01.000Z" });
    feed(client, "ops/queue", { tickets: [], updated_at: "2026-01-01T00:00:03.000Z" });
    assert.deepEqual(seen, ["2026-01-01T00:00:02.000Z", "2026-01-01T00:00:03.000Z"]);
  });

  test("an unreadable payload is an error event, not a crash; a throwing listener too", () => {
    const client = new ChatClient({ device, userId: "u1" });
    /** @type {string[]} */
    const errors = [];
    client.on("error", (e) => errors.push(e.message));
    /** @type {any} */ (client).route("user/u1/ack", new TextEncoder().encode("{not json"));
    client.on("typing", () => {
      throw new Error("boom");
    });
    feed(client, "user/u1/conv/c1/typing", { user_id: "u2", typing: true });
    assert.equal(errors.length, 2);
    assert.match(errors[1] ?? "", /boom/);
  });
});
