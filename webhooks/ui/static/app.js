// The operator inbox: conversations, timeline, replies, contact, leads board, reminders and a
// caller card, kept live by GET /api/events. Every text from the hub is inserted with
// textContent (never innerHTML); mail HTML only goes into a sandboxed iframe's srcdoc.
"use strict";

const token = sessionStorage.getItem("hub.token");
const me = JSON.parse(sessionStorage.getItem("hub.user") || "null");
if (!token || !me) location.replace("/login");

// Symbols every system font has (colour emoji fonts are not everywhere).
const ICONS = { telegram: "✈", twilio: "✆", whatsapp: "☏", email: "✉", form: "✎", pbx: "☎", voice: "☎" };
const state = {
  conversations: new Map(), // id -> conversation (with contact_name)
  names: new Map(), // contact id -> name
  current: null, // open conversation id
  contact: null, // open contact id
  unread: JSON.parse(localStorage.getItem("hub.unread") || "{}"), // conversation id -> count
  leads: new Map(),
  stages: ["new", "contacted", "qualified", "proposal"], // replaced by /api/pipelines
  lostReasons: [],
  reminders: new Map(),
};

// --- small helpers -----------------------------------------------------------------------

function $(id) {
  return document.getElementById(id);
}

// An element with attributes and children; strings become text nodes, never markup.
function el(tag, attrs = {}, ...children) {
  const node = document.createElement(tag);
  for (const [key, value] of Object.entries(attrs)) {
    if (value === null || value === undefined || value === false) continue;
    if (key === "class") node.className = value;
    else if (key === "text") node.textContent = value;
    else if (key.startsWith("on")) node.addEventListener(key.slice(2), value);
    else if (key === "dataset") Object.assign(node.dataset, value);
    else node.setAttribute(key, value === true ? "" : String(value));
  }
  for (const child of children.flat()) {
    if (child === null || child === undefined || child === false) continue;
    node.append(typeof child === "string" || typeof child === "number" ? String(child) : child);
  }
  return node;
}

class ApiError extends Error {
  constructor(status, body) {
    super(body.error || `HTTP ${status}`);
    this.status = status;
    this.body = body;
  }
}

async function api(method, path, body) {
  const headers = { Authorization: `Bearer ${token}`, Accept: "application/json" };
  if (body !== undefined) headers["Content-Type"] = "application/json";
  const response = await fetch(path, {
    method,
    headers,
    body: body === undefined ? undefined : JSON.stringify(body),
  });
  if (response.status === 401) {
    logout(false);
    throw new ApiError(401, { error: "your session has ended: log in again" });
  }
  const data = await response.json().catch(() => ({}));
  if (!response.ok) throw new ApiError(response.status, data);
  return data;
}

function show(errorNode, exc) {
  errorNode.textContent = exc ? (exc instanceof ApiError ? `${exc.message} (${exc.status})` : String(exc.message || exc)) : "";
}

function ago(iso) {
  const seconds = Math.max(0, (Date.now() - Date.parse(iso)) / 1000);
  if (seconds < 60) return "just now";
  if (seconds < 3600) return `${Math.floor(seconds / 60)}m`;
  if (seconds < 86400) return `${Math.floor(seconds / 3600)}h ${Math.floor((seconds % 3600) / 60)}m`;
  return `${Math.floor(seconds / 86400)}d`;
}

function clock(iso) {
  return new Date(iso).toLocaleString([], { dateStyle: "short", timeStyle: "short" });
}

function icon(channelType, channel) {
  const key = channel && channel.startsWith("whatsapp") ? "whatsapp" : channelType;
  return el("span", { class: "icon", title: channelType, "aria-label": channelType }, ICONS[key] || "•");
}

function assigneeLabel(id) {
  if (id === null || id === undefined) return "unassigned";
  return id === me.id ? "me" : `user #${id}`;
}

function toast(text) {
  const node = el("div", { class: "toast", text });
  $("toasts").append(node);
  setTimeout(() => node.remove(), 6000);
}

