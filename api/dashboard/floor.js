// The supervisor's floor: every operator's status, connection and load, the
// queue, and the wait figures, live from the retained `ops/floor` and `ops/queue`.

import { avatar, fill, h } from "./dom.js";
import { duration, STATUS_LABEL } from "./format.js";
import { empty, priorityChip, statusDot, ticking } from "./ui.js";

export class FloorView {
  constructor(desk) {
    this.desk = desk;
    this.stats = h("div", { class: "stats" });
    this.operators = h("div", { class: "table-wrap" });
    this.queue = h("div", { class: "table-wrap" });
    this.operatorCount = h("span", { class: "count" });
    this.queueCount = h("span", { class: "count" });
    this.updated = h("span", { class: "section-meta" });
    this.el = h(
      "div",
      { class: "floor", id: "floor" },
      h(
        "header",
        { class: "floor-head" },
        h("h1", {}, "Floor"),
        h("p", { class: "muted" }, "Operators, load and waits, as they change. Figures cover the last hour."),
        this.updated,
      ),
      this.stats,
      h(
        "div",
        { class: "floor-grid" },
        h(
          "section",
          { class: "card", "aria-labelledby": "floor-operators" },
          h("header", { class: "section-head" }, h("h2", { id: "floor-operators" }, "Operators"), this.operatorCount),
          this.operators,
        ),
        h(
          "section",
          { class: "card", "aria-labelledby": "floor-queue" },
          h("header", { class: "section-head" }, h("h2", { id: "floor-queue" }, "Queue"), this.queueCount),
          this.queue,
        ),
      ),
    );
    desk.on("floor", () => this.renderFloor());
    desk.on("queue", () => this.renderQueue());
    this.renderFloor();
    this.renderQueue();
  }

  renderFloor() {
    const floor = this.desk.floor;
    if (!floor) {
      fill(this.operators, h("p", { class: "list-loading" }, "Loading the floor…"));
      return;
    }
    const s = floor.stats;
    const card = (label, value, hint) =>
      h("div", { class: "stat" }, h("span", { class: "stat-value" }, value), h("span", { class: "stat-label" }, label), hint ? h("span", { class: "stat-hint" }, hint) : null);
    const online = floor.operators.filter((o) => o.status === "online" && o.connected);
    const capacity = online.reduce((sum, o) => sum + o.capacity, 0);
    const load = online.reduce((sum, o) => sum + o.open_chats, 0);
    fill(
      this.stats,
      card("Waiting now", String(s.waiting_now), s.longest_wait_seconds ? `longest ${duration(s.longest_wait_seconds)}` : "nobody waiting"),
      card("Online operators", String(online.length), online.length ? `${load} of ${capacity} chats in use` : "no one online"),
      card("Median wait", duration(s.median_wait_seconds), `p90 ${duration(s.p90_wait_seconds)}`),
      card("Median first reply", duration(s.median_first_response_seconds)),
      card("Assigned", String(s.assigned_last_hour), "last hour"),
      card("Closed", String(s.closed_last_hour), "last hour"),
      card("Average rating", s.average_rating === null ? "—" : `${s.average_rating.toFixed(1)} ★`),
    );
    fill(this.updated, floor.updated_at ? ["Updated ", ticking("relative", floor.updated_at)] : null);
    this.operatorCount.textContent = String(floor.operators.length);
    if (floor.operators.length === 0) {
      fill(this.operators, empty("users", "No operators yet", "Create them with the admin command or the API."));
      return;
    }
    const order = { online: 0, away: 1, offline: 2 };
    const operators = [...floor.operators].sort(
      (a, b) => order[a.status] - order[b.status] || Number(b.connected) - Number(a.connected) || a.name.localeCompare(b.name),
    );
    fill(
      this.operators,
      h(
        "table",
        { class: "table", id: "floor-operators-table" },
        h("thead", {}, h("tr", {}, h("th", {}, "Operator"), h("th", {}, "Status"), h("th", {}, "Connection"), h("th", {}, "Load"), h("th", {}, "Last assigned"))),
        h(
          "tbody",
          {},
          operators.map((o) =>
            h(
              "tr",
              { dataset: { operator: o.id } },
              h("td", {}, h("span", { class: "person" }, avatar({ id: o.id, name: o.name }, "avatar-small"), h("span", {}, o.name), o.supervisor ? h("span", { class: "badge" }, "supervisor") : null, o.id === this.desk.me.id ? h("span", { class: "badge" }, "you") : null)),
              h("td", {}, h("span", { class: ["state", `op-${o.status}`] }, statusDot(o.status), STATUS_LABEL[o.status] ?? o.status)),
              h("td", {}, h("span", { class: ["conn", o.connected ? "conn-on" : "conn-off"] }, o.connected ? "Connected" : "Not connected")),
              h("td", {}, loadBar(o.open_chats, o.capacity, o.available)),
              h("td", { class: "muted" }, o.last_assigned_at ? ticking("relative", o.last_assigned_at) : "never"),
            ),
          ),
        ),
      ),
    );
  }

  renderQueue() {
    const tickets = this.desk.queue;
    if (tickets === null) {
      fill(this.queue, h("p", { class: "list-loading" }, "Loading the queue…"));
      return;
    }
    this.queueCount.textContent = String(tickets.length);
    if (tickets.length === 0) {
      fill(this.queue, empty("inbox", "No one is waiting", "Every ticket has an operator."));
      return;
    }
    fill(
      this.queue,
      h(
        "table",
        { class: "table" },
        h("thead", {}, h("tr", {}, h("th", {}, "#"), h("th", {}, "Priority"), h("th", {}, "Subject"), h("th", {}, "Customer"), h("th", { class: "num" }, "Waiting"))),
        h(
          "tbody",
          {},
          tickets.map((t) =>
            h(
              "tr",
              { dataset: { ticket: t.ticket_id } },
              h("td", { class: "muted" }, String(t.position ?? "–")),
              h("td", {}, priorityChip(t, { compact: true })),
              h("td", { class: "cell-subject", title: t.subject }, t.subject, t.escalations > 0 ? h("span", { class: "badge badge-warn" }, `↑${t.escalations}`) : null),
              h("td", {}, t.user.name),
              h("td", { class: "num" }, ticking("wait", t.queued_at ?? t.created_at)),
            ),
          ),
        ),
      ),
    );
  }
}

function loadBar(open, capacity, available) {
  const ratio = capacity > 0 ? Math.min(1, open / capacity) : 1;
  return h(
    "span",
    { class: "load-cell", title: available ? "Can be given chats now" : "Not given chats now" },
    h("span", { class: ["load-bar", ratio >= 1 && "full"] }, h("span", { class: "load-fill", style: { width: `${Math.round(ratio * 100)}%` } })),
    h("span", { class: "load-text" }, `${open} / ${capacity}`),
  );
}
