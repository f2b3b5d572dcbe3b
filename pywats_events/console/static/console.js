// The pywats-events console: one script, no build step. Every value is set as text, never as HTML.
"use strict";

const $ = (sel, root = document) => root.querySelector(sel);
const main = () => $("#main");

function el(tag, attrs = {}, ...children) {
  const node = document.createElement(tag);
  for (const [k, v] of Object.entries(attrs)) {
    if (v === undefined || v === null || v === false) continue;
    if (k === "text") node.textContent = v;
    else if (k.startsWith("on")) node.addEventListener(k.slice(2), v);
    else node.setAttribute(k, v === true ? "" : v);
  }
  for (const c of children) node.append(c instanceof Node ? c : document.createTextNode(String(c)));
  return node;
}

function cookie(name) {
  const found = document.cookie.split("; ").find((c) => c.startsWith(name + "="));
  return found ? decodeURIComponent(found.slice(name.length + 1)) : "";
}

async function getJSON(url) {
  const r = await fetch(url, { credentials: "same-origin" });
  if (!r.ok) throw new Error(`${url}: ${r.status}`);
  return r.json();
}

async function act(url, body) {
  const r = await fetch(url, {
    method: "POST",
    credentials: "same-origin",
    headers: { "Content-Type": "application/json", "X-Console-CSRF": cookie("pywats_console_csrf") },
    body: JSON.stringify(body || {}),
  });
  const data = await r.json().catch(() => ({}));
  if (!r.ok) {
    say(data.error || `refused (${r.status})`, true);
    return null;
  }
  return data;
}

let msgTimer = null;
function say(text, bad = false) {
  const m = $("#msg");
  m.textContent = text;
  m.className = "show" + (bad ? " bad" : "");
  m.dataset.bad = bad ? "1" : "0";
  clearTimeout(msgTimer);
  msgTimer = setTimeout(() => (m.className = ""), 8000);
}

const fmt = (n, digits = 0) => (n === null || n === undefined ? "–" : Number(n).toFixed(digits));
function age(seconds) {
  if (seconds === null || seconds === undefined) return "–";
  if (seconds < 120) return `${seconds.toFixed(0)} s`;
  if (seconds < 7200) return `${(seconds / 60).toFixed(0)} min`;
  return `${(seconds / 3600).toFixed(1)} h`;
}
const tile = (key, value, id) => el("div", { class: "tile", "data-key": key, id }, el("div", { class: "v", text: value }), el("div", { class: "k", text: key }));

function table(columns, rows, rowAttrs = () => ({})) {
  const head = el("tr", {}, ...columns.map((c) => el("th", { text: c.title })));
  const body = rows.map((r) => el("tr", rowAttrs(r), ...columns.map((c) => {
    const v = c.render ? c.render(r) : r[c.key];
    return el("td", { class: c.cls }, v instanceof Node ? v : String(v ?? ""));
  })));
  return el("table", {}, el("thead", {}, head), el("tbody", {}, ...body));
}

function withId(node, id) {
  node.id = id;
  return node;
}

