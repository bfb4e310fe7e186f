// The operator's desk: the queue and my chats (left), the chat (center), the
// ticket's details and canned replies (right).

import { ChatView } from "./chat.js";
import { avatar, fill, h, icon } from "./dom.js";
import { dateTime, duration, PRIORITY_LABEL } from "./format.js";
import { confirmDialog, describe, empty, modal, priorityChip, statusDot, ticking, toast } from "./ui.js";

export class DeskView {
  constructor(desk) {
    this.desk = desk;
    this.queueBox = h("div", { class: "list-scroll", id: "queue-list" });
    this.queueCount = h("span", { class: "count" });
    this.queueMeta = h("span", { class: "section-meta" });
    this.mineBox = h("div", { class: "list-scroll", id: "my-chats" });
    this.mineCount = h("span", { class: "count" });
    this.closedBox = h("div", { class: "closed-list" });
    this.closedCount = h("span", { class: "count count-muted" });
    this.details = h("div", { class: "side-body" });
    this.cannedList = h("ul", { class: "canned-list", id: "canned-list" });
    this.cannedFilter = h("input", {
      class: "input input-search",
      type: "search",
      placeholder: "Search replies  (Ctrl K)",
      "aria-label": "Search canned replies",
      oninput: () => this.renderCanned(),
      onkeydown: (event) => this.onCannedKey(event),
    });
    this.cannedForm = null;
    this.chat = new ChatView(desk, {
      onTransfer: (ticket) => this.transferDialog(ticket),
      onClose: (ticket) => this.closeDialog(ticket),
    });

    this.el = h(
      "div",
      { class: "desk" },
      h(
        "aside",
        { class: "pane pane-left", "aria-label": "Queue and my chats" },
        h(
          "section",
          { class: "list-section section-queue", "aria-labelledby": "queue-title" },
          h("header", { class: "section-head" }, h("h2", { id: "queue-title" }, "Queue"), this.queueCount, this.queueMeta),
          this.queueBox,
        ),
        h(
          "section",
          { class: "list-section section-mine", "aria-labelledby": "mine-title" },
          h("header", { class: "section-head" }, h("h2", { id: "mine-title" }, "My chats"), this.mineCount),
          this.mineBox,
          h(
            "details",
            { class: "closed-section" },
            h("summary", {}, "Past chats", this.closedCount),
            this.closedBox,
          ),
        ),
      ),
      this.chat.el,
      h(
        "aside",
        { class: "pane pane-side", "aria-label": "Ticket details and canned replies" },
        h("section", { class: "side-section" }, h("h2", { class: "side-title" }, "Details"), this.details),
        h(
          "section",
          { class: "side-section side-canned", "aria-labelledby": "canned-title" },
          h(
            "header",
            { class: "side-head" },
            h("h2", { class: "side-title", id: "canned-title" }, "Canned replies"),
            h(
              "button",
              { class: "button button-small button-ghost", type: "button", onclick: () => this.toggleCannedForm() },
              icon("plus"),
              "New",
            ),
          ),
          this.cannedFilter,
          this.cannedList,
        ),
      ),
    );

    desk.on("queue", () => this.renderQueue());
    desk.on("tickets", () => {
      this.renderMine();
      this.renderCanned();
    });
    desk.on("typing", () => this.renderMine());
    desk.on("active", () => {
      this.renderMine();
      this.renderDetails();
      this.renderCanned();
    });
    desk.on("details", () => this.renderDetails());
    desk.on("canned", () => this.renderCanned());
    desk.on("me", () => {
      this.renderMine();
      this.renderQueue();
    });
    desk.on("floor", () => this.renderDetails());
    document.addEventListener("keydown", (event) => this.onKey(event));

    this.renderQueue();
    this.renderMine();
    this.renderDetails();
    this.renderCanned();
  }

  // --- the queue -----------------------------------------------------------------------------

