// The chat in the middle: header with the ticket's actions, the messages with
// their attachments, who is typing, and the composer.

import { avatar, fill, h, icon } from "./dom.js";
import { dayLabel, fileSize, timeOfDay } from "./format.js";
import { describe, priorityChip, ticking, toast } from "./ui.js";

const MAX_TEXT = 4000;

export class ChatView {
  constructor(desk, { onTransfer, onClose }) {
    this.desk = desk;
    this.onTransfer = onTransfer;
    this.onClose = onClose;
    this.shownId = undefined; // the ticket the skeleton was built for
    this.drafts = new Map(); // ticket_id -> unsent text
    this.el = h("main", { class: "pane pane-chat", "aria-label": "Chat" });
    this.head = h("header", { class: "chat-head" });
    this.scroll = h("div", { class: "chat-scroll", role: "log", "aria-live": "polite", "aria-label": "Messages" });
    this.typingLine = h("div", { class: "typing-line", "aria-live": "polite" });
    this.textarea = h("textarea", {
      class: "composer-input",
      rows: 1,
      placeholder: "Write a reply…",
      "aria-label": "Message",
      maxlength: MAX_TEXT,
      oninput: () => this.onInput(),
      onkeydown: (event) => this.onComposerKey(event),
      onpaste: (event) => this.onPaste(event),
    });
    this.fileInput = h("input", {
      type: "file",
      multiple: true,
      hidden: true,
      "aria-hidden": "true",
      onchange: () => {
        this.sendFiles([...this.fileInput.files]);
        this.fileInput.value = "";
      },
    });
    this.attachButton = h(
      "button",
      { type: "button", class: "icon-button composer-attach", "aria-label": "Attach a file", title: "Attach a file", onclick: () => this.fileInput.click() },
      icon("clip"),
    );
    this.sendButton = h(
      "button",
      { type: "submit", class: "button button-primary composer-send", "aria-label": "Send", title: "Send (Enter)" },
      icon("send"),
      h("span", {}, "Send"),
    );
    this.composer = h(
      "form",
      { class: "composer", onsubmit: (event) => { event.preventDefault(); this.send(); } },
      this.fileInput,
      h("div", { class: "composer-box" }, this.attachButton, this.textarea, this.sendButton),
      h("div", { class: "composer-hint" }, h("kbd", {}, "Enter"), " to send · ", h("kbd", {}, "Shift"), "+", h("kbd", {}, "Enter"), " new line · ", h("kbd", {}, "Alt"), "+", h("kbd", {}, "↑↓"), " switch chat · drop files to attach"),
    );
    this.closedNote = h("div", { class: "composer-closed" });

    for (const name of ["dragenter", "dragover"]) {
      this.el.addEventListener(name, (event) => {
        if (!this.canSend || !event.dataTransfer?.types.includes("Files")) return;
        event.preventDefault();
        this.el.classList.add("dropping");
      });
    }
    this.el.addEventListener("dragleave", (event) => {
      if (event.target === this.el || !this.el.contains(event.relatedTarget)) this.el.classList.remove("dropping");
    });
    this.el.addEventListener("drop", (event) => {
      this.el.classList.remove("dropping");
      if (!this.canSend || !event.dataTransfer?.files.length) return;
      event.preventDefault();
      this.sendFiles([...event.dataTransfer.files]);
    });

    desk.on("active", () => this.render());
    desk.on("tickets", () => this.renderHead());
    desk.on("history", (convId) => convId === this.desk.active?.conv_id && this.renderMessages({ keepOffset: true }));
    desk.on("message", (message) => {
      if (message === null || message.conv_id === this.desk.active?.conv_id) {
        this.renderMessages({ toBottom: message?.sender_id === this.desk.me.id || message === null });
      }
    });
    desk.on("read", (convId) => convId === this.desk.active?.conv_id && this.renderMessages({}));
    desk.on("typing", (convId) => convId === this.desk.active?.conv_id && this.renderTyping());
    desk.on("connection", () => this.renderHead());
    desk.on("presence", (userId) => userId === this.desk.active?.user.id && this.renderHead());
    this.render();
  }

  get canSend() {
    const ticket = this.desk.active;
    return Boolean(ticket && this.desk.isMineOpen(ticket));
  }