// ---------------------------------------------------------------- overview
function chart(history) {
  const w = 720, h = 160, pad = 24;
  const svg = document.createElementNS("http://www.w3.org/2000/svg", "svg");
  svg.setAttribute("viewBox", `0 0 ${w} ${h}`);
  svg.setAttribute("class", "chart");
  svg.id = "journal-chart";
  const now = Date.now() / 1000, t0 = now - 3600;
  const maxDepth = Math.max(1, ...history.map((s) => s[1]));
  const maxAge = Math.max(1, ...history.map((s) => s[2] || 0));
  const x = (t) => pad + ((t - t0) / 3600) * (w - 2 * pad);
  const line = (values, max, color, name) => {
    const p = document.createElementNS(svg.namespaceURI, "polyline");
    p.setAttribute("points", values.map(([t, v]) => `${x(t).toFixed(1)},${(h - pad - (v / max) * (h - 2 * pad)).toFixed(1)}`).join(" "));
    p.setAttribute("stroke", color);
    p.setAttribute("data-series", name);
    svg.append(p);
    const last = values[values.length - 1];
    if (last) {  // the newest sample as a dot: visible from the first sample on
      const c = document.createElementNS(svg.namespaceURI, "circle");
      c.setAttribute("cx", x(last[0]).toFixed(1));
      c.setAttribute("cy", (h - pad - (last[1] / max) * (h - 2 * pad)).toFixed(1));
      c.setAttribute("r", "3");
      c.setAttribute("fill", color);
      svg.append(c);
    }
  };
  const text = (tx, ty, s, color = "#667085") => {
    const t = document.createElementNS(svg.namespaceURI, "text");
    t.setAttribute("x", tx); t.setAttribute("y", ty); t.setAttribute("font-size", "11"); t.setAttribute("fill", color);
    t.textContent = s; svg.append(t);
  };
  line(history.map((s) => [s[0], s[1]]), maxDepth, "#2457c5", "depth");
  line(history.filter((s) => s[2] !== null).map((s) => [s[0], s[2]]), maxAge, "#b26a00", "oldest-age");
  text(pad, 14, `depth (max ${maxDepth})`, "#2457c5");
  text(pad + 160, 14, `oldest unfinished (max ${age(maxAge)})`, "#b26a00");
  text(pad, h - 6, "−60 min"); text(w - pad - 20, h - 6, "now");
  return svg;
}

async function overview() {
  const root = main();
  root.replaceChildren(el("h2", { text: "Overview" }), el("div", { id: "ov" }));
  const render = async () => {
    let d;
    try { d = await getJSON("/api/overview"); } catch (e) { return; }
    const ov = el("div", { id: "ov", "data-updated": String(d.now) });
    const rates = d.live
      ? [tile("messages/s", fmt(d.rates.messages, 1), "rate-messages"), tile("events/s", fmt(d.rates.events, 1), "rate-events"), tile("handled/s", fmt(d.rates.handled, 1), "rate-handled")]
      : [tile("listener", "stopped", "rate-messages")];
    const totals = Object.entries(d.totals).map(([k, v]) => tile(k, String(v), `total-${k}`));
    const counts = Object.entries(d.counts).map(([k, v]) => tile(k, String(v), `count-${k.replace(/\W+/g, "-")}`));
    const j = d.journal;
    const journal = j.enabled
      ? [el("div", { class: "tiles" }, tile("journal depth", fmt(j.depth), "journal-depth"), tile("oldest unfinished", age(j.oldest_age), "journal-age")), chart(j.history)]
      : [el("p", { class: "mute", text: "no journal (distributed mode or turned off)" })];
    const transports = Object.entries(d.transports);
    const breakers = Object.entries(d.breakers);
    ov.append(
      el("div", { class: "tiles", id: "ov-rates" }, ...rates, ...counts),
      el("h3", { text: "Totals since start" }), el("div", { class: "tiles", id: "ov-totals" }, ...totals),
      el("div", { class: "grid" },
        el("section", {}, el("h3", { text: "Transports" }), transports.length
          ? withId(table([{ title: "transport", key: 0 }, { title: "state", render: (r) => el("span", { class: `state-${r[1]}`, text: r[1] }) }], transports), "ov-transports")
          : el("p", { class: "mute", text: "none running" })),
        el("section", {}, el("h3", { text: "Circuit breakers" }), breakers.length
          ? table([{ title: "breaker", key: 0 }, { title: "state", render: (r) => el("span", { class: `state-${r[1]}`, text: r[1] }) }], breakers)
          : el("p", { class: "mute", text: "none tripped so far" }))),
      el("h3", { text: "Journal, last hour" }), ...journal,
      el("h3", { text: "Last warnings and errors" }),
      d.errors.length
        ? table([{ title: "time", render: (r) => new Date(r.at * 1000).toLocaleTimeString() }, { title: "level", key: "level" }, { title: "source", key: "logger" }, { title: "message", key: "message", cls: "err" }], d.errors)
        : el("p", { class: "mute", text: "none" }),
    );
    $("#ov").replaceWith(ov);
  };
  await render();
  setInterval(render, 2000);
}

