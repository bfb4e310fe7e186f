// The desk's state: what the operator sees, kept current by the broker (the
// retained `ops/queue` and `ops/floor`, desk events, messages, typing, reads)
// after one load over HTTP. Views listen for changes and redraw their part.

import { describe, toast } from "./ui.js";

const HISTORY_PAGE = 50;
const TYPING_SHOWN_MS = 6000;
const TYPING_REPEAT_MS = 3000;
const TYPING_IDLE_MS = 3500;

const REASON_TEXT = {
  agent_offline: "you were disconnected too long",
  agent_signed_off: "you signed off",
  no_first_response: "no first reply within its deadline",
  transferred: "it was transferred",
};

export class Desk {
  constructor({ lib, http, client, me }) {
    this.lib = lib;
    this.http = http;
    this.client = client;
    this.me = me;
    this.connection = "connecting";
    this.queue = null; // TicketView[] in queue order, once known
    this.queueUpdatedAt = "";
    this.floor = null; // FloorSnapshot (supervisors)
    this.tickets = new Map(); // ticket_id -> TicketView (mine, open and closed)
    this.byConv = new Map(); // conv_id -> ticket_id
    this.unread = new Map(); // ticket_id -> count
    this.lastMessage = new Map(); // conv_id -> StoredMessage
    this.messages = new Map(); // conv_id -> Map(seq -> StoredMessage), for opened chats
    this.olderAvailable = new Map(); // conv_id -> bool
    this.pending = new Map(); // client_msg_id -> {conv_id, kind, text, name, state, error}
    this.typing = new Map(); // conv_id -> timer (the customer is typing)
    this.peerRead = new Map(); // conv_id -> seq read by the customer
    this.presence = new Map(); // user_id -> {online, last_seen} (customers)
    this.ticketEvents = new Map(); // ticket_id -> events (operators' timeline)
    this.canned = [];
    this.activeId = null;
    this.names = new Map([[me.id, me.name]]);
    this.listeners = new Map();
    this.myTyping = null; // {convId, lastSent, idleTimer}
    this.media = new Map(); // media_id -> Promise<string> (a blob URL)
    document.addEventListener("visibilitychange", () => this.markActiveRead());
  }

  // --- change notification ---------------------------------------------------------------

  on(name, listener) {
    if (!this.listeners.has(name)) this.listeners.set(name, new Set());
    this.listeners.get(name).add(listener);
  }

  emit(name, value) {
    for (const listener of this.listeners.get(name) ?? []) {
      try {
        listener(value);
      } catch (error) {
        console.error(`"${name}" view failed`, error);
      }
    }
  }

  // --- start and stop ----------------------------------------------------------------------

  async start() {
    this.attach(this.client);
    await this.connect();
    const loads = await Promise.allSettled([
      this.reloadMine(),
      this.loadCanned(),
      this.queue === null ? this.loadQueue() : null,
      this.me.supervisor && this.floor === null ? this.loadOverview() : null,
    ]);
    const failed = loads.find((load) => load.status === "rejected");
    if (failed) toast(`Part of the desk did not load: ${describe(failed.reason)}`, "error", 10_000);
  }

  attach(c) {
    c.on("queue", (snapshot) => this.setQueue(snapshot.tickets, snapshot.updated_at));
    c.on("floor", (snapshot) => this.setFloor(snapshot));
    c.on("desk", (event) => this.onDesk(event));
    c.on("message", (message) => this.onMessage(message));
    c.on("typing", (typing) => this.onTyping(typing));
    c.on("read", (read) => this.onRead(read));
    c.on("presence", (presence) => this.setPresence(presence));
    c.on("connected", () => this.setConnection("live"));
    c.on("disconnected", ({ closed }) => this.setConnection(closed ? "offline" : "reconnecting"));
    c.on("recovered", () => this.reloadMine().catch(() => undefined));
    c.on("error", (error) => console.warn("client:", error.message));
  }

  /** Connect, trying again (with growing pauses) while the broker cannot be reached. */
  async connect() {
    for (let attempt = 0; ; attempt += 1) {
      this.setConnection("connecting");
      try {
        await this.client.connect();
        this.setConnection("live");
        return;
      } catch (error) {
        if (error?.name === "NotAuthorizedError") throw error;
        this.setConnection("offline");
        if (attempt === 0) toast(`Cannot reach the broker (${describe(error)}); trying again…`, "warning");
        await new Promise((resolve) => setTimeout(resolve, Math.min(30_000, 2000 * 2 ** attempt)));
      }
    }
  }