  renderQueue() {
    const tickets = this.desk.queue;
    if (tickets === null) {
      fill(this.queueBox, h("p", { class: "list-loading" }, "Loading the queue…"));
      return;
    }
    this.queueCount.textContent = String(tickets.length);
    fill(this.queueMeta);
    if (tickets.length > 0) {
      const oldest = tickets.reduce((a, b) => ((a.queued_at ?? "") < (b.queued_at ?? "") ? a : b));
      if (oldest.queued_at) fill(this.queueMeta, "longest ", ticking("wait", oldest.queued_at));
    }
    if (tickets.length === 0) {
      fill(
        this.queueBox,
        empty("inbox", "No one is waiting", "New tickets appear here the moment they are opened."),
      );
      return;
    }
    const offline = this.desk.me.status === "offline";
    fill(
      this.queueBox,
      offline ? h("p", { class: "queue-note" }, "You are offline: go online or away to take chats.") : null,
      h(
        "ol",
        { class: "queue-list" },
        tickets.map((ticket) =>
          h(
            "li",
            { class: "queue-item", dataset: { ticket: ticket.ticket_id } },
            h(
              "div",
              { class: "qi-main" },
              h("div", { class: "qi-top" }, priorityChip(ticket, { compact: true }), h("span", { class: "qi-subject", title: ticket.subject }, ticket.subject)),
              h(
                "div",
                { class: "qi-meta" },
                h("span", { class: "qi-pos", title: "Position in the queue" }, `#${ticket.position ?? "–"}`),
                h("span", { class: "qi-customer" }, ticket.user.name),
                ticket.escalations > 0
                  ? h("span", { class: "badge badge-warn", title: `Escalated ${ticket.escalations}×` }, `↑${ticket.escalations}`)
                  : null,
              ),
            ),
            h(
              "div",
              { class: "qi-side" },
              ticking("wait", ticket.queued_at ?? ticket.created_at, { class: "qi-wait", title: "Waiting for" }),
              h(
                "button",
                {
                  class: "button button-small button-primary take",
                  type: "button",
                  disabled: offline,
                  title: offline ? "Go online or away to take chats" : "Take this chat",
                  "aria-label": `Take “${ticket.subject}”`,
                  onclick: (event) => this.take(ticket, event.currentTarget),
                },
                "Take",
              ),
            ),
          ),
        ),
      ),
    );
  }

  async take(ticket, button) {
    button.disabled = true;
    try {
      await this.desk.take(ticket.ticket_id);
      this.chat.focusComposer();
    } catch (error) {
      toast(describe(error), "error");
      button.disabled = false;
    }
  }

  // --- my chats ------------------------------------------------------------------------------

  renderMine() {
    const desk = this.desk;
    const open = desk.openTickets;
    this.mineCount.textContent = `${open.length} / ${desk.me.capacity}`;
    this.mineCount.classList.toggle("count-full", open.length >= desk.me.capacity);
    this.mineCount.title = `${open.length} open of your capacity of ${desk.me.capacity}`;
    if (open.length === 0) {
      fill(
        this.mineBox,
        empty(
          "chat",
          "No open chats",
          desk.me.status === "online"
            ? "Chats are given to you as tickets arrive, or take one from the queue."
            : "Take a ticket from the queue, or go online to be given chats.",
        ),
      );
    } else {
      fill(this.mineBox, h("ul", { class: "chat-list" }, open.map((ticket) => this.chatItem(ticket))));
    }
    const closed = desk.closedTickets.slice(0, 30);
    this.closedCount.textContent = String(closed.length);
    fill(
      this.closedBox,
      closed.length === 0
        ? h("p", { class: "list-note" }, "Chats you closed or handed over show here.")
        : h("ul", { class: "chat-list chat-list-closed" }, closed.map((ticket) => this.chatItem(ticket))),
    );
    document.title = desk.totalUnread > 0 ? `(${desk.totalUnread}) Support desk` : "Support desk";
  }