// ---------------------------------------------------------------- dead letters
async function deadLetters() {
  const params = new URLSearchParams(location.search);
  let offset = Number(params.get("offset") || 0);
  const limit = 50;
  const f = (id, label, input) => el("label", {}, label, input);
  const handler = el("select", { id: "f-handler" }, el("option", { value: "", text: "any" }));
  const etype = el("select", { id: "f-event-type" }, el("option", { value: "", text: "any" }));
  const q = el("input", { id: "f-q", placeholder: "error text", value: params.get("q") || "" });
  const since = el("input", { id: "f-since", type: "datetime-local" });
  const until = el("input", { id: "f-until", type: "datetime-local" });
  const form = el("form", { class: "filters", id: "dl-filters" },
    f("h", "handler", handler), f("t", "event type", etype), f("q", "error contains", q), f("s", "since", since), f("u", "until", until),
    el("button", { id: "f-apply", type: "submit", class: "primary", text: "Filter" }));
  const list = el("div", { id: "dl-list" });
  const detail = el("div", { id: "dl-detail", class: "detail" });
  const selected = () => [...list.querySelectorAll("input.sel:checked")].map((c) => c.value);
  const bar = el("div", { class: "bar" },
    el("button", { id: "dl-replay", class: "primary", text: "Replay selected", onclick: async () => {
      const ids = selected();
      if (!ids.length) return say("select entries first", true);
      say(`replaying ${ids.length}…`);
      const r = await act("/api/actions/dead-letters/replay", { ids });
      if (r) { say(`replayed ${r.replayed}, not replayed ${r.not_replayed}, skipped ${r.skipped}`); load(); }
    } }),
    el("button", { id: "dl-purge", class: "danger", text: "Purge selected", onclick: async () => {
      const ids = selected();
      if (!ids.length) return say("select entries first", true);
      if (!confirm(`Delete ${ids.length} dead letter(s) for good?`)) return say("purge cancelled");
      const r = await act("/api/actions/dead-letters/purge", { ids, confirm: true });
      if (r) { say(`purged ${r.purged}`); load(); }
    } }),
    el("button", { id: "dl-purge-all", class: "danger", text: "Purge all", onclick: async () => {
      if (!confirm("Delete EVERY dead letter for good?")) return say("purge cancelled");
      const r = await act("/api/actions/dead-letters/purge", { all: true, confirm: true });
      if (r) { say(`purged ${r.purged}`); load(); }
    } }),
    el("span", { id: "dl-total", class: "mute" }),
    el("button", { id: "dl-prev", type: "button", text: "‹ newer", onclick: () => { offset = Math.max(0, offset - limit); load(); } }),
    el("button", { id: "dl-next", type: "button", text: "older ›", onclick: () => { offset += limit; load(); } }));
  main().replaceChildren(el("h2", { text: "Dead letters" }), form, bar, list, detail);
  const iso = (v) => (v ? new Date(v).toISOString() : "");
  let facetsShown = false;
  async function load() {
    const qs = new URLSearchParams({ handler: handler.value, event_type: etype.value, q: q.value, since: iso(since.value), until: iso(until.value), offset, limit });
    const d = await getJSON("/api/dead-letters?" + qs);
    if (!facetsShown) {
      facetsShown = true;
      for (const h of d.facets.handler) handler.append(el("option", { value: h, text: h }));
      for (const t of d.facets.event_type) etype.append(el("option", { value: t, text: t }));
    }
    $("#dl-total").textContent = d.total ? `${offset + 1}–${offset + d.entries.length} of ${d.total}` : "no dead letters match";
    list.replaceChildren(table([
      { title: "", render: (r) => el("input", { type: "checkbox", class: "sel", value: r.id }) },
      { title: "last failure", key: "last_failure" },
      { title: "handler", key: "handler" },
      { title: "event type", key: "event_type" },
      { title: "error", cls: "err", render: (r) => `${r.error_type}: ${r.error}` },
      { title: "attempts", key: "attempts" },
      { title: "", render: (r) => el("button", { class: "show", type: "button", text: "show", onclick: () => show(r.id) }) },
    ], d.entries, (r) => ({ "data-id": r.id })));
    list.querySelector("table").id = "dl-table";
  }
  async function show(id) {
    const d = await getJSON("/api/dead-letters/" + encodeURIComponent(id));
    let event = d.event;
    try { event = JSON.stringify(JSON.parse(d.event), null, 2); } catch (e) { /* shown as stored */ }
    detail.replaceChildren(el("h3", { text: `Dead letter ${d.id}` }),
      table([{ title: "field", key: 0 }, { title: "value", key: 1, cls: "err" }], [["handler", d.handler], ["event type", d.event_type], ["error", `${d.error_type}: ${d.error}`], ["attempts", d.attempts], ["first failure", d.first_failure], ["last failure", d.last_failure]]),
      el("h3", { text: "Event" }), el("pre", { id: "dl-event", text: event }),
      el("button", { class: "primary", id: "dl-replay-one", text: "Replay this one", onclick: async () => {
        const r = await act("/api/actions/dead-letters/replay", { ids: [d.id] });
        if (r) { say(`replayed ${r.replayed}, not replayed ${r.not_replayed}`); detail.replaceChildren(); load(); }
      } }));
  }
  form.addEventListener("submit", (e) => { e.preventDefault(); offset = 0; load(); });
  await load();
}