  async stop() {
    this.stopTyping();
    await this.client.close().catch(() => undefined);
    for (const url of this.media.values()) url.then((u) => URL.revokeObjectURL(u)).catch(() => undefined);
  }

  setConnection(state) {
    this.connection = state;
    this.emit("connection", state);
  }

  // --- the queue and the floor --------------------------------------------------------------

  setQueue(tickets, updatedAt) {
    this.queue = tickets;
    this.queueUpdatedAt = updatedAt;
    for (const ticket of tickets) this.names.set(ticket.user.id, ticket.user.name);
    this.emit("queue", tickets);
  }

  /** Before any retained snapshot arrived (a fresh system): one HTTP answer. */
  async loadQueue() {
    const tickets = await this.http.listTickets("queue");
    if (this.queue === null) this.setQueue(tickets, "");
  }

  setFloor(snapshot) {
    this.floor = snapshot;
    for (const operator of snapshot.operators) {
      this.names.set(operator.id, operator.name);
      if (operator.id === this.me.id) this.setMe(operator);
    }
    this.emit("floor", snapshot);
  }

  async loadOverview() {
    const overview = await this.http.overview();
    if (this.floor === null) {
      this.setFloor({ operators: overview.operators, stats: overview.stats, updated_at: "" });
    }
    if (this.queue === null) this.setQueue(overview.queue, "");
  }

  setMe(view) {
    const changed = JSON.stringify(view) !== JSON.stringify(this.me);
    this.me = view;
    if (changed) this.emit("me", view);
  }

  async setStatus(status) {
    const view = await this.http.setOperatorStatus(status);
    this.setMe(view);
    return view;
  }

  // --- my chats -------------------------------------------------------------------------

  get openTickets() {
    return [...this.tickets.values()]
      .filter((t) => this.isMineOpen(t))
      .sort((a, b) => this.activityOf(b).localeCompare(this.activityOf(a)));
  }

  get closedTickets() {
    return [...this.tickets.values()]
      .filter((t) => !this.isMineOpen(t))
      .sort((a, b) => (b.closed_at ?? b.created_at).localeCompare(a.closed_at ?? a.created_at));
  }

  isMineOpen(ticket) {
    return ticket.status === "assigned" && ticket.agent?.id === this.me.id;
  }

  activityOf(ticket) {
    return this.lastMessage.get(ticket.conv_id)?.created_at ?? ticket.assigned_at ?? ticket.created_at;
  }

  get totalUnread() {
    let total = 0;
    for (const ticket of this.openTickets) total += this.unread.get(ticket.ticket_id) ?? 0;
    return total;
  }

  async reloadMine() {
    const [tickets, conversations] = await Promise.all([
      this.http.listTickets("mine"),
      this.http.listConversations(),
    ]);
    for (const ticket of tickets) this.upsert(ticket, { quiet: true });
    for (const summary of conversations) {
      const ticketId = this.byConv.get(summary.conv_id);
      if (summary.last_message) this.noteLast(summary.last_message);
      if (ticketId && !(this.activeId === ticketId && this.visible)) {
        this.unread.set(ticketId, summary.unread_count);
      }
    }
    this.emit("tickets");
    this.markActiveRead();
  }

  upsert(ticket, { quiet = false } = {}) {
    const known = this.tickets.get(ticket.ticket_id);
    if (known && known.version > ticket.version) return known;
    if (!known && this.isMineOpen(ticket)) {
      // New on this desk: what it holds so far (the list shows its last message and unread count).
      if (typeof ticket.unread_count === "number") this.unread.set(ticket.ticket_id, ticket.unread_count);
      if (!quiet) this.fetchLast(ticket.conv_id).catch(() => undefined);
    }
    this.tickets.set(ticket.ticket_id, ticket);
    this.byConv.set(ticket.conv_id, ticket.ticket_id);
    this.names.set(ticket.user.id, ticket.user.name);
    if (ticket.agent) this.names.set(ticket.agent.id, ticket.agent.name);
    if (!quiet) this.emit("tickets");
    if (ticket.ticket_id === this.activeId) this.emit("active", this.activeId);
    return ticket;
  }