  render() {
    const ticket = this.desk.active;
    if (!ticket) {
      this.shownId = null;
      fill(
        this.el,
        h(
          "div",
          { class: "chat-empty" },
          h("span", { class: "empty-icon empty-icon-large" }, icon("chat")),
          h("h2", {}, "No chat open"),
          h("p", {}, "Take a waiting ticket from the queue, or pick one of your chats on the left."),
          h(
            "ul",
            { class: "shortcuts" },
            h("li", {}, h("kbd", {}, "Alt"), "+", h("kbd", {}, "↑"), h("kbd", {}, "↓"), " move between your chats"),
            h("li", {}, h("kbd", {}, "Ctrl"), "+", h("kbd", {}, "K"), " search canned replies"),
            h("li", {}, h("kbd", {}, "Enter"), " send · ", h("kbd", {}, "Shift"), "+", h("kbd", {}, "Enter"), " new line"),
          ),
        ),
      );
      return;
    }
    if (this.shownId !== ticket.ticket_id) {
      if (this.shownId) this.drafts.set(this.shownId, this.textarea.value);
      this.shownId = ticket.ticket_id;
      this.textarea.value = this.drafts.get(ticket.ticket_id) ?? "";
      this.autosize();
      fill(this.el, this.head, this.scroll, this.typingLine, this.composer, this.closedNote);
      fill(this.scroll, h("p", { class: "list-loading" }, "Loading messages…"));
      this.renderMessages({ toBottom: true });
    }
    this.renderHead();
    this.renderTyping();
  }

  renderHead() {
    const ticket = this.desk.active;
    if (!ticket || this.shownId !== ticket.ticket_id) return;
    const mine = this.desk.isMineOpen(ticket);
    const awaiting = mine && ticket.sla_deadline && !ticket.first_response_at;
    fill(
      this.head,
      avatar(ticket.user, "avatar-large"),
      h(
        "div",
        { class: "chat-title" },
        h("h1", {}, ticket.user.name, this.presenceOf(ticket.user.id)),
        h(
          "p",
          { class: "chat-subtitle" },
          priorityChip(ticket, { compact: true }),
          h("span", { class: "chat-subject", title: ticket.subject }, ticket.subject),
        ),
      ),
      awaiting
        ? h(
            "div",
            { class: "sla", title: "The first reply is due by this deadline; after it the ticket is escalated and goes back to the queue." },
            h("span", { class: "sla-label" }, "First reply due"),
            ticking("due", ticket.sla_deadline, { class: "sla-time", dataset: { warn: "30" } }),
          )
        : null,
      h(
        "div",
        { class: "chat-actions" },
        mine
          ? [
              h("button", { type: "button", class: "button", onclick: () => this.onTransfer(ticket) }, icon("transfer"), "Transfer"),
              h("button", { type: "button", class: "button", onclick: () => this.onClose(ticket) }, icon("done"), "Close"),
            ]
          : null,
      ),
    );
    const live = this.desk.connection === "live";
    this.composer.hidden = !mine;
    this.closedNote.hidden = mine;
    this.textarea.disabled = !mine;
    this.attachButton.disabled = !mine;
    this.sendButton.disabled = !mine;
    this.composer.classList.toggle("offline", !live);
    this.textarea.placeholder = live ? "Write a reply…" : "Offline: replies go out when the connection is back…";
    if (!mine) {
      let note;
      if (ticket.status === "closed") {
        note = ticket.closed_by === "user" ? "The customer closed this chat." : "This chat is closed.";
      } else if (ticket.status === "queued") note = "This chat went back to the queue.";
      else note = `This chat is now with ${ticket.agent?.name ?? "another operator"}.`;
      fill(this.closedNote, icon("check"), note);
    }
  }

  presenceOf(userId) {
    const presence = this.desk.presence.get(userId);
    if (!presence) return null;
    if (presence.online) return h("span", { class: "presence presence-on" }, "online");
    return h(
      "span",
      { class: "presence" },
      presence.last_seen ? ["seen ", ticking("relative", presence.last_seen)] : "offline",
    );
  }

  renderTyping() {
    const ticket = this.desk.active;
    if (!ticket) return;
    const typing = this.desk.isTyping(ticket.conv_id);
    fill(
      this.typingLine,
      typing ? [h("span", { class: "typing-dots", "aria-hidden": "true" }, h("i"), h("i"), h("i")), `${ticket.user.name} is typing…`] : null,
    );
    this.typingLine.classList.toggle("visible", typing);
  }