function logout(callApi = true) {
  if (callApi) fetch("/api/auth/logout", { method: "POST", headers: { Authorization: `Bearer ${token}` } });
  sessionStorage.removeItem("hub.token");
  sessionStorage.removeItem("hub.user");
  location.replace("/login");
}

function saveUnread() {
  localStorage.setItem("hub.unread", JSON.stringify(state.unread));
}

// Attachments and recordings need the bearer token: fetched as a blob, shown by object URL.
async function blobUrl(url) {
  const response = await fetch(url, { headers: { Authorization: `Bearer ${token}` } });
  if (!response.ok) throw new Error(`${response.status}`);
  return URL.createObjectURL(await response.blob());
}

async function contactName(id) {
  if (state.names.has(id)) return state.names.get(id);
  try {
    const contact = await api("GET", `/api/contacts/${id}`);
    state.names.set(id, contact.name || `contact #${id}`);
  } catch {
    state.names.set(id, `contact #${id}`);
  }
  return state.names.get(id);
}

// --- conversation list -------------------------------------------------------------------

function listFilters() {
  const params = new URLSearchParams({ limit: "100" });
  const status = $("filter-status").value;
  const assignee = $("filter-assignee").value;
  if (status) params.set("status", status);
  if (assignee) params.set("assignee", assignee);
  return params;
}

function matchesFilters(conv) {
  const status = $("filter-status").value;
  const assignee = $("filter-assignee").value;
  if (status && conv.status !== status) return false;
  if (assignee === "me" && conv.assignee_id !== me.id) return false;
  if (assignee === "none" && conv.assignee_id !== null) return false;
  return true;
}

async function loadConversations() {
  try {
    const page = await api("GET", `/api/conversations?${listFilters()}`);
    state.conversations.clear();
    for (const conv of page.items) {
      state.conversations.set(conv.id, conv);
      if (conv.contact_name) state.names.set(conv.contact_id, conv.contact_name);
    }
    renderConversations();
  } catch (exc) {
    show($("thread-error"), exc);
  }
}

function renderConversations() {
  const list = $("conversations");
  const rows = [...state.conversations.values()]
    .filter(matchesFilters)
    .sort((a, b) => Date.parse(b.last_message_at) - Date.parse(a.last_message_at) || b.id - a.id);
  list.replaceChildren(
    ...rows.map((conv) => {
      const unread = state.unread[conv.id] || 0;
      const name = conv.contact_name || state.names.get(conv.contact_id) || `contact #${conv.contact_id}`;
      return el(
        "li",
        { class: `conversation${conv.id === state.current ? " active" : ""}${unread ? " unread" : ""}`, dataset: { id: conv.id } },
        el(
          "a",
          { href: `#/c/${conv.id}` },
          icon(conv.channel_type, conv.channel),
          el("span", { class: "name", text: name }),
          unread ? el("span", { class: "badge unread-count", "aria-label": `${unread} unread`, text: String(unread) }) : null,
          el("span", { class: "meta" },
            el("span", { class: "assignee", text: assigneeLabel(conv.assignee_id) }),
            " · ",
            el("span", { class: "status", text: conv.status }),
            " · ",
            el("time", { class: "waiting", datetime: conv.last_message_at, title: `last message ${clock(conv.last_message_at)}`, text: ago(conv.last_message_at) }),
          ),
        ),
      );
    }),
  );
  $("conversations-empty").hidden = rows.length > 0;
}

async function upsertConversation(conv) {
  if (conv.contact_id === undefined) {
    // A conversation taken out of this operator's sight: only its id and assignee arrive.
    state.conversations.delete(conv.id);
    renderConversations();
    return;
  }
  const known = state.conversations.get(conv.id);
  const name = known?.contact_name || (await contactName(conv.contact_id));
  state.conversations.set(conv.id, { ...conv, contact_name: name });
  renderConversations();
  if (conv.id === state.current) renderThreadHead();
}

// --- timeline ----------------------------------------------------------------------------