  chatItem(ticket) {
    const desk = this.desk;
    const unread = desk.unread.get(ticket.ticket_id) ?? 0;
    const last = desk.lastMessage.get(ticket.conv_id);
    const typing = desk.isTyping(ticket.conv_id);
    let preview;
    if (typing) preview = h("span", { class: "typing-text" }, "typing…");
    else if (last) preview = (last.sender_id === desk.me.id ? "You: " : "") + previewOf(last);
    else preview = "No messages yet";
    const awaiting = desk.isMineOpen(ticket) && ticket.sla_deadline && !ticket.first_response_at;
    return h(
      "li",
      {},
      h(
        "button",
        {
          type: "button",
          class: ["chat-item", ticket.ticket_id === desk.activeId && "active", unread > 0 && "unread"],
          dataset: { ticket: ticket.ticket_id },
          "aria-current": ticket.ticket_id === desk.activeId ? "true" : undefined,
          onclick: () => desk.open(ticket.ticket_id),
        },
        avatar(ticket.user),
        h(
          "span",
          { class: "ci-main" },
          h(
            "span",
            { class: "ci-top" },
            h("span", { class: "ci-name" }, ticket.user.name),
            ticking("age", desk.activityOf(ticket), { class: "ci-time" }),
          ),
          h("span", { class: "ci-subject" }, h("span", { class: ["prio-dot", `prio-${ticket.priority}`], title: PRIORITY_LABEL[ticket.priority] }), ticket.subject),
          h(
            "span",
            { class: "ci-bottom" },
            h("span", { class: "ci-preview" }, preview),
            awaiting ? ticking("due", ticket.sla_deadline, { class: "sla-mini", title: "First reply due in" }) : null,
            unread > 0 ? h("span", { class: "unread-badge", "aria-label": `${unread} unread` }, unread > 99 ? "99+" : String(unread)) : null,
          ),
        ),
      ),
    );
  }

  onKey(event) {
    if (event.altKey && (event.key === "ArrowDown" || event.key === "ArrowUp")) {
      const open = this.desk.openTickets;
      if (open.length === 0) return;
      event.preventDefault();
      const at = open.findIndex((t) => t.ticket_id === this.desk.activeId);
      const step = event.key === "ArrowDown" ? 1 : -1;
      const next = open[(at + step + open.length) % open.length] ?? open[0];
      this.desk.open(next.ticket_id).then(() => this.chat.focusComposer());
    } else if ((event.ctrlKey || event.metaKey) && event.key.toLowerCase() === "k") {
      event.preventDefault();
      this.cannedFilter.focus();
      this.cannedFilter.select();
    }
  }

  // --- details -------------------------------------------------------------------------------

  renderDetails() {
    const ticket = this.desk.active;
    if (!ticket) {
      fill(this.details, h("p", { class: "list-note" }, "Select a chat to see its ticket."));
      return;
    }
    const waited = ticket.assigned_at && ticket.created_at ? (Date.parse(ticket.assigned_at) - Date.parse(ticket.created_at)) / 1000 : null;
    const firstReply =
      ticket.first_response_at && ticket.assigned_at
        ? (Date.parse(ticket.first_response_at) - Date.parse(ticket.assigned_at)) / 1000
        : null;
    const rows = [
      ["Customer", h("span", { class: "person" }, avatar(ticket.user, "avatar-small"), ticket.user.name)],
      ["Subject", ticket.subject],
      ["Priority", priorityChip(ticket)],
      ["Status", statusLabel(ticket, this.desk.me.id)],
      ["Opened", dateTime(ticket.created_at)],
      ["Waited", waited === null ? "—" : duration(waited)],
      ["First reply", firstReply === null ? (ticket.sla_deadline ? h("span", { class: "muted" }, "not yet") : "—") : `after ${duration(firstReply)}`],
      ["Escalations", String(ticket.escalations)],
      ticket.rating ? ["Rating", h("span", { class: "rating", "aria-label": `${ticket.rating} of 5` }, "★".repeat(ticket.rating) + "☆".repeat(5 - ticket.rating))] : null,
      ["Ticket", h("code", { class: "mono" }, ticket.ticket_id)],
    ].filter(Boolean);
    const events = this.desk.ticketEvents.get(ticket.ticket_id) ?? [];
    fill(
      this.details,
      h("dl", { class: "facts" }, rows.map(([term, value]) => [h("dt", {}, term), h("dd", {}, value)])),
      events.length > 0
        ? h(
            "div",
            { class: "timeline-box" },
            h("h3", { class: "side-subtitle" }, "Activity"),
            h("ol", { class: "timeline" }, events.map((event) => this.timelineItem(event, ticket))),
          )
        : null,
    );
  }