  renderMessages({ toBottom = false, keepOffset = false } = {}) {
    const ticket = this.desk.active;
    if (!ticket || this.shownId !== ticket.ticket_id) return;
    const convId = ticket.conv_id;
    if (!this.desk.messages.has(convId)) return; // still loading
    const box = this.scroll;
    const nearBottom = box.scrollHeight - box.scrollTop - box.clientHeight < 120;
    const fromBottom = box.scrollHeight - box.scrollTop;
    const { stored, pending } = this.desk.shownMessages(convId);
    const me = this.desk.me.id;
    const peerRead = this.desk.peerRead.get(convId) ?? 0;
    const lastMine = [...stored].reverse().find((m) => m.sender_id === me);
    const items = [];
    if (this.desk.olderAvailable.get(convId)) {
      items.push(
        h(
          "div",
          { class: "older" },
          h(
            "button",
            {
              type: "button",
              class: "button button-small button-ghost",
              onclick: (event) => {
                event.currentTarget.disabled = true;
                this.desk.loadOlder(convId).catch((error) => toast(describe(error), "error"));
              },
            },
            "Load earlier messages",
          ),
        ),
      );
    }
    if (stored.length === 0 && pending.length === 0) {
      items.push(h("div", { class: "chat-start" }, "No messages yet. Say hello to ", ticket.user.name, "."));
    }
    const together = (a, b) =>
      a !== undefined &&
      b !== undefined &&
      a.sender_id === b.sender_id &&
      dayLabel(a.created_at) === dayLabel(b.created_at) &&
      Date.parse(b.created_at) - Date.parse(a.created_at) < 5 * 60_000;
    let day = "";
    stored.forEach((message, index) => {
      const label = dayLabel(message.created_at);
      if (label !== day) {
        day = label;
        items.push(h("div", { class: "day" }, h("span", {}, label)));
      }
      items.push(
        this.bubble(message, ticket, {
          grouped: together(stored[index - 1], message),
          // The time once per group, under its last message.
          timed: !together(message, stored[index + 1]),
          seen: message === lastMine && peerRead >= message.seq,
        }),
      );
    });
    for (const send of pending) items.push(this.pendingBubble(send));
    fill(box, items);
    if (keepOffset && !toBottom) box.scrollTop = box.scrollHeight - fromBottom;
    else if (toBottom || nearBottom) box.scrollTop = box.scrollHeight;
  }

  bubble(message, ticket, { grouped, timed, seen }) {
    const me = this.desk.me.id;
    const fromCustomer = message.sender_id === ticket.user.id;
    const mine = message.sender_id === me;
    const sender = mine ? "You" : fromCustomer ? ticket.user.name : this.desk.nameOf(message.sender_id) ?? "Another operator";
    return h(
      "div",
      {
        class: ["msg", fromCustomer ? "msg-in" : "msg-out", !mine && !fromCustomer && "msg-colleague", grouped && "grouped"],
        dataset: { seq: String(message.seq) },
      },
      !grouped && !mine ? h("div", { class: "msg-sender" }, sender) : null,
      h(
        "div",
        {
          class: ["bubble", message.media && !message.text && message.kind === "image" && "bubble-bare"],
          title: timed ? undefined : new Date(message.created_at).toLocaleString(),
        },
        message.media ? this.attachment(message) : null,
        message.text ? h("div", { class: "msg-text" }, message.text) : null,
      ),
      timed || seen
        ? h(
            "div",
            { class: "msg-meta" },
            h("time", { datetime: message.created_at, title: new Date(message.created_at).toLocaleString() }, timeOfDay(message.created_at)),
            seen ? h("span", { class: "seen" }, icon("check"), "Seen") : null,
          )
        : null,
    );
  }

  pendingBubble(send) {
    const failed = send.state === "failed";
    const status = { uploading: "Uploading…", sending: "Sending…", failed: `Not sent: ${send.error ?? "error"}` }[send.state];
    return h(
      "div",
      { class: ["msg", "msg-out", "msg-pending", failed && "msg-failed"], dataset: { pending: send.client_msg_id } },
      h(
        "div",
        { class: "bubble" },
        send.kind === "text"
          ? h("div", { class: "msg-text" }, send.text)
          : h("div", { class: "file-card" }, h("span", { class: "file-icon" }, icon("file")), h("span", { class: "file-main" }, h("span", { class: "file-name" }, send.name ?? "file"), h("span", { class: "file-size" }, fileSize(send.size)))),
      ),
      h(
        "div",
        { class: "msg-meta" },
        h("span", {}, status),
        failed
          ? [
              h("button", { type: "button", class: "link-button", onclick: () => this.desk.retry(send.client_msg_id) }, "Retry"),
              h("button", { type: "button", class: "link-button", onclick: () => this.desk.discard(send.client_msg_id) }, "Discard"),
            ]
          : null,
      ),
    );
  }

