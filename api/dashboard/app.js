// The operators' dashboard: sign-in, then the desk (and, for supervisors, the
// floor). The JavaScript client (served at ./client/) does the HTTP API and the
// broker connection; this page only shows and asks.

import { fill, h, icon } from "./dom.js";
import { DeskView } from "./desk.js";
import { FloorView } from "./floor.js";
import { STATUS_LABEL } from "./format.js";
import { Desk } from "./store.js";
import { confirmDialog, describe, startTicker, statusDot, toast } from "./ui.js";

const SESSION_KEY = "support-desk.session";
const root = document.getElementById("app");

/** The API's base URL: the dashboard is served at `<api>/dashboard/`. */
function apiBase() {
  return new URL("../", window.location.href).href.replace(/\/+$/, "");
}

function readSession() {
  try {
    const saved = JSON.parse(sessionStorage.getItem(SESSION_KEY) ?? "null");
    return saved && saved.token && saved.userId ? saved : null;
  } catch {
    return null;
  }
}

function writeSession(session) {
  sessionStorage.setItem(SESSION_KEY, JSON.stringify(session));
}

function forgetSession() {
  sessionStorage.removeItem(SESSION_KEY);
}

// --- one device per tab ------------------------------------------------------------------
// A duplicated tab inherits the session (sessionStorage is copied), device
// included; two connections with one client id would keep pushing each other
// off the broker. Tabs tell each other which device they use, and a tab whose
// device is taken registers its own.

const tabs = "BroadcastChannel" in window ? new BroadcastChannel("support-desk") : null;
let deviceInUse = null;
tabs?.addEventListener("message", (event) => {
  if (event.data?.type === "who-uses" && deviceInUse && event.data.deviceId === deviceInUse) {
    tabs.postMessage({ type: "in-use", deviceId: deviceInUse });
  }
});

function deviceTaken(deviceId) {
  if (!tabs) return Promise.resolve(false);
  return new Promise((resolve) => {
    const onMessage = (event) => {
      if (event.data?.type === "in-use" && event.data.deviceId === deviceId) finish(true);
    };
    const finish = (taken) => {
      clearTimeout(timer);
      tabs.removeEventListener("message", onMessage);
      resolve(taken);
    };
    const timer = setTimeout(() => finish(false), 300);
    tabs.addEventListener("message", onMessage);
    tabs.postMessage({ type: "who-uses", deviceId });
  });
}

// --- boot ----------------------------------------------------------------------------------

async function boot() {
  let lib;
  try {
    lib = await import("./client/index.js");
  } catch (error) {
    showMissingClient(error);
    return;
  }
  startTicker();
  const saved = readSession();
  if (!saved) {
    showLogin(lib);
    return;
  }
  try {
    await start(lib, saved);
  } catch (error) {
    if (error?.status === 401 || error?.code === "forbidden") forgetSession();
    showLogin(lib, error?.status === 401 ? "Your session ended: sign in again." : describe(error));
  }
}

function showMissingClient(error) {
  fill(
    root,
    h(
      "div",
      { class: "center-screen" },
      h(
        "div",
        { class: "card card-narrow notice", id: "client-missing" },
        h("h1", {}, "The dashboard cannot start"),
        h("p", {}, "Its JavaScript client is not built on this server. In the project, run:"),
        h("pre", { class: "code" }, "cd clients/js\nnpm ci\nnpm run build"),
        h("p", {}, "then reload this page."),
        h("p", { class: "muted small" }, String(error?.message ?? error)),
      ),
    ),
  );
}

// --- sign-in -------------------------------------------------------------------------------

function showLogin(lib, message = "") {
  const username = h("input", { class: "input", id: "username", name: "username", autocomplete: "username", required: true, autofocus: true });
  const password = h("input", { class: "input", id: "password", name: "password", type: "password", autocomplete: "current-password", required: true });
  const error = h("p", { class: "form-error", role: "alert" }, message);
  const submit = h("button", { class: "button button-primary button-block", type: "submit" }, "Sign in");
  const form = h(
    "form",
    {
      class: "card card-narrow login",
      onsubmit: async (event) => {
        event.preventDefault();
        submit.disabled = true;
        submit.textContent = "Signing in…";
        error.textContent = "";
        try {
          await signIn(lib, username.value.trim(), password.value);
        } catch (failure) {
          error.textContent = failure?.code === "forbidden" ? "This account is not an operator." : describe(failure);
          submit.disabled = false;
          submit.textContent = "Sign in";
          password.select();
        }
      },
    },
    h("div", { class: "brand brand-large" }, h("span", { class: "brand-mark" }, icon("chat")), h("span", {}, "Support desk")),
    h("p", { class: "muted" }, "Sign in with your operator account."),
    h("label", { class: "field", for: "username" }, h("span", {}, "Username"), username),
    h("label", { class: "field", for: "password" }, h("span", {}, "Password"), password),
    error,
    submit,
  );
  fill(root, h("div", { class: "center-screen" }, form));
  username.focus();
}

async function signIn(lib, username, password) {
  const http = new lib.ChatHttp(apiBase());
  const session = await http.login(username, password);
  // Operators only: anyone else is told so, and nothing is kept.
  const me = await http.myOperator();
  const device = await http.createDevice("web");
  const saved = { token: session.access_token, userId: session.user_id, device };
  writeSession(saved);
  await start(lib, saved, me);
}

// --- the signed-in page --------------------------------------------------------------------