  async fetchLast(convId) {
    const [last] = await this.http.history(convId, { limit: 1 });
    if (last) {
      this.noteLast(last);
      this.emit("tickets");
    }
  }

  onDesk(event) {
    const ticket = this.upsert(event.ticket);
    const subject = `“${ticket.subject}”`;
    if (event.event === "assigned" && event.reason !== "taken") {
      toast(`New chat: ${subject} from ${ticket.user.name}`, "info");
    } else if (event.event === "unassigned") {
      const why = REASON_TEXT[event.reason] ?? "it was moved";
      toast(`${subject} left your desk: ${why}.`, "warning", 8000);
    } else if (event.event === "closed" && event.reason === "closed_by_user") {
      toast(`${ticket.user.name} closed ${subject}.`, "info");
    } else if (event.event === "escalated") {
      toast(`${subject} was escalated.`, "warning", 8000);
    }
    if (ticket.ticket_id === this.activeId) this.loadEvents(ticket.ticket_id).catch(() => undefined);
  }

  async take(ticketId) {
    const ticket = this.upsert(await this.http.takeTicket(ticketId));
    if (this.queue) this.setQueue(this.queue.filter((t) => t.ticket_id !== ticketId), this.queueUpdatedAt);
    await this.open(ticket.ticket_id);
    return ticket;
  }

  async transfer(ticketId, operatorId) {
    const ticket = this.upsert(await this.http.transferTicket(ticketId, operatorId));
    return ticket;
  }

  async close(ticketId) {
    return this.upsert(await this.http.closeTicket(ticketId));
  }

  // --- the open chat ----------------------------------------------------------------------

  get active() {
    return this.activeId ? this.tickets.get(this.activeId) ?? null : null;
  }

  get visible() {
    return document.visibilityState === "visible";
  }

  async open(ticketId) {
    if (this.activeId !== ticketId) this.stopTyping();
    this.activeId = ticketId;
    this.emit("active", ticketId);
    const ticket = this.active;
    if (!ticket) return;
    const loads = [this.loadEvents(ticketId)];
    if (!this.presence.has(ticket.user.id)) {
      this.http.presence(ticket.user.id).then((p) => this.setPresence(p), () => undefined);
    }
    if (!this.messages.has(ticket.conv_id)) loads.push(this.loadHistory(ticket.conv_id));
    const results = await Promise.allSettled(loads);
    for (const result of results) {
      if (result.status === "rejected") toast(describe(result.reason), "error");
    }
    this.markActiveRead();
  }

  async loadHistory(convId) {
    const page = await this.http.history(convId, { limit: HISTORY_PAGE });
    const held = this.messages.get(convId) ?? new Map();
    for (const message of page) held.set(message.seq, message);
    this.messages.set(convId, held);
    this.olderAvailable.set(convId, page.length === HISTORY_PAGE && (page[0]?.seq ?? 1) > 1);
    const last = page[page.length - 1];
    if (last) {
      this.noteLast(last);
      // Later live messages are checked for gaps against what is shown.
      if ((this.client.lastSeq(convId) ?? 0) < last.seq) this.client.seed(convId, last.seq);
    }
    this.emit("history", convId);
  }

  async loadOlder(convId) {
    const held = this.messages.get(convId);
    if (!held || held.size === 0) return;
    const first = Math.min(...held.keys());
    const page = await this.http.history(convId, { beforeSeq: first, limit: HISTORY_PAGE });
    for (const message of page) held.set(message.seq, message);
    this.olderAvailable.set(convId, page.length === HISTORY_PAGE && (page[0]?.seq ?? 1) > 1);
    this.emit("history", convId);
  }

  async loadEvents(ticketId) {
    const found = await this.http.getTicket(ticketId);
    this.ticketEvents.set(ticketId, found.events ?? []);
    if (found.version >= (this.tickets.get(ticketId)?.version ?? 0)) {
      delete found.events;
      this.upsert(found, { quiet: true });
    }
    if (ticketId === this.activeId) this.emit("details", ticketId);
  }

