// Small pieces of interface shared by the views: notices, dialogs, the ticker.

import { fill, h, icon } from "./dom.js";
import { TICKS, secondsUntil } from "./format.js";

// --- notices -------------------------------------------------------------------------------

/** A short notice in the corner; `kind`: info, success, warning, error. */
export function toast(message, kind = "info", ms = 5000) {
  const box = document.getElementById("toasts");
  if (!box) return;
  const note = h(
    "div",
    { class: ["toast", `toast-${kind}`] },
    h("span", { class: "toast-text" }, message),
    h("button", { class: "toast-close", type: "button", "aria-label": "Dismiss", onclick: () => note.remove() }, icon("close")),
  );
  box.append(note);
  setTimeout(() => note.remove(), ms);
}

/** What an error from the client library or the API says, for people. */
export function describe(error) {
  if (!error) return "Something went wrong.";
  const messages = {
    invalid_credentials: "Wrong username or password.",
    not_queued: "This chat is no longer waiting: someone else took it.",
    at_capacity: "You are at your capacity: close a chat first.",
    closed: "This chat is already closed.",
    operator_unavailable: "Not available: you (or the operator you chose) must be online or away, and connected.",
    forbidden: "You are not allowed to do that.",
    not_found: "It is not there any more.",
    too_large: "That is too large to send.",
    rate_limited: "Too many messages at once: wait a moment.",
    unavailable: "The server is briefly unavailable: try again.",
    not_member: "You are no longer in this conversation.",
  };
  if (error.code && messages[error.code]) return messages[error.code];
  if (error.name === "TimeoutError") return "No answer from the server in time.";
  if (error.name === "NotConnectedError") return "Not connected right now: it will go out when the connection is back.";
  if (error.name === "TypeError") return "The server cannot be reached.";
  return error.message || String(error);
}

// --- dialogs -------------------------------------------------------------------------------

/**
 * A modal built from `content` (nodes); resolves with what `done(value)` is
 * called with, or null when dismissed (Esc, Cancel, a click outside).
 */
export function modal(title, build, { wide = false } = {}) {
  return new Promise((resolve) => {
    const dialog = h("dialog", { class: ["modal", wide && "modal-wide"], "aria-label": title });
    let settled = false;
    const done = (value) => {
      if (settled) return;
      settled = true;
      dialog.close();
      dialog.remove();
      resolve(value);
    };
    dialog.addEventListener("close", () => done(null));
    dialog.addEventListener("click", (event) => {
      if (event.target === dialog) done(null);
    });
    fill(
      dialog,
      h(
        "div",
        { class: "modal-head" },
        h("h2", {}, title),
        h("button", { class: "icon-button", type: "button", "aria-label": "Close", onclick: () => done(null) }, icon("close")),
      ),
      h("div", { class: "modal-body" }, build(done)),
    );
    document.body.append(dialog);
    dialog.showModal();
  });
}

/** Yes or no. */
export function confirmDialog(title, text, { confirm = "Confirm", danger = false } = {}) {
  return modal(title, (done) => {
    const yes = h("button", { class: ["button", danger ? "button-danger" : "button-primary"], type: "button", onclick: () => done(true) }, confirm);
    queueMicrotask(() => yes.focus());
    return [
      h("p", { class: "modal-text" }, text),
      h(
        "div",
        { class: "modal-actions" },
        h("button", { class: "button", type: "button", onclick: () => done(false) }, "Cancel"),
        yes,
      ),
    ];
  }).then((answer) => answer === true);
}

// --- the ticker ----------------------------------------------------------------------------

/**
 * A time shown as it runs: `<span data-tick="wait" data-at="...">`. One timer
 * for the page refreshes them all every second; `data-warn` (seconds) marks a
 * countdown as close, and past zero as late.
 */
export function ticking(format, iso, props = {}) {
  const el = h("span", { ...props, class: ["tick", props.class], dataset: { tick: format, at: iso ?? "" } });
  refresh(el, Date.now());
  return el;
}

function refresh(el, now) {
  const format = TICKS[el.dataset.tick];
  if (!format || !el.dataset.at) return;
  const text = format(el.dataset.at, now);
  if (el.textContent !== text) el.textContent = text;
  if (el.dataset.tick === "due") {
    const left = secondsUntil(el.dataset.at, now);
    el.classList.toggle("late", left < 0);
    el.classList.toggle("close", left >= 0 && left < Number(el.dataset.warn ?? 30));
  }
}

export function startTicker() {
  setInterval(() => {
    const now = Date.now();
    for (const el of document.querySelectorAll("[data-tick]")) refresh(el, now);
  }, 1000);
}

// --- chips ---------------------------------------------------------------------------------

export function priorityChip(ticket, { compact = false } = {}) {
  const shown = ticket.effective_priority ?? ticket.priority;
  const aged = shown !== ticket.priority;
  const label = { urgent: "Urgent", high: "High", normal: "Normal", low: "Low" }[shown] ?? shown;
  return h(
    "span",
    {
      class: ["chip", `prio-${shown}`, compact && "chip-compact"],
      title: aged ? `Raised from ${ticket.priority} while waiting` : `Priority: ${shown}`,
    },
    label,
    aged ? h("span", { class: "chip-aged", "aria-label": `raised from ${ticket.priority}` }, "↑") : null,
  );
}

export function statusDot(status, connected = true) {
  return h("span", {
    class: ["status-dot", `status-${status}`, !connected && "disconnected"],
    "aria-hidden": "true",
  });
}

/** An empty state: an icon, what is (not) there, and what to do about it. */
export function empty(iconName, title, text) {
  return h(
    "div",
    { class: "empty" },
    h("span", { class: "empty-icon" }, icon(iconName)),
    h("p", { class: "empty-title" }, title),
    text ? h("p", { class: "empty-text" }, text) : null,
  );
}