// ---------------------------------------------------------------- quarantine
async function quarantine() {
  let offset = 0;
  const limit = 50;
  const q = el("input", { id: "q-filter", placeholder: "reason contains" });
  const form = el("form", { class: "filters" }, el("label", {}, "reason", q), el("button", { type: "submit", class: "primary", text: "Filter" }));
  const list = el("div", { id: "q-list" });
  const detail = el("div", { id: "q-detail", class: "detail" });
  const selected = () => [...list.querySelectorAll("input.sel:checked")].map((c) => Number(c.value));
  const redecode = async (ids) => {
    const r = await act("/api/actions/quarantine/redecode", { ids });
    if (!r) return;
    const why = Object.values(r.reasons)[0];
    say(`re-decoded ${r.decoded}, still failing ${r.still_failing}` + (why ? `: ${why}` : ""), r.still_failing > 0);
    load();
  };
  const bar = el("div", { class: "bar" },
    el("button", { id: "q-redecode", class: "primary", text: "Re-decode selected", onclick: () => { const ids = selected(); ids.length ? redecode(ids) : say("select messages first", true); } }),
    el("button", { id: "q-purge", class: "danger", text: "Purge selected", onclick: async () => {
      const ids = selected();
      if (!ids.length) return say("select messages first", true);
      if (!confirm(`Delete ${ids.length} quarantined message(s) for good?`)) return say("purge cancelled");
      const r = await act("/api/actions/quarantine/purge", { ids, confirm: true });
      if (r) { say(`purged ${r.purged}`); load(); }
    } }),
    el("span", { id: "q-total", class: "mute" }),
    el("button", { type: "button", text: "‹ newer", onclick: () => { offset = Math.max(0, offset - limit); load(); } }),
    el("button", { type: "button", text: "older ›", onclick: () => { offset += limit; load(); } }));
  main().replaceChildren(el("h2", { text: "Quarantine" }), form, bar, list, detail);
  async function load() {
    const d = await getJSON("/api/quarantine?" + new URLSearchParams({ q: q.value, offset, limit }));
    $("#q-total").textContent = d.total ? `${offset + 1}–${offset + d.entries.length} of ${d.total}` : "nothing quarantined";
    list.replaceChildren(table([
      { title: "", render: (r) => el("input", { type: "checkbox", class: "sel", value: r.id }) },
      { title: "id", key: "id" }, { title: "at", key: "at" }, { title: "source", key: "source" },
      { title: "size", key: "size" }, { title: "reason", key: "reason", cls: "err" },
      { title: "", render: (r) => el("button", { class: "show", type: "button", text: "show", onclick: () => show(r.id) }) },
    ], d.entries, (r) => ({ "data-id": r.id })));
    list.querySelector("table").id = "q-table";
  }
  async function show(id) {
    const d = await getJSON("/api/quarantine/" + id);
    detail.replaceChildren(el("h3", { text: `Message ${d.id} (${d.size} bytes, ${d.shown} shown${d.masked ? ", credentials masked" : ""})` }),
      el("p", { id: "q-reason", class: "err", text: d.reason }),
      el("button", { class: "primary", id: "q-redecode-one", text: "Re-decode this one", onclick: () => redecode([d.id]) }),
      el("h3", { text: "Text" }), el("pre", { id: "q-text", text: d.text }),
      el("h3", { text: "Hex" }), el("pre", { id: "q-hex", text: d.hex }));
  }
  form.addEventListener("submit", (e) => { e.preventDefault(); offset = 0; load(); });
  await load();
}

