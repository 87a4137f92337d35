// ferry console: a small page that reads the JSON API and acts through it. Every value that
// comes from a message (headers, bodies, fault texts) is put in the page as text
// (textContent), never as HTML: a dead letter cannot inject markup or script.
"use strict";

// `seq` names the page being shown: a view that finishes loading after the user moved on
// (or a refresh timer of a page left) does not draw over the page now shown.
const state = { role: null, csrf: null, timer: null, seq: 0 };

// el("td", {class: "num"}, "3"): an element; strings become text nodes.
function el(tag, attrs, ...children) {
  const node = document.createElement(tag);
  for (const [key, value] of Object.entries(attrs || {})) {
    if (value === undefined || value === null || value === false) continue;
    if (key.startsWith("on")) node.addEventListener(key.slice(2), value);
    else if (key === "dataset") Object.assign(node.dataset, value);
    else node.setAttribute(key, value === true ? "" : String(value));
  }
  for (const child of children.flat()) {
    if (child === null || child === undefined) continue;
    node.append(child instanceof Node ? child : document.createTextNode(String(child)));
  }
  return node;
}

function show(seq, ...nodes) {
  if (seq !== state.seq) return;
  const view = document.getElementById("view");
  view.replaceChildren(...nodes);
}

function time(value) {
  if (!value) return "—";
  const d = new Date(value);
  return isNaN(d) ? String(value) : d.toLocaleString();
}

async function api(path, body) {
  const options = { headers: { "Accept": "application/json" }, credentials: "same-origin" };
  if (body !== undefined) {
    options.method = "POST";
    options.headers["Content-Type"] = "application/json";
    if (state.csrf) options.headers["X-CSRF-Token"] = state.csrf;
    options.body = JSON.stringify(body);
  }
  const response = await fetch(path, options);
  if (response.status === 401) {
    window.location.assign("/sign-in");
    throw new Error("signed out");
  }
  const data = await response.json().catch(() => ({}));
  if (!response.ok) throw new Error(data.error || ("HTTP " + response.status));
  return data;
}

function feedback(text, isError) {
  const box = document.getElementById("feedback");
  box.textContent = text;
  box.className = isError ? "error" : "";
  box.hidden = false;
  clearTimeout(feedback.timer);
  feedback.timer = setTimeout(() => { box.hidden = true; }, 6000);
}

// Asks before an action; resolves true when confirmed.
function confirmAction(text) {
  const dialog = document.getElementById("confirm");
  document.getElementById("confirm-text").textContent = text;
  return new Promise((resolve) => {
    dialog.addEventListener("close", () => resolve(dialog.returnValue === "ok"), { once: true });
    dialog.returnValue = "";
    dialog.showModal();
  });
}

function canAct() { return state.role === "operator"; }

function actionButton(label, cls, onclick) {
  return el("button", { class: cls, type: "button", disabled: !canAct(),
    title: canAct() ? null : "the read token may not act", onclick }, label);
}

async function act(question, path, body, key, total, after) {
  if (!(await confirmAction(question))) return;
  try {
    const result = await api(path, body);
    const n = result[key];
    const verb = key.charAt(0).toUpperCase() + key.slice(1);
    feedback(total === undefined ? `${verb} ${n}.` : `${verb} ${n} of ${total}.`, n === 0 && total > 0);
  } catch (e) {
    feedback("Failed: " + e.message, true);
  }
  if (after) await after();
}

// --- overview ---------------------------------------------------------------------------------

function card(label, value, warn) {
  return el("div", { class: "card" + (warn ? " warn" : "") },
    el("div", { class: "label" }, label), el("div", { class: "value" }, value));
}

function chart(title, points, key, cls) {
  const ns = "http://www.w3.org/2000/svg";
  const svg = document.createElementNS(ns, "svg");
  const width = 600, height = 120, pad = 4;
  svg.setAttribute("viewBox", `0 0 ${width} ${height}`);
  svg.setAttribute("preserveAspectRatio", "none");
  svg.setAttribute("role", "img");
  const max = Math.max(1, ...points.map((p) => p[key]));
  const step = width / Math.max(1, points.length);
  points.forEach((p, i) => {
    const h = (p[key] / max) * (height - pad * 2);
    const bar = document.createElementNS(ns, "rect");
    bar.setAttribute("class", "bar " + cls);
    bar.setAttribute("x", String(i * step + 1));
    bar.setAttribute("y", String(height - pad - h));
    bar.setAttribute("width", String(Math.max(1, step - 2)));
    bar.setAttribute("height", String(h));
    const tip = document.createElementNS(ns, "title");
    tip.textContent = `${time(p.minute)}: ${p[key]}`;
    bar.append(tip);
    svg.append(bar);
  });
  const axis = document.createElementNS(ns, "line");
  axis.setAttribute("class", "axis");
  axis.setAttribute("x1", "0"); axis.setAttribute("x2", String(width));
  axis.setAttribute("y1", String(height - pad)); axis.setAttribute("y2", String(height - pad));
  svg.append(axis);
  const total = points.reduce((sum, p) => sum + p[key], 0);
  const last = points.length ? points[points.length - 1][key] : 0;
  return el("div", { class: "chart", "data-chart": key },
    el("h3", {}, `${title} — ${last}/min now, ${total} in ${points.length} min (max ${max}/min)`), svg);
}

