// @ts-check
/**
 * Live support (docs/support.md) from the JS client, against the real API and
 * support router. The operator part needs a supervisor account, which
 * tests/integration/test_js_client.py creates and passes in
 * CHAT_SUPERVISOR_USERNAME and CHAT_SUPERVISOR_PASSWORD.
 */

import assert from "node:assert/strict";
import { test } from "node:test";

import { ApiError, ChatClient, ChatHttp } from "../dist/index.js";
import { API_URL, newUser, online, until } from "./helpers.mjs";

test("a user opens a ticket, is told it is queued, closes and rates it", async (t) => {
  const user = await newUser("cust");
  const client = await online(t, user);
  /** @type {import("../dist/index.js").SupportEvent[]} */
  const events = [];
  client.on("support", (e) => events.push(e));
  const firstMessage = client.waitFor("message", (m) => m.text === "My parcel is late");
  const opened = await user.http.openTicket("Where is my order?", "high", "My parcel is late");
  assert.equal(opened.status, "queued");
  assert.ok((opened.position ?? 0) >= 1);
  assert.equal(
    (await firstMessage).conv_id,
    opened.conv_id,
    "the text opens the ticket's conversation",
  );
  await until(() => events.some((e) => e.ticket_id === opened.ticket_id), "the queued event");
  const queued = events.find((e) => e.ticket_id === opened.ticket_id);
  assert.equal(queued?.event, "queued");
  assert.equal(queued?.conv_id, opened.conv_id);
  assert.equal(queued?.priority, "high");
  assert.ok((queued?.position ?? 0) >= 1);
  const queuedVersion = queued?.version ?? 0;
  assert.ok(queuedVersion >= 1);

  const mine = await user.http.listTickets();
  assert.deepEqual(
    mine.map((ticket) => ticket.ticket_id),
    [opened.ticket_id],
  );
  const closed = client.waitFor(
    "support",
    (e) => e.ticket_id === opened.ticket_id && e.event === "closed",
  );
  const view = await user.http.closeTicket(opened.ticket_id);
  assert.equal(view.status, "closed");
  const closedEvent = await closed;
  assert.equal(closedEvent.reason, "closed_by_user");
  assert.ok(closedEvent.version > queuedVersion);
  assert.equal(client.ticketVersion(opened.ticket_id), closedEvent.version);

  assert.equal((await user.http.rateTicket(opened.ticket_id, 5, "fine")).rating, 5);
  const again = await user.http.rateTicket(opened.ticket_id, 1).catch((e) => e);
  assert.ok(again instanceof ApiError && again.code === "already_rated", String(again));
  const notOperator = await user.http.myOperator().catch((e) => e);
  assert.ok(notOperator instanceof ApiError && notOperator.status === 403, String(notOperator));
  const queueView = new ChatClient({
    device: await user.http.createDevice("web"),
    userId: user.userId,
    operatorViews: { queue: true },
  });
  await assert.rejects(queueView.connect(), /refused/, "only operators may read ops/queue");
});

const SUPERVISOR = process.env.CHAT_SUPERVISOR_USERNAME;
const SUPERVISOR_PASSWORD = process.env.CHAT_SUPERVISOR_PASSWORD;

test(
  "an operator sees the queue and the floor, takes a ticket, chats, closes it",
  { skip: SUPERVISOR ? false : "no supervisor account given (CHAT_SUPERVISOR_USERNAME)" },
  async (t) => {
    const http = new ChatHttp(API_URL);
    const session = await http.login(SUPERVISOR ?? "", SUPERVISOR_PASSWORD ?? "");
    const device = await http.createDevice("web");
    const desk = new ChatClient({
      device,
      userId: session.user_id,
      http,
      operatorViews: { queue: true, floor: true },
    });
    const floor = desk.waitFor("floor");
    const queueSnapshot = desk.waitFor("queue");
    await desk.connect();
    t.after(async () => {
      await http.setOperatorStatus("offline").catch(() => undefined);
      await desk.close();
    });
    assert.ok(Array.isArray((await floor).operators));
    assert.ok(Array.isArray((await queueSnapshot).tickets));
    // `away`: the router gives this operator nothing, so the test decides who takes what.
    const me = await http.setOperatorStatus("away");
    assert.equal(me.status, "away");
    assert.equal(me.supervisor, true);

    const user = await newUser("buyer");
    const customer = await online(t, user);
    const opened = await user.http.openTicket("Refund", "normal", "I want a refund");
    const waiting = await desk.waitFor("queue", (q) =>
      q.tickets.some((x) => x.ticket_id === opened.ticket_id),
    );
    const listed = waiting.tickets.find((x) => x.ticket_id === opened.ticket_id);
    assert.equal(listed?.user.id, user.userId);
    assert.equal(listed?.subject, "Refund");
    assert.equal(listed?.status, "queued");

    const assigned = customer.waitFor(
      "support",
      (e) => e.ticket_id === opened.ticket_id && e.event === "assigned",
    );
    const deskAssigned = desk.waitFor(
      "desk",
      (e) => e.ticket.ticket_id === opened.ticket_id && e.event === "assigned",
    );
    const taken = await http.takeTicket(opened.ticket_id);
    assert.equal(taken.status, "assigned");
    assert.equal(taken.agent?.id, session.user_id);
    const told = await assigned;
    assert.equal(told.agent?.id, session.user_id);
    assert.equal(told.reason, "taken");
    assert.equal((await deskAssigned).ticket.agent?.id, session.user_id);

    const toCustomer = customer.waitFor("message", (m) => m.sender_id === session.user_id);
    await desk.sendText(opened.conv_id, "Hello, I can help with that.");
    assert.equal((await toCustomer).conv_id, opened.conv_id);
    const toAgent = desk.waitFor(
      "message",
      (m) => m.sender_id === user.userId && m.text === "Thanks!",
    );
    await customer.sendText(opened.conv_id, "Thanks!");
    await toAgent;

    const reply = await http.createCannedReply("Greeting", "Hello, how can I help?");
    assert.ok((await http.cannedReplies()).some((r) => r.id === reply.id));
    await http.deleteCannedReply(reply.id);
    assert.ok(!(await http.cannedReplies()).some((r) => r.id === reply.id));
    assert.ok((await http.overview()).operators.some((o) => o.id === session.user_id));
    assert.ok((await http.listOperators()).some((o) => o.id === session.user_id));
    assert.ok((await http.listTickets("mine")).some((x) => x.ticket_id === opened.ticket_id));

    const closed = customer.waitFor(
      "support",
      (e) => e.ticket_id === opened.ticket_id && e.event === "closed",
    );
    const deskClosed = desk.waitFor(
      "desk",
      (e) => e.ticket.ticket_id === opened.ticket_id && e.event === "closed",
    );
    await http.closeTicket(opened.ticket_id);
    assert.equal((await closed).reason, "closed_by_agent");
    assert.equal((await deskClosed).ticket.status, "closed");
    assert.equal((await user.http.rateTicket(opened.ticket_id, 4)).rating, 4);
  },
);