function attachmentNode(att) {
  const label = [att.name || "file", att.content_type, att.size ? `${Math.ceil(att.size / 1024)} KB` : null]
    .filter(Boolean)
    .join(" · ");
  const node = el("li", { class: "attachment" });
  if (att.error) {
    node.append(el("span", { text: `${label}: ${att.error}` }));
  } else if (att.url && att.url.startsWith("/api/") && (att.content_type || "").startsWith("audio/")) {
    const audio = el("audio", { controls: true, preload: "none", "aria-label": label });
    node.append(audio, el("span", { class: "muted", text: label }));
    blobUrl(att.url).then((url) => (audio.src = url)).catch((exc) => node.append(` (${exc.message})`));
  } else if (att.url && att.url.startsWith("/api/")) {
    const button = el("button", { type: "button", class: "link", text: `↓ ${label}` });
    button.addEventListener("click", async () => {
      try {
        const url = await blobUrl(att.url);
        el("a", { href: url, download: att.name || "file" }).click();
      } catch (exc) {
        button.after(` (download failed: ${exc.message})`);
      }
    });
    node.append(button);
  } else {
    node.append(el("span", { text: `${label} (not downloaded yet)` }));
  }
  return node;
}

function recordingNode(url) {
  // A recording kept by the hub plays here; a provider URL needs the provider's login.
  if (url.startsWith("/api/")) {
    const audio = el("audio", { controls: true, preload: "none", "aria-label": "Call recording" });
    blobUrl(url).then((src) => (audio.src = src)).catch(() => {});
    return audio;
  }
  return el("a", { href: url, target: "_blank", rel: "noopener noreferrer", text: "Recording (at the provider)" });
}

function statusNode(item) {
  if (item.direction !== "out") return null;
  const text = item.error ? `${item.status}: ${item.error}` : item.status;
  return el("span", { class: `delivery ${item.status}`, "data-status": item.status, text });
}

function itemNode(item, withChannel = false) {
  const meta = item.meta || {};
  const head = el(
    "div",
    { class: "item-head" },
    withChannel ? icon(item.channel_type, item.channel) : null,
    withChannel ? el("span", { class: "muted", text: `${item.channel} ` }) : null,
    el("time", { datetime: item.created_at, text: clock(item.created_at) }),
    item.author_id ? el("span", { class: "muted", text: ` · by ${assigneeLabel(item.author_id)}` }) : null,
  );
  const node = el("li", { class: `item ${item.kind} ${item.direction}`, dataset: { id: item.id, kind: item.kind } }, head);
  if (item.kind === "call") {
    // The item's text is the call's summary ("Missed call (no answer), voicemail 0:12").
    const fallback = item.direction === "out" ? "Outgoing call" : "Incoming call";
    node.append(el("p", { class: "call-line", text: `☎ ${item.text || fallback}` }));
    for (const comment of meta.comments || []) node.append(el("p", { class: "muted", text: comment.text }));
    const kept = (item.attachments || []).some((a) => a.url && (a.content_type || "").startsWith("audio/"));
    if (meta.recording_url && !kept) node.append(recordingNode(String(meta.recording_url)));
  } else if (item.kind === "form") {
    node.append(el("p", { class: "form-line", text: `✎ Form ${meta.form_id || item.channel}` }));
    if (item.text) node.append(el("p", { class: "text", text: item.text }));
    const fields = Object.entries(meta).filter(([, v]) => typeof v === "string" || typeof v === "number");
    if (fields.length) {
      node.append(el("dl", { class: "details" }, fields.flatMap(([k, v]) => [el("dt", { text: k }), el("dd", { text: String(v) })])));
    }
  } else if (item.kind === "note") {
    node.append(el("p", { class: "note-label", text: "Internal note" }), el("p", { class: "text", text: item.text }));
  } else if (item.kind === "event") {
    node.append(el("p", { class: "text", text: item.text || meta.event || "event" }));
  } else {
    node.append(el("p", { class: "text", text: item.text }));
  }
  if (typeof meta.html === "string" && meta.html) {
    // Mail HTML: sandboxed (no scripts, no same-origin), and the page's CSP still applies.
    const frame = el("iframe", { class: "mail-html", sandbox: "", referrerpolicy: "no-referrer", title: "Original e-mail" });
    frame.srcdoc = meta.html;
    node.append(el("details", {}, el("summary", { text: "Original e-mail" }), frame));
  }
  if (item.attachments && item.attachments.length) {
    node.append(el("ul", { class: "attachments" }, item.attachments.map(attachmentNode)));
  }
  const status = statusNode(item);
  if (status) node.append(status);
  return node;
}