async function overview() {
  const seq = state.seq;
  const [o, rates] = await Promise.all([api("/api/overview"), api("/api/rates?minutes=30")]);
  const age = o.outbox.oldest_pending_age_s;
  show(seq, 
    el("h1", {}, "Overview"),
    el("div", { class: "cards" },
      card("outbox pending", o.outbox.pending),
      card("outbox dead", o.outbox.dead, o.outbox.dead > 0),
      card("outbox published", o.outbox.published),
      card("oldest pending", age === null ? "—" : `${age.toFixed(1)} s`, age !== null && age > 60),
      card("dead letters", o.dead_letters.dead, o.dead_letters.dead > 0),
      card("groups", o.dead_letters.groups),
      card("replayed", o.dead_letters.replayed),
      card("deleted", o.dead_letters.deleted)),
    el("h2", {}, "Rates, last 30 minutes"),
    el("div", { class: "charts" },
      chart("Published", rates, "published", ""),
      chart("Dead-lettered", rates, "dead_lettered", "dead"),
      chart("Handled (inbox)", rates, "handled", "handled")),
    el("h2", {}, "Queues"),
    o.queues.length === 0 ? el("p", { class: "muted" }, "No queues (name some with --queue).") :
      el("table", { id: "queues" },
        el("thead", {}, el("tr", {}, el("th", {}, "queue"), el("th", { class: "num" }, "ready"),
          el("th", { class: "num" }, "consumers"))),
        el("tbody", {}, o.queues.map((q) => el("tr", {},
          el("td", {}, el("code", {}, q.name)),
          el("td", { class: "num" }, q.ready === null ? "?" : q.ready),
          el("td", { class: "num" }, q.consumers === null ? "?" : q.consumers))))));
}

// --- dead letters -----------------------------------------------------------------------------

async function groups() {
  const seq = state.seq;
  const list = await api("/api/dead-letters/groups");
  const rows = list.map((g) => el("tr", { class: "group", dataset: { group: g.group } },
    el("td", {}, el("span", { class: "kind" }, g.fault_kind)),
    el("td", {}, el("code", {}, g.queue || "—")),
    el("td", {}, g.event_type || "—"),
    el("td", { class: "msg" }, g.fault_message),
    el("td", { class: "num count" }, g.count),
    el("td", {}, time(g.first_failed_at)),
    el("td", {}, time(g.last_failed_at)),
    el("td", {}, el("div", { class: "actions" },
      el("a", { href: "#/group/" + encodeURIComponent(g.group), class: "open-group" }, "messages"),
      actionButton("Replay", "primary replay-group", () => act(
        `Replay all ${g.count} dead letters of this group to ${g.queue || "their queue"}?`,
        "/api/dead-letters/replay", { group: g.group }, "replayed", g.count, groups)),
      actionButton("Delete", "danger delete-group", () => act(
        `Delete all ${g.count} dead letters of this group? (soft: they stay in the table)`,
        "/api/dead-letters/delete", { group: g.group }, "deleted", g.count, groups))))));
  show(seq, el("h1", {}, "Dead letters"),
    el("p", { class: "muted" }, "Grouped by fault kind, queue, event type and fault message (ids and numbers taken out)."),
    list.length === 0 ? el("p", { id: "no-groups" }, "No dead letters.") :
      el("table", { id: "groups" },
        el("thead", {}, el("tr", {}, ["kind", "queue", "event type", "fault", "count", "first", "last", ""]
          .map((h) => el("th", { class: h === "count" ? "num" : null }, h)))),
        el("tbody", {}, rows)));
}