  timelineItem(event, ticket) {
    const who = (id) => {
      if (!id) return "the system";
      if (id === this.desk.me.id) return "you";
      if (id === ticket.user.id) return ticket.user.name;
      return this.desk.nameOf(id) ?? "another operator";
    };
    const reasons = {
      agent_offline: "operator disconnected",
      agent_signed_off: "operator signed off",
      no_first_response: "no first reply in time",
      transferred: "transferred",
    };
    let text;
    switch (event.kind) {
      case "opened":
        text = `Opened by ${who(event.actor_id)} (${event.detail ?? "normal"})`;
        break;
      case "assigned":
        text = `${event.detail === "taken" ? "Taken by" : "Given to"} ${who(event.operator_id)}`;
        break;
      case "transferred":
        text = event.operator_id ? `Transferred to ${who(event.operator_id)}` : "Sent back to the queue";
        break;
      case "requeued":
        text = `Back to the queue: ${reasons[event.detail] ?? event.detail ?? "requeued"}`;
        break;
      case "escalated":
        text = `Escalated${event.detail ? ` to ${event.detail}` : ""}`;
        break;
      case "closed":
        text = `Closed by ${who(event.actor_id)}`;
        break;
      default:
        text = `${event.kind}${event.detail ? `: ${event.detail}` : ""}`;
    }
    return h("li", {}, h("span", { class: "tl-text" }, text), h("time", { class: "tl-time", datetime: event.at }, dateTime(event.at)));
  }

  // --- canned replies ------------------------------------------------------------------------

  renderCanned() {
    const query = this.cannedFilter.value.trim().toLowerCase();
    const replies = this.desk.canned.filter(
      (reply) => !query || reply.title.toLowerCase().includes(query) || reply.text.toLowerCase().includes(query),
    );
    const canInsert = this.chat.canSend;
    if (this.desk.canned.length === 0) {
      fill(this.cannedList, h("li", { class: "list-note" }, "No canned replies yet. Save the answers you give often with “New”."));
      return;
    }
    if (replies.length === 0) {
      fill(this.cannedList, h("li", { class: "list-note" }, "No reply matches."));
      return;
    }
    fill(
      this.cannedList,
      replies.map((reply) =>
        h(
          "li",
          { class: "canned-item" },
          h(
            "button",
            {
              type: "button",
              class: "canned-use",
              disabled: !canInsert,
              title: canInsert ? "Insert into the message" : "Open a chat to use it",
              onclick: () => this.insertCanned(reply),
            },
            h("span", { class: "canned-title" }, reply.title, reply.shared ? h("span", { class: "badge" }, "shared") : null),
            h("span", { class: "canned-text" }, reply.text),
          ),
          !reply.shared || this.desk.me.supervisor
            ? h(
                "button",
                {
                  type: "button",
                  class: "icon-button canned-delete",
                  "aria-label": `Delete “${reply.title}”`,
                  onclick: () => this.deleteCanned(reply),
                },
                icon("trash"),
              )
            : null,
        ),
      ),
    );
  }

  insertCanned(reply) {
    const ticket = this.desk.active;
    const first = (name) => String(name ?? "").trim().split(/\s+/)[0] ?? "";
    const text = reply.text
      .replaceAll("{customer}", first(ticket?.user.name))
      .replaceAll("{agent}", first(this.desk.me.name));
    this.chat.insert(text);
  }

  onCannedKey(event) {
    if (event.key === "Enter") {
      event.preventDefault();
      const first = this.cannedList.querySelector(".canned-use:not([disabled])");
      first?.click();
    } else if (event.key === "Escape") {
      this.cannedFilter.value = "";
      this.renderCanned();
      this.chat.focusComposer();
    }
  }

  async deleteCanned(reply) {
    const sure = await confirmDialog("Delete canned reply", `Delete “${reply.title}”?`, { confirm: "Delete", danger: true });
    if (!sure) return;
    try {
      await this.desk.deleteCanned(reply.id);
    } catch (error) {
      toast(describe(error), "error");
    }
  }