function upsertItem(list, item, withChannel = false) {
  const node = itemNode(item, withChannel);
  const old = list.querySelector(`:scope > li[data-id="${Number(item.id)}"]`);
  if (old) old.replaceWith(node);
  else {
    list.append(node);
    node.scrollIntoView({ block: "nearest" });
  }
}

async function loadAll(path) {
  const items = [];
  let cursor = null;
  do {
    const page = await api("GET", `${path}?limit=500${cursor ? `&cursor=${encodeURIComponent(cursor)}` : ""}`);
    items.push(...page.items);
    cursor = page.next_cursor;
  } while (cursor);
  return items;
}

function renderThreadHead() {
  const conv = state.conversations.get(state.current);
  if (!conv) return;
  $("thread-title").replaceChildren(icon(conv.channel_type, conv.channel), " ", conv.contact_name || `contact #${conv.contact_id}`);
  $("thread-sub").textContent = `${conv.channel} · ${conv.status} · ${assigneeLabel(conv.assignee_id)}`;
  $("open-contact").href = `#/contact/${conv.contact_id}`;
  $("close-conv").textContent = conv.status === "closed" ? "Reopen" : "Close";
  $("assign-me").hidden = conv.assignee_id === me.id;
  $("unassign").hidden = conv.assignee_id === null;
}

async function openConversation(id) {
  state.current = id;
  $("thread-empty").hidden = true;
  $("thread").hidden = false;
  show($("thread-error"), null);
  show($("reply-error"), null);
  $("timeline").replaceChildren();
  delete state.unread[id];
  saveUnread();
  try {
    if (!state.conversations.has(id)) {
      const conv = await api("GET", `/api/conversations/${id}`);
      state.conversations.set(id, { ...conv, contact_name: await contactName(conv.contact_id) });
    }
    renderConversations();
    renderThreadHead();
    const items = await loadAll(`/api/conversations/${id}/messages`);
    if (state.current !== id) return;
    for (const item of items) upsertItem($("timeline"), item);
  } catch (exc) {
    show($("thread-error"), exc);
  }
}

async function patchConversation(changes) {
  show($("thread-error"), null);
  try {
    const conv = await api("PATCH", `/api/conversations/${state.current}`, changes);
    await upsertConversation(conv);
  } catch (exc) {
    show($("thread-error"), exc);
  }
}

async function send(kind) {
  const box = $("reply-text");
  const text = box.value.trim();
  show($("reply-error"), null);
  if (!text) {
    $("reply-error").textContent = "Write something first.";
    return;
  }
  const id = state.current;
  try {
    const path = kind === "note" ? "notes" : "messages";
    const answer = await api("POST", `/api/conversations/${id}/${path}`, { text });
    box.value = "";
    if (kind === "reply" && !$("timeline").querySelector(`li[data-id="${Number(answer.id)}"]`)) {
      // Shown at once as queued; the live events move its status on.
      upsertItem($("timeline"), {
        id: answer.id, conversation_id: id, kind: "message", direction: "out", text,
        status: answer.status, created_at: new Date().toISOString(), attachments: [], meta: {},
        author_id: me.id, channel: "", channel_type: "",
      });
    } else if (kind === "note" && answer.id) {
      upsertItem($("timeline"), answer);
    }
  } catch (exc) {
    show($("reply-error"), exc);
  }
}