async function group(key) {
  const seq = state.seq;
  const list = await api(`/api/dead-letters?group=${encodeURIComponent(key)}&status=dead&limit=500`);
  const boxes = [];
  const rows = list.map((d) => {
    const box = el("input", { type: "checkbox", value: d.id, "aria-label": "select" });
    boxes.push(box);
    return el("tr", { class: "message" },
      el("td", {}, box),
      el("td", {}, el("a", { href: "#/message/" + encodeURIComponent(d.id) }, d.message_id || d.id)),
      el("td", {}, d.event_type || "—"),
      el("td", { class: "msg" }, d.fault_message),
      el("td", { class: "num" }, d.attempts),
      el("td", {}, time(d.failed_at)));
  });
  const selected = () => boxes.filter((b) => b.checked).map((b) => b.value);
  const again = () => group(key);
  show(seq, el("h1", {}, "Group"), el("p", {}, el("a", { href: "#/dead-letters" }, "← all groups")),
    el("div", { class: "actions" },
      actionButton("Replay selected", "primary replay-selected", () => {
        const ids = selected();
        if (ids.length === 0) return feedback("Select messages first.", true);
        return act(`Replay ${ids.length} selected dead letters?`, "/api/dead-letters/replay", { ids }, "replayed", ids.length, again);
      }),
      actionButton("Delete selected", "danger delete-selected", () => {
        const ids = selected();
        if (ids.length === 0) return feedback("Select messages first.", true);
        return act(`Delete ${ids.length} selected dead letters?`, "/api/dead-letters/delete", { ids }, "deleted", ids.length, again);
      }),
      el("span", { class: "muted" }, `${list.length} dead`)),
    el("table", { id: "messages" },
      el("thead", {}, el("tr", {}, ["", "message", "event type", "fault", "attempts", "failed at"]
        .map((h) => el("th", {}, h)))),
      el("tbody", {}, rows)));
}

function bodyView(d) {
  if (d.body_encoding === "base64") {
    const bytes = Uint8Array.from(atob(d.body), (c) => c.charCodeAt(0));
    const lines = [];
    for (let i = 0; i < bytes.length; i += 16) {
      const chunk = Array.from(bytes.slice(i, i + 16));
      const hex = chunk.map((b) => b.toString(16).padStart(2, "0")).join(" ");
      const ascii = chunk.map((b) => (b >= 32 && b < 127 ? String.fromCharCode(b) : ".")).join("");
      lines.push(`${i.toString(16).padStart(8, "0")}  ${hex.padEnd(47)}  ${ascii}`);
    }
    return [el("p", { class: "muted" }, `binary body, ${bytes.length} bytes (not UTF-8):`),
      el("pre", { id: "body", class: "binary" }, lines.join("\n"))];
  }
  let text = d.body;
  try { text = JSON.stringify(JSON.parse(d.body), null, 2); } catch (_) { /* not JSON: as is */ }
  return [el("pre", { id: "body" }, text)];
}

async function message(id) {
  const seq = state.seq;
  const d = await api("/api/dead-letters/" + encodeURIComponent(id));
  const field = (k, v) => [el("dt", {}, k), el("dd", {}, v === null || v === undefined ? "—" : String(v))];
  const again = () => message(id);
  show(seq, el("h1", {}, "Dead letter"),
    el("p", {}, el("a", { href: "#/dead-letters" }, "← groups")),
    el("dl", { class: "fields" },
      field("id", d.id), field("message id", d.message_id), field("event type", d.event_type),
      field("queue", d.queue), field("routing key", d.routing_key), field("fault", `${d.fault_kind}: ${d.fault_message}`),
      field("attempts", d.attempts), field("failed at", time(d.failed_at)),
      [el("dt", {}, "status"), el("dd", { class: "status-" + d.status, id: "status" }, d.status)]),
    el("div", { class: "actions" },
      actionButton("Replay", "primary replay-one", () => act("Replay this dead letter?",
        "/api/dead-letters/replay", { ids: [d.id] }, "replayed", 1, again)),
      actionButton("Delete", "danger delete-one", () => act("Delete this dead letter?",
        "/api/dead-letters/delete", { ids: [d.id] }, "deleted", 1, again))),
    el("h2", {}, "Headers"),
    el("table", { id: "headers" }, el("tbody", {}, Object.entries(d.headers).map(([k, v]) =>
      el("tr", {}, el("td", {}, el("code", {}, k)),
        el("td", { class: "msg" }, typeof v === "string" ? v : JSON.stringify(v)))))),
    el("h2", {}, "Body"), ...bodyView(d));
}