// ---------------------------------------------------------------- configuration
async function configuration() {
  const d = await getJSON("/api/configuration");
  main().replaceChildren(el("h2", { text: "Configuration" }),
    el("p", { class: "mute", text: d.config_file ? `file: ${d.config_file}` : "effective settings of this process; credentials are masked" }),
    table([{ title: "setting", key: "setting" }, { title: "value", cls: "err", render: (r) => (typeof r.value === "string" ? r.value : JSON.stringify(r.value)) }, { title: "from", key: "source" }], d.settings));
  main().querySelector("table").id = "cfg-table";
}

// ---------------------------------------------------------------- plugin panels
async function panel(name) {
  const render = async () => {
    const d = await getJSON("/api/panels/" + encodeURIComponent(name));
    const actions = d.actions.map((a) => el("button", { class: "primary", "data-action": a.name, text: a.label, onclick: async () => {
      if (a.confirm && !confirm(a.confirm)) return say("cancelled");
      const r = await act(`/api/actions/panels/${encodeURIComponent(name)}/${encodeURIComponent(a.name)}`, {});
      if (r) { say(r.message); render(); }
    } }));
    main().replaceChildren(el("h2", { text: d.title }),
      el("div", { class: "tiles", id: "panel-counts" }, ...Object.entries(d.counts).map(([k, v]) => tile(k, String(v)))),
      d.note ? el("p", { class: "mute", id: "panel-note", text: d.note }) : "",
      el("div", { class: "bar" }, ...actions),
      d.rows.length ? table(d.columns.map((c) => ({ title: c, key: c, cls: "err" })), d.rows) : el("p", { class: "mute", text: "nothing to show" }));
    main().querySelector("table")?.setAttribute("id", "panel-table");
  };
  await render();
}

// ---------------------------------------------------------------- shell
async function signIn(e) {
  e.preventDefault();
  const token = $("#token").value;
  const r = await act("/api/login", { token });
  $("#token").value = "";
  if (r) { $("#auth-state").textContent = `signed in (${r.token_id})`; say("signed in"); }
}

async function start() {
  const meta = await getJSON("/api/meta");
  const nav = $("#nav");
  for (const p of meta.panels) nav.append(el("a", { href: `/panels/${encodeURIComponent(p.name)}`, text: p.title }));
  for (const a of nav.querySelectorAll("a")) if (a.getAttribute("href") === location.pathname) a.classList.add("active");
  $("#auth-state").textContent = !meta.writable ? "read-only (no token configured)" : meta.signed_in ? "signed in" : "not signed in";
  if (!meta.writable) $("#sign-in-button").disabled = true;
  $("#sign-in").addEventListener("submit", signIn);
  const path = location.pathname;
  if (path === "/dead-letters") await deadLetters();
  else if (path === "/quarantine") await quarantine();
  else if (path === "/configuration") await configuration();
  else if (path.startsWith("/panels/")) await panel(decodeURIComponent(path.slice(8)));
  else await overview();
  document.body.dataset.ready = "1";
}

start().catch((e) => say(String(e), true));