// --- contact -----------------------------------------------------------------------------

function detail(list, term, values) {
  const shown = values.filter((v) => v !== null && v !== undefined && v !== "");
  if (!shown.length) return;
  list.append(el("dt", { text: term }), ...shown.map((v) => el("dd", { text: String(v) })));
}

async function openContact(id) {
  state.contact = id;
  show($("contact-error"), null);
  $("contact-details").replaceChildren();
  $("contact-leads").replaceChildren();
  $("contact-timeline").replaceChildren();
  $("contact-back").href = state.current ? `#/c/${state.current}` : "#/";
  try {
    const contact = await api("GET", `/api/contacts/${id}`);
    if (state.contact !== id) return;
    state.names.set(id, contact.name);
    $("contact-name").textContent = contact.name || `contact #${id}`;
    const details = $("contact-details");
    detail(details, "Phones", contact.phones || []);
    detail(details, "E-mails", contact.emails || []);
    detail(details, "Telegram", (contact.telegram || []).map((t) => (t.username ? `@${t.username} (${t.id})` : String(t.id))));
    detail(details, "WhatsApp", contact.whatsapp || []);
    detail(details, "Company", [contact.company]);
    detail(details, "Tags", [(contact.tags || []).join(", ")]);
    for (const [key, value] of Object.entries(contact.custom_fields || {})) detail(details, key, [typeof value === "object" ? JSON.stringify(value) : value]);
    detail(details, "Since", [contact.created_at && clock(contact.created_at)]);
    $("contact-leads").replaceChildren(
      ...(contact.leads || []).map((lead) =>
        el("li", { class: "lead-line", text: `#${lead.id} · ${lead.source} · ${lead.stage} · ${lead.status}${lead.utm?.source ? ` · utm ${lead.utm.source}` : ""}` }),
      ),
    );
    const items = await loadAll(`/api/contacts/${id}/timeline`);
    for (const item of items) upsertItem($("contact-timeline"), item, true);
  } catch (exc) {
    show($("contact-error"), exc);
  }
}

// --- leads board -------------------------------------------------------------------------

async function moveLead(lead, changes, card) {
  const error = card.querySelector(".error");
  error.textContent = "";
  try {
    const updated = await api("PATCH", `/api/leads/${lead.id}`, changes);
    state.leads.set(updated.id, updated);
    renderBoard();
  } catch (exc) {
    error.textContent = `Could not move the lead: ${exc.message}${exc.status ? ` (${exc.status})` : ""}`;
    card.querySelector("select").value = lead.stage;
  }
}

function leadCard(lead) {
  const select = el(
    "select",
    { "aria-label": `Move lead ${lead.id}` },
    [...stageList(), "won", "lost"].map((stage) => el("option", { value: stage, text: stage, selected: stage === lead.stage })),
  );
  const reasons = el(
    "select",
    { "aria-label": `Why lead ${lead.id} was lost`, hidden: true },
    el("option", { value: "", text: "Why was it lost?" }),
    state.lostReasons.map((reason) => el("option", { value: reason, text: reason })),
  );
  const card = el(
    "li",
    { class: "lead-card", dataset: { id: lead.id } },
    el("a", { href: `#/contact/${lead.contact_id}`, class: "name", text: state.names.get(lead.contact_id) || `contact #${lead.contact_id}` }),
    el("p", { class: "muted", text: [lead.source, lead.channel || lead.form_id, lead.utm?.source && `utm ${lead.utm.source}`, ago(lead.created_at)].filter(Boolean).join(" · ") }),
    el("label", {}, "Stage ", select),
    reasons,
    el("p", { class: "error", role: "alert" }),
  );
  select.addEventListener("change", () => {
    if (select.value === "lost") {
      reasons.hidden = false; // a lost lead needs one of the pipeline's reasons first
      reasons.focus();
    } else if (select.value === "won") moveLead(lead, { status: "won" }, card);
    else moveLead(lead, { stage: select.value }, card);
  });
  reasons.addEventListener("change", () => {
    if (reasons.value) moveLead(lead, { status: "lost", lost_reason: reasons.value }, card);
  });
  return card;
}