  attachment(message) {
    const media = message.media;
    const name = media.name || "attachment";
    if (message.kind === "image" || (media.mime ?? "").startsWith("image/")) {
      const img = h("img", { class: "msg-image", alt: name, loading: "lazy" });
      if (media.width && media.height) {
        const width = Math.min(320, media.width);
        img.width = width;
        img.height = Math.round((media.height / media.width) * width);
      }
      const link = h("a", { class: "image-link", target: "_blank", rel: "noopener", title: `${name} · open full size` }, img);
      this.desk
        .mediaUrl(media)
        .then((url) => {
          img.src = url;
          link.href = url;
          img.addEventListener("load", () => this.stickToBottom(), { once: true });
        })
        .catch(() => fill(link, h("span", { class: "media-error" }, "Image unavailable")));
      return link;
    }
    if (message.kind === "audio") {
      const audio = h("audio", { controls: true, preload: "none", class: "msg-audio" });
      this.desk.mediaUrl(media).then((url) => (audio.src = url)).catch(() => undefined);
      return h("div", { class: "audio-card" }, audio, h("span", { class: "file-size" }, name));
    }
    return h(
      "button",
      { type: "button", class: "file-card file-download", title: `Download ${name}`, onclick: () => this.download(media) },
      h("span", { class: "file-icon" }, icon("file")),
      h("span", { class: "file-main" }, h("span", { class: "file-name" }, name), h("span", { class: "file-size" }, [fileSize(media.size), media.mime].filter(Boolean).join(" · "))),
      h("span", { class: "file-get" }, icon("download")),
    );
  }

  async download(media) {
    try {
      const url = await this.desk.mediaUrl(media);
      const link = h("a", { href: url, download: media.name || "attachment", hidden: true });
      document.body.append(link);
      link.click();
      link.remove();
    } catch (error) {
      toast(describe(error), "error");
    }
  }

  stickToBottom() {
    const box = this.scroll;
    if (box.scrollHeight - box.scrollTop - box.clientHeight < 400) box.scrollTop = box.scrollHeight;
  }

  // --- composing ---------------------------------------------------------------------------

  focusComposer() {
    if (!this.textarea.disabled) this.textarea.focus();
  }

  insert(text) {
    const area = this.textarea;
    if (area.disabled) return;
    const start = area.selectionStart ?? area.value.length;
    const end = area.selectionEnd ?? area.value.length;
    area.setRangeText(text, start, end, "end");
    area.focus();
    this.onInput();
  }

  onInput() {
    this.autosize();
    const ticket = this.desk.active;
    if (ticket && this.canSend && this.textarea.value.trim()) this.desk.typed(ticket.conv_id);
  }

  autosize() {
    const area = this.textarea;
    area.style.height = "auto";
    area.style.height = `${Math.min(area.scrollHeight, 200)}px`;
  }

  onComposerKey(event) {
    if (event.key === "Enter" && !event.shiftKey && !event.isComposing && !event.altKey) {
      event.preventDefault();
      this.send();
    }
  }

  onPaste(event) {
    const files = [...(event.clipboardData?.files ?? [])];
    if (files.length > 0 && this.canSend) {
      event.preventDefault();
      this.sendFiles(files);
    }
  }

  send() {
    const ticket = this.desk.active;
    const text = this.textarea.value.trim();
    if (!ticket || !this.canSend || !text) return;
    if (text.length > MAX_TEXT) {
      toast(`A message holds at most ${MAX_TEXT} characters.`, "warning");
      return;
    }
    this.desk.sendText(ticket.conv_id, text);
    this.textarea.value = "";
    this.drafts.delete(ticket.ticket_id);
    this.autosize();
    this.textarea.focus();
  }

  sendFiles(files) {
    const ticket = this.desk.active;
    if (!ticket || !this.canSend) return;
    for (const file of files) this.desk.sendFile(ticket.conv_id, file);
  }
}