  /** Messages of `convId` to show, in order, then the sends not yet stored. */
  shownMessages(convId) {
    const held = this.messages.get(convId);
    const stored = held ? [...held.values()].sort((a, b) => a.seq - b.seq) : [];
    const pending = [...this.pending.entries()]
      .filter(([, send]) => send.conv_id === convId)
      .map(([clientMsgId, send]) => ({ ...send, client_msg_id: clientMsgId, pending: true }));
    return { stored, pending };
  }

  noteLast(message) {
    const known = this.lastMessage.get(message.conv_id);
    if (!known || known.seq < message.seq) this.lastMessage.set(message.conv_id, message);
  }

  onMessage(message) {
    const convId = message.conv_id;
    this.noteLast(message);
    const held = this.messages.get(convId);
    if (held) held.set(message.seq, message);
    // Our own send, stored: it replaces its pending bubble.
    if (message.sender_id === this.me.id) this.pending.delete(message.client_msg_id);
    const ticketId = this.byConv.get(convId);
    const ticket = ticketId ? this.tickets.get(ticketId) : undefined;
    if (ticket && message.sender_id === this.me.id && this.isMineOpen(ticket) && !ticket.first_response_at) {
      // The first reply: its deadline no longer applies.
      this.tickets.set(ticketId, { ...ticket, first_response_at: message.created_at, sla_deadline: null });
      if (ticketId === this.activeId) this.emit("active", ticketId);
    }
    if (message.sender_id !== this.me.id) {
      this.clearTyping(convId);
      if (ticketId && !(ticketId === this.activeId && this.visible)) {
        this.unread.set(ticketId, (this.unread.get(ticketId) ?? 0) + 1);
      }
    }
    this.emit("message", message);
    if (ticketId) this.emit("tickets");
    if (ticketId === this.activeId && message.sender_id !== this.me.id) this.markActiveRead();
  }

  markActiveRead() {
    const ticket = this.active;
    if (!ticket || !this.visible) return;
    const last = this.lastMessage.get(ticket.conv_id);
    const hadUnread = (this.unread.get(ticket.ticket_id) ?? 0) > 0;
    this.unread.set(ticket.ticket_id, 0);
    if (hadUnread) this.emit("tickets");
    if (!last || ticket.status !== "assigned" || !this.client.connected) return;
    this.client.markRead(ticket.conv_id, last.seq).catch(() => undefined);
  }

  onRead(read) {
    if (read.user_id === this.me.id) {
      // Read on another of my devices.
      const ticketId = this.byConv.get(read.conv_id);
      const last = this.lastMessage.get(read.conv_id);
      if (ticketId && last && read.seq >= last.seq && this.unread.get(ticketId)) {
        this.unread.set(ticketId, 0);
        this.emit("tickets");
      }
      return;
    }
    if ((this.peerRead.get(read.conv_id) ?? 0) < read.seq) this.peerRead.set(read.conv_id, read.seq);
    this.emit("read", read.conv_id);
  }

  setPresence(presence) {
    this.presence.set(presence.user_id, presence);
    this.emit("presence", presence.user_id);
  }

  // --- typing -------------------------------------------------------------------------------

  onTyping(typing) {
    if (typing.user_id === this.me.id) return;
    clearTimeout(this.typing.get(typing.conv_id));
    if (typing.typing) {
      this.typing.set(
        typing.conv_id,
        setTimeout(() => this.clearTyping(typing.conv_id), TYPING_SHOWN_MS),
      );
    } else {
      this.typing.delete(typing.conv_id);
    }
    this.emit("typing", typing.conv_id);
  }

  clearTyping(convId) {
    if (!this.typing.has(convId)) return;
    clearTimeout(this.typing.get(convId));
    this.typing.delete(convId);
    this.emit("typing", convId);
  }

  isTyping(convId) {
    return this.typing.has(convId);
  }

  /** The operator typed in the composer: say so (at most every few seconds), and stop when idle. */
  typed(convId) {
    const now = Date.now();
    const state = this.myTyping;
    if (!state || state.convId !== convId || now - state.lastSent > TYPING_REPEAT_MS) {
      this.publishTyping(convId, true);
      this.myTyping = { convId, lastSent: now, idleTimer: state?.idleTimer };
    }
    clearTimeout(this.myTyping.idleTimer);
    this.myTyping.idleTimer = setTimeout(() => this.stopTyping(), TYPING_IDLE_MS);
  }