function stageList() {
  const stages = [...state.stages];
  for (const lead of state.leads.values()) if (!stages.includes(lead.stage)) stages.push(lead.stage);
  return stages;
}

function renderBoard() {
  const open = [...state.leads.values()].filter((lead) => lead.status === "open");
  $("board").replaceChildren(
    ...stageList().map((stage) => {
      const cards = open.filter((lead) => lead.stage === stage).sort((a, b) => b.id - a.id);
      return el("section", { class: "column", dataset: { stage }, "aria-label": stage },
        el("h3", {}, stage, " ", el("span", { class: "badge", text: String(cards.length) })),
        el("ul", { class: "plain" }, cards.map(leadCard)));
    }),
  );
}

async function loadPipelines() {
  try {
    const answer = await api("GET", "/api/pipelines");
    const stages = [];
    const reasons = [];
    for (const pipeline of answer.items) {
      for (const stage of pipeline.stages) if (!stages.includes(stage)) stages.push(stage);
      for (const reason of pipeline.lost_reasons) if (!reasons.includes(reason)) reasons.push(reason);
    }
    if (stages.length) state.stages = stages;
    state.lostReasons = reasons;
  } catch {
    // An older hub without /api/pipelines: the default stages, reasons typed by the API's rule.
  }
}

async function loadLeads() {
  show($("leads-error"), null);
  try {
    await loadPipelines();
    const page = await api("GET", "/api/leads?status=open&limit=500");
    state.leads.clear();
    for (const lead of page.items) state.leads.set(lead.id, lead);
    await Promise.all([...new Set(page.items.map((l) => l.contact_id))].slice(0, 100).map(contactName));
    renderBoard();
  } catch (exc) {
    show($("leads-error"), exc);
  }
}

// --- reminders ---------------------------------------------------------------------------

function renderReminders() {
  const due = [...state.reminders.values()]
    .filter((r) => r.status === "pending" || r.status === "notified")
    .sort((a, b) => Date.parse(a.due_at) - Date.parse(b.due_at));
  const now = Date.now();
  $("reminder-list").replaceChildren(
    ...due.map((r) => {
      const error = el("p", { class: "error", role: "alert" });
      const act = async (path, body) => {
        try {
          const updated = await api("POST", `/api/reminders/${r.id}/${path}`, body);
          state.reminders.set(r.id, updated);
          renderReminders();
        } catch (exc) {
          show(error, exc);
        }
      };
      const who = r.contact ? `${r.contact.name || ""} ${(r.contact.phones || []).join(", ")}`.trim() : state.names.get(r.contact_id) || `contact #${r.contact_id}`;
      return el(
        "li",
        { class: `reminder${Date.parse(r.due_at) <= now ? " overdue" : ""}`, dataset: { id: r.id } },
        el("a", { href: `#/contact/${r.contact_id}`, class: "name", text: who }),
        el("p", { class: "muted", text: `due ${clock(r.due_at)}${r.note ? ` · ${r.note}` : ""} · ${assigneeLabel(r.assignee_id)}` }),
        el("button", { type: "button", onclick: () => act("done"), text: "Done" }),
        " ",
        el("button", { type: "button", class: "secondary", onclick: () => act("snooze", { minutes: 15 }), text: "Snooze 15m" }),
        error,
      );
    }),
  );
  $("reminders-empty").hidden = due.length > 0;
  const overdue = due.filter((r) => Date.parse(r.due_at) <= now).length;
  $("due-count").hidden = overdue === 0;
  $("due-count").textContent = String(overdue);
}