  toggleCannedForm() {
    if (this.cannedForm) {
      this.cannedForm.remove();
      this.cannedForm = null;
      return;
    }
    const title = h("input", { class: "input", name: "title", required: true, maxlength: 100, placeholder: "Title, e.g. Refund timeline", "aria-label": "Title" });
    const text = h("textarea", { class: "input", name: "text", required: true, maxlength: 4000, rows: 4, placeholder: "Text. {customer} and {agent} become first names.", "aria-label": "Reply text" });
    const shared = h("input", { type: "checkbox", name: "shared" });
    const form = h(
      "form",
      {
        class: "canned-form",
        onsubmit: async (event) => {
          event.preventDefault();
          const saving = form.querySelector("button[type=submit]");
          saving.disabled = true;
          try {
            await this.desk.addCanned(title.value.trim(), text.value.trim(), shared.checked);
            toast("Canned reply saved.", "success", 2500);
            this.toggleCannedForm();
          } catch (error) {
            toast(describe(error), "error");
            saving.disabled = false;
          }
        },
      },
      title,
      text,
      this.desk.me.supervisor ? h("label", { class: "check" }, shared, "Shared with every operator") : null,
      h(
        "div",
        { class: "form-actions" },
        h("button", { class: "button button-small", type: "button", onclick: () => this.toggleCannedForm() }, "Cancel"),
        h("button", { class: "button button-small button-primary", type: "submit" }, "Save reply"),
      ),
    );
    this.cannedForm = form;
    this.cannedFilter.before(form);
    title.focus();
  }

  // --- transfer and close --------------------------------------------------------------------

  async transferDialog(ticket) {
    const desk = this.desk;
    // Supervisors have the live floor; anyone else asks for the colleagues once.
    let colleagues = desk.floor?.operators;
    if (!colleagues) {
      try {
        colleagues = await desk.http.listOperators();
      } catch (error) {
        colleagues = [];
        toast(describe(error), "error");
      }
    }
    const choice = await modal("Transfer chat", (done) => {
      const options = [
        h(
          "button",
          { type: "button", class: "option", onclick: () => done({ to: null }) },
          h("span", { class: "option-icon" }, icon("inbox")),
          h("span", { class: "option-main" }, h("strong", {}, "Back to the queue"), h("span", { class: "muted" }, "The next available operator gets it.")),
        ),
      ];
      {
        for (const operator of colleagues) {
          if (operator.id === desk.me.id) continue;
          const ready = operator.status === "online" && operator.connected;
          options.push(
            h(
              "button",
              {
                type: "button",
                class: "option",
                disabled: !ready,
                dataset: { operator: operator.id },
                onclick: () => done({ to: operator.id, name: operator.name }),
              },
              avatar({ id: operator.id, name: operator.name }),
              h(
                "span",
                { class: "option-main" },
                h("strong", {}, operator.name),
                h("span", { class: "muted" }, statusDot(operator.status, operator.connected), ready ? "Online" : operator.connected ? (operator.status === "away" ? "Away" : "Offline") : "Not connected"),
              ),
              h("span", { class: "load" }, `${operator.open_chats} / ${operator.capacity}`),
            ),
          );
        }
      }
      return [
        h("p", { class: "modal-text" }, `“${ticket.subject}” with ${ticket.user.name}`),
        h("div", { class: "options" }, options),
      ];
    });
    if (!choice) return;
    try {
      await desk.transfer(ticket.ticket_id, choice.to);
      toast(choice.to ? `Transferred to ${choice.name}.` : "Sent back to the queue.", "success", 3000);
    } catch (error) {
      toast(describe(error), "error");
    }
  }

  async closeDialog(ticket) {
    const sure = await confirmDialog(
      "Close chat",
      `Close “${ticket.subject}” with ${ticket.user.name}? They are told, and may rate the chat.`,
      { confirm: "Close chat" },
    );
    if (!sure) return;
    try {
      await this.desk.close(ticket.ticket_id);
      toast("Chat closed.", "success", 2500);
    } catch (error) {
      toast(describe(error), "error");
    }
  }
}

// --- helpers -------------------------------------------------------------------------------

export function previewOf(message) {
  if (message.text) return message.text.replace(/\s+/g, " ").slice(0, 120);
  if (message.kind === "image") return "Photo";
  if (message.kind === "audio") return "Voice note";
  return `File: ${message.media?.name ?? "attachment"}`;
}

function statusLabel(ticket, myId) {
  if (ticket.status === "queued") return h("span", { class: "state state-queued" }, "Waiting");
  if (ticket.status === "closed") {
    return h("span", { class: "state state-closed" }, ticket.closed_by === "user" ? "Closed by customer" : "Closed");
  }
  if (ticket.agent?.id === myId) return h("span", { class: "state state-open" }, "With you");
  return h("span", { class: "state state-other" }, `With ${ticket.agent?.name ?? "another operator"}`);
}