  stopTyping() {
    const state = this.myTyping;
    if (!state) return;
    this.myTyping = null;
    clearTimeout(state.idleTimer);
    this.publishTyping(state.convId, false);
  }

  publishTyping(convId, typing) {
    try {
      this.client.setTyping(convId, typing).catch(() => undefined);
    } catch {
      // Not connected: typing is ephemeral, nothing to keep.
    }
  }

  // --- sending ------------------------------------------------------------------------------

  sendText(convId, text) {
    this.stopTyping();
    const clientMsgId = this.lib.newId();
    this.pending.set(clientMsgId, { conv_id: convId, kind: "text", text, state: "sending" });
    this.emit("message", null);
    this.deliver(clientMsgId, () => this.client.sendText(convId, text, { clientMsgId }));
  }

  retry(clientMsgId) {
    const send = this.pending.get(clientMsgId);
    if (!send) return;
    send.state = "sending";
    send.error = null;
    this.emit("message", null);
    if (send.kind === "text") {
      this.deliver(clientMsgId, () => this.client.sendText(send.conv_id, send.text, { clientMsgId }));
    } else if (send.media) {
      this.deliver(clientMsgId, () =>
        this.client.sendMedia(send.conv_id, send.media.kind, send.media.media_id, undefined, { clientMsgId }),
      );
    } else {
      this.pending.delete(clientMsgId);
      this.sendFile(send.conv_id, send.file);
    }
  }

  discard(clientMsgId) {
    this.pending.delete(clientMsgId);
    this.emit("message", null);
  }

  /** Upload, then send with the kind the server found (image, audio or file). */
  async sendFile(convId, file) {
    const clientMsgId = this.lib.newId();
    const send = { conv_id: convId, kind: "file", name: file.name, size: file.size, file, state: "uploading" };
    this.pending.set(clientMsgId, send);
    this.emit("message", null);
    try {
      send.media = await this.http.upload(file, file.name || "file", file.type || "application/octet-stream");
    } catch (error) {
      send.state = "failed";
      send.error = describe(error);
      this.emit("message", null);
      return;
    }
    send.state = "sending";
    send.kind = send.media.kind;
    this.emit("message", null);
    this.deliver(clientMsgId, () =>
      this.client.sendMedia(convId, send.media.kind, send.media.media_id, undefined, { clientMsgId }),
    );
  }

  async deliver(clientMsgId, publish) {
    const send = this.pending.get(clientMsgId);
    try {
      const ack = await publish();
      if (ack.status === "rejected") {
        send.state = "failed";
        send.error = describe(ack.error ?? { message: "refused" });
        this.emit("message", null);
      }
      // Stored: the message itself arrives on our topic and replaces the pending one.
    } catch (error) {
      if (!this.pending.has(clientMsgId)) return;
      send.state = "failed";
      send.error = describe(error);
      this.emit("message", null);
    }
  }

  // --- attachments --------------------------------------------------------------------------

  /** A blob URL of a media `url`, fetched once with the bearer token. */
  mediaUrl(media) {
    let url = this.media.get(media.media_id);
    if (!url) {
      url = this.http.download(media.url).then((bytes) =>
        URL.createObjectURL(new Blob([bytes], { type: media.mime || "application/octet-stream" })),
      );
      url.catch(() => this.media.delete(media.media_id));
      this.media.set(media.media_id, url);
    }
    return url;
  }

  // --- canned replies -----------------------------------------------------------------------

  async loadCanned() {
    this.canned = await this.http.cannedReplies();
    this.emit("canned");
  }

  async addCanned(title, text, shared) {
    const reply = await this.http.createCannedReply(title, text, shared || undefined);
    this.canned = [...this.canned, reply].sort((a, b) => a.title.localeCompare(b.title));
    this.emit("canned");
    return reply;
  }

  async deleteCanned(id) {
    await this.http.deleteCannedReply(id);
    this.canned = this.canned.filter((reply) => reply.id !== id);
    this.emit("canned");
  }

  nameOf(userId) {
    return this.names.get(userId) ?? null;
  }
}