async function loadReminders() {
  show($("reminders-error"), null);
  try {
    const assignee = me.role === "operator" ? "&assignee=me" : "";
    const [pending, notified] = await Promise.all([
      api("GET", `/api/reminders?status=pending${assignee}&limit=500`),
      api("GET", `/api/reminders?status=notified${assignee}&limit=500`),
    ]);
    state.reminders.clear();
    for (const r of [...pending.items, ...notified.items]) state.reminders.set(r.id, r);
    await Promise.all([...new Set([...state.reminders.values()].map((r) => r.contact_id))].slice(0, 100).map(contactName));
    renderReminders();
  } catch (exc) {
    show($("reminders-error"), exc);
  }
}

// --- caller card -------------------------------------------------------------------------

// call.ringing carries {call: the timeline item, card: the caller card}; a card is looked up
// by phone when an event has none.
async function callerCard(data) {
  const dialog = $("caller-card");
  const phone = data.card?.phone || data.call?.meta?.from || data.from || data.phone || "";
  $("caller-phone").textContent = phone;
  $("caller-name").textContent = "";
  $("caller-leads").replaceChildren();
  $("caller-items").replaceChildren();
  $("caller-open").hidden = true;
  show($("caller-error"), null);
  if (!dialog.open) dialog.showModal();
  try {
    const card = data.card || (await callerLookup(phone));
    const contact = card.contact;
    $("caller-name").textContent = contact ? contact.name || `contact #${contact.id}` : "Unknown caller";
    if (contact) {
      $("caller-open").href = `#/contact/${contact.id}`;
      $("caller-open").hidden = false;
    }
    $("caller-leads").replaceChildren(
      ...(card.open_leads || []).map((l) => el("li", { text: `Lead #${l.id} · ${l.source} · ${l.stage}` })),
      ...(card.open_reminders || []).map((r) => el("li", { text: `Callback due ${clock(r.due_at)}${r.note ? ` · ${r.note}` : ""}` })),
    );
    for (const item of [...(card.last_items || [])].reverse()) upsertItem($("caller-items"), item, true);
  } catch (exc) {
    show($("caller-error"), exc);
  }
}

// The caller card API; where a hub has none, the contact search by phone (any format).
async function callerLookup(phone) {
  try {
    const answer = await api("GET", `/api/calls/lookup?phone=${encodeURIComponent(phone)}`);
    return answer.card || answer;
  } catch (exc) {
    if (!(exc instanceof ApiError) || exc.status !== 404 || exc.body.error !== "Not Found") throw exc;
  }
  const found = await api("GET", `/api/contacts?phone=${encodeURIComponent(phone)}&limit=1`);
  const contact = found.items[0];
  if (!contact) return { contact: null };
  const [leads, items] = await Promise.all([
    api("GET", `/api/leads?contact_id=${contact.id}&status=open`),
    api("GET", `/api/contacts/${contact.id}/timeline?limit=500`),
  ]);
  return { contact, open_leads: leads.items, last_items: items.items.slice(-5).reverse() };
}

// --- live events -------------------------------------------------------------------------