async function start(lib, saved, knownMe) {
  const http = new lib.ChatHttp(apiBase(), { token: saved.token });
  http.userId = saved.userId;
  const me = knownMe ?? (await http.myOperator());
  if (!knownMe && (await deviceTaken(saved.device.device_id))) {
    saved.device = await http.createDevice("web");
    writeSession(saved);
  }
  deviceInUse = saved.device.device_id;
  const makeClient = (device) =>
    new lib.ChatClient({
      device,
      userId: saved.userId,
      http,
      operatorViews: { queue: true, floor: me.supervisor },
    });
  const desk = new Desk({ lib, http, client: makeClient(saved.device), me });
  const shell = new Shell(desk, () => signOut(lib, desk, saved));
  fill(root, shell.el);
  try {
    await desk.start();
  } catch (error) {
    if (error?.name !== "NotAuthorizedError") throw error;
    // This browser's device was removed: register a new one and connect with it.
    saved.device = await http.createDevice("web");
    writeSession(saved);
    deviceInUse = saved.device.device_id;
    desk.client = makeClient(saved.device);
    await desk.start();
  }
}

async function signOut(lib, desk, saved) {
  const open = desk.openTickets.length;
  const sure = await confirmDialog(
    "Sign out",
    open > 0
      ? `You go offline, and your ${open} open chat${open === 1 ? "" : "s"} go${open === 1 ? "es" : ""} back to the front of the queue.`
      : "You go offline and stop receiving chats.",
    { confirm: "Sign out" },
  );
  if (!sure) return;
  try {
    await desk.setStatus("offline");
  } catch {
    // Signing out goes on: the broker's Last Will and the grace period do the rest.
  }
  await desk.stop();
  await desk.http.deleteDevice(saved.device.device_id).catch(() => undefined);
  forgetSession();
  deviceInUse = null;
  showLogin(lib);
}

class Shell {
  constructor(desk, onSignOut) {
    this.desk = desk;
    this.view = "desk";
    this.deskView = new DeskView(desk);
    this.floorView = desk.me.supervisor ? new FloorView(desk) : null;
    this.connection = h("span", { class: "connection", id: "connection", role: "status" });
    this.statusBox = h("div", { class: "segmented", role: "radiogroup", "aria-label": "My status" });
    this.load = h("span", { class: "load-pill", title: "Open chats / capacity" });
    this.tabs = h("nav", { class: "tabs", "aria-label": "Views" });
    this.body = h("div", { class: "shell-body" });
    this.el = h(
      "div",
      { class: "shell" },
      h(
        "header",
        { class: "topbar" },
        h("div", { class: "brand" }, h("span", { class: "brand-mark" }, icon("chat")), h("span", {}, "Support desk")),
        this.tabs,
        h("div", { class: "topbar-spacer" }),
        this.connection,
        this.load,
        this.statusBox,
        h(
          "div",
          { class: "me" },
          h("span", { class: "me-name" }, desk.me.name),
          h("button", { type: "button", class: "icon-button", "aria-label": "Sign out", title: "Sign out", onclick: onSignOut }, icon("logout")),
        ),
      ),
      this.body,
    );
    desk.on("connection", () => this.renderConnection());
    desk.on("me", () => this.renderStatus());
    desk.on("tickets", () => this.renderLoad());
    desk.on("me", () => this.renderLoad());
    desk.on("active", () => this.showView("desk"));
    this.renderConnection();
    this.renderStatus();
    this.renderLoad();
    this.showView("desk");
  }

  showView(view) {
    if (view === "floor" && !this.floorView) view = "desk";
    if (this.view === view && this.body.firstChild) return;
    this.view = view;
    fill(this.body, view === "floor" ? this.floorView.el : this.deskView.el);
    const tab = (name, label) =>
      h(
        "button",
        {
          type: "button",
          class: ["tab", this.view === name && "active"],
          "aria-current": this.view === name ? "page" : undefined,
          onclick: () => this.showView(name),
        },
        label,
      );
    fill(this.tabs, this.floorView ? [tab("desk", "Desk"), tab("floor", "Floor")] : null);
  }

  renderConnection() {
    const state = this.desk.connection;
    const label = { connecting: "Connecting…", live: "Live", reconnecting: "Reconnecting…", offline: "Offline" }[state];
    this.connection.dataset.state = state;
    this.connection.title =
      state === "live" ? "Connected to the broker: updates arrive as they happen" : "Not connected: what you see may be out of date";
    fill(this.connection, h("span", { class: "connection-dot", "aria-hidden": "true" }), label);
  }

  renderLoad() {
    const open = this.desk.openTickets.length;
    const capacity = this.desk.me.capacity;
    this.load.textContent = `${open} / ${capacity} chats`;
    this.load.classList.toggle("full", open >= capacity);
  }

  renderStatus() {
    const current = this.desk.me.status;
    fill(
      this.statusBox,
      ["online", "away", "offline"].map((status) =>
        h(
          "button",
          {
            type: "button",
            role: "radio",
            class: ["segment", current === status && "active", `segment-${status}`],
            "aria-checked": current === status ? "true" : "false",
            dataset: { status },
            onclick: () => this.setStatus(status),
          },
          statusDot(status),
          STATUS_LABEL[status],
        ),
      ),
    );
  }

  async setStatus(status) {
    if (status === this.desk.me.status) return;
    const open = this.desk.openTickets.length;
    if (status === "offline" && open > 0) {
      const sure = await confirmDialog(
        "Go offline",
        `Your ${open} open chat${open === 1 ? "" : "s"} go${open === 1 ? "es" : ""} back to the front of the queue for other operators.`,
        { confirm: "Go offline", danger: true },
      );
      if (!sure) return;
    }
    try {
      await this.desk.setStatus(status);
      toast(`You are ${STATUS_LABEL[status].toLowerCase()}.`, "success", 2000);
    } catch (error) {
      toast(describe(error), "error");
    }
  }
}

boot();