// --- outbox and audit -------------------------------------------------------------------------

async function outbox(status) {
  const seq = state.seq;
  const filter = status || "";
  const [o, rows, stuck] = await Promise.all([
    api("/api/overview"),
    api(`/api/outbox?limit=100${filter ? "&status=" + filter : ""}`),
    api("/api/outbox/stuck")]);
  const select = el("select", { id: "outbox-status", onchange: (e) => outbox(e.target.value) },
    ["", "pending", "published", "dead"].map((s) => el("option", { value: s, selected: s === filter }, s || "every status")));
  const table = (list, extra) => el("table", {},
    el("thead", {}, el("tr", {}, ["id", "event type", "routing key", "status", "attempts", "last error", "created", "published", ...extra.map((e) => e[0])]
      .map((h) => el("th", {}, h)))),
    el("tbody", {}, list.map((r) => el("tr", {},
      el("td", {}, el("code", {}, r.id)), el("td", {}, r.event_type), el("td", {}, el("code", {}, r.routing_key)),
      el("td", { class: "status-" + r.status }, r.status), el("td", { class: "num" }, r.attempts),
      el("td", { class: "msg" }, r.last_error || "—"), el("td", {}, time(r.created_at)), el("td", {}, time(r.published_at)),
      ...extra.map((e) => el("td", {}, e[1](r)))))));
  show(seq, el("h1", {}, "Outbox"),
    el("div", { class: "cards" }, card("pending", o.outbox.pending), card("dead", o.outbox.dead, o.outbox.dead > 0),
      card("published", o.outbox.published)),
    el("div", { class: "actions" },
      actionButton(`Retry all ${o.outbox.dead} dead rows`, "primary retry-dead", () => act(
        `Retry all ${o.outbox.dead} dead outbox rows (back to pending, attempts reset)?`,
        "/api/outbox/retry", { all_dead: true }, "retried", o.outbox.dead, () => outbox(filter)))),
    el("h2", {}, "Stuck rows"),
    stuck.length === 0 ? el("p", { class: "muted" }, "None: no pending row with an expired lease or repeated failures.") :
      table(stuck, [["why", (r) => r.reason], ["next attempt", (r) => time(r.next_attempt_at)]]),
    el("h2", {}, "Rows"), el("div", { class: "actions" }, "Status ", select),
    table(rows, []));
}

async function audit() {
  const seq = state.seq;
  const rows = await api("/api/audit?limit=200");
  show(seq, el("h1", {}, "Audit"),
    rows.length === 0 ? el("p", { class: "muted" }, "No actions yet.") :
      el("table", { id: "audit" },
        el("thead", {}, el("tr", {}, ["at", "role", "action", "target", "count"].map((h) => el("th", {}, h)))),
        el("tbody", {}, rows.map((a) => el("tr", {}, el("td", {}, time(a.at)), el("td", {}, a.role),
          el("td", {}, a.action), el("td", { class: "msg" }, el("code", {}, a.target)), el("td", { class: "num" }, a.count))))));
}

// --- routing ----------------------------------------------------------------------------------

async function route() {
  clearInterval(state.timer);
  const seq = ++state.seq;
  const hash = window.location.hash.replace(/^#/, "") || "/";
  const [, view, arg] = hash.split("/");
  const name = view || "overview";
  for (const link of document.querySelectorAll("header nav a")) {
    const active = link.dataset.view === name || (name === "group" || name === "message") && link.dataset.view === "dead-letters";
    link.classList.toggle("active", active);
  }
  try {
    if (name === "overview") {
      await overview();
      if (seq === state.seq) state.timer = setInterval(() => overview().catch(() => {}), 5000);
    } else if (name === "dead-letters") await groups();
    else if (name === "group") await group(decodeURIComponent(arg || ""));
    else if (name === "message") await message(decodeURIComponent(arg || ""));
    else if (name === "outbox") await outbox();
    else if (name === "audit") await audit();
    else show(seq, el("p", {}, "No such page."));
  } catch (e) {
    show(seq, el("p", { class: "status-dead" }, "Cannot load: " + e.message));
  }
}

async function start() {
  const session = await api("/api/session");
  state.role = session.role;
  state.csrf = session.csrf;
  document.getElementById("role").textContent = session.role === "operator" ? "operator" : "read only";
  document.getElementById("sign-out").hidden = session.csrf === null;
  window.addEventListener("hashchange", route);
  await route();
}

start().catch((e) => show(state.seq, el("p", { class: "status-dead" }, "Cannot start: " + e.message)));