const handlers = {
  "message.created": async (item) => {
    if (item.conversation_id === state.current) upsertItem($("timeline"), item);
    if (item.contact_id === state.contact) upsertItem($("contact-timeline"), item, true);
    if (item.direction === "in" && item.conversation_id !== state.current) {
      state.unread[item.conversation_id] = (state.unread[item.conversation_id] || 0) + 1;
      saveUnread();
      renderConversations();
    }
  },
  "message.updated": async (item) => {
    const list = $("timeline");
    if (item.conversation_id === state.current) upsertItem(list, item);
    if (item.contact_id === state.contact) upsertItem($("contact-timeline"), item, true);
  },
  "conversation.updated": upsertConversation,
  "lead.created": async (lead) => {
    state.leads.set(lead.id, lead);
    await contactName(lead.contact_id);
    if (!$("leads").hidden) renderBoard();
  },
  "lead.updated": async (lead) => {
    state.leads.set(lead.id, lead);
    if (!$("leads").hidden) renderBoard();
  },
  "reminder.updated": async (reminder) => {
    state.reminders.set(reminder.id, reminder);
    renderReminders();
  },
  "reminder.due": async (reminder) => {
    state.reminders.set(reminder.id, reminder);
    renderReminders();
    toast(`Call back ${reminder.contact?.name || `contact #${reminder.contact_id}`}`);
  },
  "call.ringing": callerCard,
};

function connect() {
  const live = $("live");
  const source = new EventSource(`/api/events?token=${encodeURIComponent(token)}`);
  let first = true;
  source.addEventListener("ready", () => {
    live.textContent = "live";
    live.className = "live on";
    if (first) {
      first = false;
      loadConversations();
      route();
    }
  });
  source.addEventListener("resync", () => {
    loadConversations();
    route();
  });
  source.addEventListener("logout", () => logout(false));
  for (const [type, handle] of Object.entries(handlers)) {
    source.addEventListener(type, (event) => {
      handle(JSON.parse(event.data)).catch((exc) => console.error(type, exc));
    });
  }
  source.addEventListener("error", () => {
    live.textContent = "reconnecting…";
    live.className = "live off";
    if (source.readyState === EventSource.CLOSED) {
      // The hub refused the stream (401 ends the session, 503 Redis down): try again shortly.
      fetch("/api/auth/me", { headers: { Authorization: `Bearer ${token}` } }).then((r) => {
        if (r.status === 401) logout(false);
        else setTimeout(connect, 3000);
      }, () => setTimeout(connect, 3000));
    }
  });
}

// --- routing -----------------------------------------------------------------------------

function route() {
  const hash = location.hash || "#/";
  const inbox = $("inbox");
  let view = "inbox";
  if (hash === "#/leads") view = "leads";
  else if (hash === "#/reminders") view = "reminders";
  $("inbox").hidden = view !== "inbox";
  $("leads").hidden = view !== "leads";
  $("reminders").hidden = view !== "reminders";
  for (const link of document.querySelectorAll("[data-nav]")) {
    if (link.dataset.nav === view) link.setAttribute("aria-current", "page");
    else link.removeAttribute("aria-current");
  }
  if (view === "leads") return loadLeads();
  if (view === "reminders") return loadReminders();
  const conversation = hash.match(/^#\/c\/(\d+)$/);
  const contact = hash.match(/^#\/contact\/(\d+)$/);
  document.querySelector(".contact-pane").hidden = !contact;
  inbox.dataset.pane = contact ? "contact" : conversation ? "thread" : "list";
  if (conversation) return openConversation(Number(conversation[1]));
  if (contact) return openContact(Number(contact[1]));
  state.current = null;
  state.contact = null;
  $("thread").hidden = true;
  $("thread-empty").hidden = false;
  renderConversations();
}

document.addEventListener("DOMContentLoaded", () => {
  if (!token || !me) return;
  $("me").textContent = `${me.name || me.email} (${me.role})`;
  $("logout").addEventListener("click", () => logout());
  $("filter-status").addEventListener("change", loadConversations);
  $("filter-assignee").addEventListener("change", loadConversations);
  $("reply-form").addEventListener("submit", (event) => {
    event.preventDefault();
    send("reply");
  });
  $("send-note").addEventListener("click", () => send("note"));
  $("reply-text").addEventListener("keydown", (event) => {
    if (event.key === "Enter" && (event.ctrlKey || event.metaKey)) {
      event.preventDefault();
      send("reply");
    }
  });
  $("assign-me").addEventListener("click", () => patchConversation({ assignee_id: me.id }));
  $("unassign").addEventListener("click", () => patchConversation({ assignee_id: null }));
  $("close-conv").addEventListener("click", () => {
    const conv = state.conversations.get(state.current);
    patchConversation({ status: conv && conv.status === "closed" ? "open" : "closed" });
  });
  $("caller-close").addEventListener("click", () => $("caller-card").close());
  $("caller-open").addEventListener("click", () => $("caller-card").close());
  window.addEventListener("hashchange", route);
  setInterval(() => {
    for (const node of document.querySelectorAll("time.waiting")) node.textContent = ago(node.getAttribute("datetime"));
  }, 30000);
  loadReminders();
  connect();
});
