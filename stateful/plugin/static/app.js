// The Watermarks page: plain JavaScript, no build step, nothing loaded from elsewhere.
// Every text that comes from the API is put on the page with textContent (never innerHTML).
"use strict";

(function () {
  // The API lives beside the page: <prefix>/api/..., this file being <prefix>/static/app.js.
  const script = document.currentScript;
  const BASE = new URL("..", script ? script.src : window.location.href).href;

  // Rows asked for at a time. A deployment whose watermarks (each partition of a keyed one is a
  // row) all fit is filtered and sorted here, as you type; a larger one by the server, a page at
  // a time ("Show more").
  const PAGE = 500;
  const MAX_ROWS = 5000; // the most rows the API returns in one answer

  const state = {
    me: null,
    rows: [],
    stores: [],
    sortKey: "namespace",
    sortDir: 1,
    filter: "",
    limit: PAGE,
    serverSide: false, // true when the stores hold more rows than one answer: the server filters and sorts
    total: 0, // rows stored
    matched: 0, // rows the server's filter kept
    current: null, // the detail being shown: {row, document, history}
  };

  const $ = (id) => document.getElementById(id);

  // ----- helpers -------------------------------------------------------------------------------

  /** An element with attributes and children (strings become text nodes). */
  function el(tag, attrs, ...children) {
    const node = document.createElement(tag);
    for (const [name, value] of Object.entries(attrs || {})) {
      if (value === null || value === undefined || value === false) continue;
      if (name === "class") node.className = value;
      else if (name === "text") node.textContent = value;
      else node.setAttribute(name, value === true ? "" : String(value));
    }
    for (const child of children) {
      if (child === null || child === undefined) continue;
      node.append(child instanceof Node ? child : document.createTextNode(String(child)));
    }
    return node;
  }

  function clear(node) {
    while (node.firstChild) node.removeChild(node.firstChild);
  }

  class ApiError extends Error {
    constructor(status, detail) {
      super(detail);
      this.status = status;
      this.detail = detail;
    }
  }

  /** A readable message for an API error, by its status. */
  function explain(error) {
    if (!(error instanceof ApiError)) return `Could not reach the server: ${error.message}`;
    const detail = error.detail || "";
    switch (error.status) {
      case 401:
        return `Not signed in (401): ${detail || "your Airflow session ended"}. Sign in to Airflow again, then reload this page.`;
      case 403:
        return `Not allowed (403): ${detail}`;
      case 404:
        return `Not found (404): ${detail}`;
      case 409:
        return `Changed meanwhile (409): ${detail} The page now shows the current version; check it and try again.`;
      case 422:
        return `Not accepted (422): ${detail}`;
      default:
        return `The server answered ${error.status}: ${detail}`;
    }
  }

  async function api(path, options) {
    const init = Object.assign({ credentials: "same-origin", headers: { Accept: "application/json" } }, options || {});
    if (init.body !== undefined) {
      init.method = init.method || "POST";
      init.headers = Object.assign({ "Content-Type": "application/json" }, init.headers);
      init.body = JSON.stringify(init.body);
    }
    const response = await fetch(BASE + "api/" + path, init);
    let payload = null;
    const text = await response.text();
    try {
      payload = text ? JSON.parse(text) : null;
    } catch (_) {
      payload = null;
    }
    if (!response.ok) {
      let detail = payload && payload.detail !== undefined ? payload.detail : text;
      if (typeof detail !== "string") detail = JSON.stringify(detail);
      throw new ApiError(response.status, detail || response.statusText);
    }
    return payload;
  }

  /** The banner above the page: a message, or nothing; for 401 a link to Airflow's sign-in. */
  function showBanner(message, error) {
    const banner = $("banner");
    banner.textContent = message || "";
    if (error instanceof ApiError && error.status === 401) {
      // Airflow's UI sends a signed-out user to its login page, which comes back here after.
      const airflow = new URL("..", BASE).href;
      banner.append(" ", el("a", { href: airflow, target: "_top", text: "Sign in to Airflow" }));
    }
    banner.hidden = !message;
  }

  /** "2025-06-02 09:00:00 UTC" from an ISO-8601 text (the text itself when it does not parse). */
  function formatTime(iso) {
    if (!iso) return "";
    const date = new Date(iso);
    if (Number.isNaN(date.getTime())) return String(iso);
    const text = date.toISOString().replace("T", " ").replace(/\.\d+Z$/, "").replace(/Z$/, "");
    return `${text} UTC`;
  }

  /** A lag in seconds as "3 d 4 h", "12 min 5 s", "8 s". */
  function formatLag(seconds) {
    if (seconds === null || seconds === undefined) return "";
    const sign = seconds < 0 ? "−" : "";
    let rest = Math.round(Math.abs(seconds));
    const units = [
      ["d", 86400],
      ["h", 3600],
      ["min", 60],
      ["s", 1],
    ];
    // The largest unit that fits, and the next one when it is not zero: "2 h", "2 h 5 min".
    let first = units.findIndex(([, size]) => rest >= size);
    if (first < 0) first = units.length - 1;
    const [unit, size] = units[first];
    const parts = [`${Math.floor(rest / size)} ${unit}`];
    rest %= size;
    if (first + 1 < units.length) {
      const [nextUnit, nextSize] = units[first + 1];
      const next = Math.floor(rest / nextSize);
      if (next > 0) parts.push(`${next} ${nextUnit}`);
    }
    return sign + parts.join(" ");
  }

  function pretty(value) {
    return JSON.stringify(value, null, 2);
  }

  function short(value, limit) {
    const text = typeof value === "string" ? value : JSON.stringify(value);
    if (text === undefined) return "";
    return text.length > limit ? text.slice(0, limit - 1) + "…" : text;
  }

  // ----- the list ------------------------------------------------------------------------------

  /** Whether the row is one partition of a keyed watermark. */
  function isPartition(row) {
    return row.partition !== null && row.partition !== undefined;
  }

  /** A partition of a keyed watermark, or another document key than the watermark's ("key cfg"). */
  function partitionText(row) {
    if (isPartition(row)) return row.partition;
    return row.key && row.key !== "watermark" ? `key ${row.key}` : null;
  }

  /** "orders / 2026 · partition eu": the watermark's address as the page names it. */
  function rowLabel(row) {
    const base = `${row.namespace} / ${row.name}`;
    if (isPartition(row)) return `${base} · partition ${row.partition}`;
    return row.key && row.key !== "watermark" ? `${base} · key ${row.key}` : base;
  }

  /** The same rule as the server's filter (GET api/watermarks?q=...), for a list held whole. */
  function matches(row, needle) {
    if (!needle) return true;
    const haystack = [row.namespace, row.name, `${row.namespace}/${row.name}`, row.key, row.store, row.store_label, row.asset, row.cursor, row.saved_by]
      .filter((v) => v !== null && v !== undefined)
      .join("\n")
      .toLowerCase();
    return haystack.includes(needle);
  }

  function sortValue(row, key) {
    return key === "partition" ? partitionText(row) : row[key];
  }

  function compare(a, b, key) {
    let x = sortValue(a, key);
    let y = sortValue(b, key);
    if (key === "stuck") {
      x = x ? 1 : 0;
      y = y ? 1 : 0;
    }
    const xMissing = x === null || x === undefined;
    const yMissing = y === null || y === undefined;
    if (xMissing || yMissing) return xMissing === yMissing ? 0 : xMissing ? 1 : -1; // missing last
    if (key === "timestamp" || key === "saved_at") {
      x = Date.parse(x);
      y = Date.parse(y);
    }
    if (typeof x === "number" && typeof y === "number") return x - y;
    return String(x).localeCompare(String(y), undefined, { numeric: true, sensitivity: "base" });
  }

  function sortedRows() {
    if (state.serverSide) return state.rows.slice(); // the server filtered and sorted them
    const needle = state.filter.trim().toLowerCase();
    const rows = state.rows.filter((row) => matches(row, needle));
    rows.sort((a, b) => {
      const first = compare(a, b, state.sortKey);
      if (first !== 0) {
        // Missing values stay last in both directions.
        const aValue = sortValue(a, state.sortKey);
        const bValue = sortValue(b, state.sortKey);
        const aMissing = aValue === null || aValue === undefined;
        const bMissing = bValue === null || bValue === undefined;
        return aMissing || bMissing ? first : first * state.sortDir;
      }
      return compare(a, b, "namespace") || compare(a, b, "name") || compare(a, b, "key");
    });
    return rows;
  }

  /** "SQL store", or "asset NAME" for an asset's native store (the whole label in the cell's title). */
  function storeBadge(row) {
    if (row.store === "native") return el("span", { class: "badge native", text: row.asset ? `asset ${row.asset}` : "native store" });
    return el("span", { class: "badge " + row.store, text: row.store === "sql" ? "SQL store" : row.store_label });
  }

  function stuckBadge(row) {
    if (!row.stuck) return el("span", { class: "muted", text: "no" });
    return el("span", { class: "badge stuck", title: "Has not moved for longer than its max_lag", text: "stuck" });
  }

  function renderList() {
    const body = $("rows");
    clear(body);
    const rows = sortedRows();
    for (const row of rows) {
      const link = el("a", { href: "#/watermark/" + encodeURIComponent(row.id), title: rowLabel(row), text: row.name });
      const partition = partitionText(row);
      const invalid = row.valid === false ? el("span", { class: "badge invalid", title: row.problem || null, text: "invalid" }) : null;
      const tr = el(
        "tr",
        { class: row.stuck ? "is-stuck" : null, "data-id": row.id },
        el("td", { text: row.namespace }),
        el("th", { scope: "row" }, link, invalid ? " " : null, invalid),
        el("td", { class: isPartition(row) ? "partition mono" : "partition muted", title: partition, text: partition || "" }),
        el("td", { class: "store", title: row.store_label }, storeBadge(row)),
        el("td", { class: "time", title: row.timestamp || null, text: formatTime(row.timestamp) }),
        el("td", { class: "mono", title: row.cursor || null, text: short(row.cursor ?? "", 40) }),
        el("td", { class: "num", text: String(row.seen ?? "") }),
        el("td", { class: "num", text: row.version === null ? "" : String(row.version) }),
        el("td", { class: "time", title: row.saved_at || null, text: formatTime(row.saved_at) }),
        el("td", { text: row.saved_by || "" }),
        el("td", { class: "num", text: formatLag(row.lag_seconds) }),
        el("td", {}, stuckBadge(row)),
      );
      body.append(tr);
    }
    for (const th of document.querySelectorAll("#watermarks thead th")) {
      const key = th.dataset.key;
      th.setAttribute("aria-sort", key === state.sortKey ? (state.sortDir > 0 ? "ascending" : "descending") : "none");
    }
    // The Partition column only when a row shown has one (most deployments keep plain watermarks).
    $("watermarks").classList.toggle("no-partitions", !rows.some((row) => partitionText(row) !== null));
    const total = state.serverSide ? state.total : state.rows.length;
    const plural = (n) => `${n.toLocaleString("en")} watermark${n === 1 ? "" : "s"}`;
    let count = rows.length === total ? plural(total) : `${rows.length.toLocaleString("en")} of ${plural(total)}`;
    const more = state.serverSide && state.matched > rows.length;
    if (more) count = `${rows.length.toLocaleString("en")} of ${state.matched.toLocaleString("en")} shown (${plural(total)} stored)`;
    $("count").textContent = count;
    $("more").hidden = !more || state.limit >= MAX_ROWS;
    $("more-hint").hidden = !more || state.limit < MAX_ROWS;
    const empty = $("empty");
    empty.hidden = rows.length > 0;
    empty.textContent = total === 0 ? "No watermark is stored yet in the stores listed above." : "No watermark matches the filter.";
  }

  function renderStores() {
    const list = $("stores");
    clear(list);
    for (const store of state.stores) {
      const item = el("li", { class: store.error ? "store has-error" : "store" }, el("span", { class: "badge " + store.kind, text: store.kind }), " ", store.label);
      if (store.error) item.append(el("span", { class: "error-text", text: " — " + store.error }));
      list.append(item);
    }
  }

  /** The list's query: the whole list when it fits, else the filter, the order and a page from the server. */
  function listQuery() {
    const params = new URLSearchParams({ limit: String(state.limit), sort: state.sortKey, order: state.sortDir > 0 ? "asc" : "desc" });
    const needle = state.filter.trim();
    if (state.serverSide && needle) params.set("q", needle);
    return params;
  }

  let loading = 0; // the latest request: an older answer that comes after it is dropped

  async function loadList() {
    const mine = ++loading;
    try {
      const params = listQuery();
      const data = await api("watermarks?" + params.toString());
      if (mine !== loading) return;
      const rows = data.watermarks || [];
      const total = data.total ?? rows.length;
      const wasServerSide = state.serverSide;
      state.serverSide = total > state.limit; // not all of them in one answer
      if (wasServerSide && !state.serverSide && params.has("q")) return loadList(); // now it fits: all of it
      state.rows = rows;
      state.stores = data.stores || [];
      state.total = total;
      state.matched = data.matched ?? rows.length;
      showBanner("");
    } catch (error) {
      if (mine !== loading) return;
      showBanner(explain(error), error);
    }
    renderStores();
    renderList();
  }

  let filterTimer = null;

  /** After typing in the filter: at once for a list held whole, else from the server when typing pauses. */
  function onFilter(event) {
    state.filter = event.target.value;
    if (!state.serverSide) return renderList();
    window.clearTimeout(filterTimer);
    state.limit = PAGE;
    filterTimer = window.setTimeout(loadList, 300);
  }

  // ----- one watermark -------------------------------------------------------------------------

  function summaryEntries(row) {
    const partition = isPartition(row) ? row.partition : null;
    return [
      ["Namespace", row.namespace],
      ["Name", row.name],
      ["Partition", partition],
      ["Key", partition === null && row.key && row.key !== "watermark" ? row.key : null],
      ["Store", row.store_label],
      ["Asset", row.asset],
      ["Timestamp", row.timestamp ? `${formatTime(row.timestamp)} (${row.timestamp})` : "none"],
      ["Cursor", row.cursor ?? "none"],
      ["Seen at the boundary", String(row.seen ?? 0)],
      ["Version", row.version === null ? "" : String(row.version)],
      ["Last saved", row.saved_at ? `${formatTime(row.saved_at)}${row.saved_by ? " by " + row.saved_by : ""}` : ""],
      ["Lag", row.lag_seconds === null || row.lag_seconds === undefined ? "" : formatLag(row.lag_seconds)],
      ["Stuck", row.stuck ? "yes: it has not moved for longer than its max_lag" : "no"],
      ["Problem", row.valid === false ? row.problem || "the stored value does not validate" : null],
    ].filter(([, value]) => value !== null && value !== undefined && value !== "");
  }

  function renderDiff(diff) {
    if (!diff || diff.length === 0) return el("p", { class: "muted", text: "No change to the document." });
    const table = el("table", { class: "diff" });
    table.append(el("thead", {}, el("tr", {}, el("th", { scope: "col", text: "Path" }), el("th", { scope: "col", text: "Change" }), el("th", { scope: "col", text: "Before" }), el("th", { scope: "col", text: "After" }))));
    const body = el("tbody");
    for (const change of diff) {
      const label = { add: "added", remove: "removed", change: "changed" }[change.op] || change.op;
      body.append(
        el(
          "tr",
          { class: "op-" + change.op },
          el("td", { class: "mono", text: change.path }),
          el("td", { text: label }),
          el("td", { class: "mono old" }, change.op === "add" ? "" : el("pre", { text: pretty(change.old) })),
          el("td", { class: "mono new" }, change.op === "remove" ? "" : el("pre", { text: pretty(change.new) })),
        ),
      );
    }
    table.append(body);
    return table;
  }

  function renderHistory(history, current) {
    const list = $("history");
    clear(list);
    if (!history || history.length === 0) {
      list.append(el("li", { class: "muted", text: "This store keeps no history for this watermark." }));
      return;
    }
    const newestFirst = history.slice().sort((a, b) => b.version - a.version);
    for (const entry of newestFirst) {
      const heading = el(
        "h4",
        {},
        `Version ${entry.version}`,
        entry.version === current ? el("span", { class: "badge current", text: "current" }) : null,
      );
      const meta = el("p", { class: "meta" }, entry.saved_at ? formatTime(entry.saved_at) : "time not recorded", entry.saved_by ? ` by ${entry.saved_by}` : "");
      const item = el("li", { class: "version", "data-version": String(entry.version) }, heading, meta);
      if (entry.reason) item.append(el("p", { class: "reason" }, el("strong", { text: "Reason: " }), entry.reason));
      item.append(renderDiff(entry.diff));
      if (entry.document !== null && entry.document !== undefined) {
        const details = el("details", {}, el("summary", { text: `The whole document at version ${entry.version}` }), el("pre", { class: "document", text: pretty(entry.document) }));
        item.append(details);
      }
      list.append(item);
    }
  }

  function renderDetail(data) {
    state.current = data;
    const row = data.row;
    $("detail-title").textContent = rowLabel(row);
    const keyed = isPartition(row);
    $("partition-note").hidden = !keyed;
    if (keyed) $("partition-name").textContent = `${row.namespace} / ${row.name}`;
    const summary = $("summary");
    clear(summary);
    for (const [term, value] of summaryEntries(row)) {
      summary.append(el("dt", { text: term }), el("dd", { text: value }));
    }
    $("document").textContent = pretty(data.document);
    const canEdit = Boolean(state.me && state.me.can_edit);
    $("actions").hidden = !canEdit;
    $("read-only").hidden = canEdit || !state.me;
    const select = $("rewind-to");
    clear(select);
    const versions = (data.history || []).map((h) => h.version).filter((v) => v !== row.version).sort((a, b) => b - a);
    for (const version of versions) {
      const entry = data.history.find((h) => h.version === version);
      const when = entry && entry.saved_at ? ` — ${formatTime(entry.saved_at)}` : "";
      select.append(el("option", { value: String(version), text: `version ${version}${when}` }));
    }
    select.disabled = versions.length === 0;
    $("rewind-button").disabled = versions.length === 0;
    if (versions.length === 0) select.append(el("option", { value: "", text: "no earlier version kept" }));
    renderHistory(data.history, row.version);
  }

  async function openDetail(id) {
    $("list-view").hidden = true;
    $("detail-view").hidden = false;
    hideActionMessages();
    $("detail-title").textContent = "Loading…";
    try {
      renderDetail(await api("watermarks/" + encodeURIComponent(id)));
      showBanner("");
    } catch (error) {
      $("detail-title").textContent = "Watermark not shown";
      showBanner(explain(error), error);
    }
    $("detail-title").focus({ preventScroll: true });
  }

  // ----- actions -------------------------------------------------------------------------------

  function hideActionMessages() {
    $("action-error").hidden = true;
    $("action-done").hidden = true;
  }

  function actionError(message) {
    const box = $("action-error");
    box.textContent = message;
    box.hidden = false;
    $("action-done").hidden = true;
  }

  /** Ask the user to confirm; resolves to true on "Confirm". */
  function confirmDialog(title, lines, confirmLabel) {
    const dialog = $("confirm");
    $("confirm-title").textContent = title;
    const body = $("confirm-body");
    clear(body);
    for (const line of lines) {
      if (line !== null) body.append(line instanceof Node ? line : el("p", { text: line }));
    }
    $("confirm-ok").textContent = confirmLabel;
    return new Promise((resolve) => {
      dialog.addEventListener("close", () => resolve(dialog.returnValue === "ok"), { once: true });
      dialog.returnValue = "";
      dialog.showModal();
      $("confirm-cancel").focus();
    });
  }

  async function perform(kind, body) {
    const row = state.current.row;
    try {
      const result = await api(`watermarks/${encodeURIComponent(row.id)}/${kind}`, { body });
      const after = await api("watermarks/" + encodeURIComponent(result.row.id || row.id));
      renderDetail(after);
      const done = $("action-done");
      done.textContent = `Saved: ${rowLabel(row)} is now at version ${after.row.version}.`;
      done.hidden = false;
      $("action-error").hidden = true;
      return true;
    } catch (error) {
      actionError(explain(error));
      if (error instanceof ApiError && error.status === 409) {
        // Show what is stored now; the user decides again from there.
        try {
          const now = await api("watermarks/" + encodeURIComponent(row.id));
          renderDetail(now);
        } catch (_) {
          /* the error above stays shown */
        }
      }
      return false;
    }
  }

  /** For a partition's edit: the sentence that says the others keep their versions. */
  function otherPartitions(row) {
    if (!isPartition(row)) return null;
    return `The other partitions of ${row.namespace} / ${row.name} are not changed.`;
  }

  async function onRewind(event) {
    event.preventDefault();
    hideActionMessages();
    const row = state.current.row;
    const reason = $("rewind-reason").value.trim();
    const target = Number.parseInt($("rewind-to").value, 10);
    if (Number.isNaN(target)) return actionError("Choose the version to rewind to.");
    if (!reason) {
      $("rewind-reason").focus();
      return actionError("A reason is required: say why you rewind this watermark (it is kept with the new version).");
    }
    const ok = await confirmDialog(
      isPartition(row) ? "Rewind this partition?" : "Rewind this watermark?",
      [
        `${rowLabel(row)} (${row.store_label}) goes back to the content of version ${target}.`,
        `It is saved as a new version, if version ${row.version} is still the current one.`,
        otherPartitions(row),
        el("p", {}, el("strong", { text: "Reason: " }), reason),
      ],
      "Rewind",
    );
    if (!ok) return;
    if (await perform("rewind", { expected_version: row.version, to_version: target, reason })) {
      $("rewind-reason").value = "";
    }
  }

  function parseCursor(text) {
    try {
      return JSON.parse(text);
    } catch (_) {
      return text; // not JSON: taken as text, as the command line does
    }
  }

  function setFields() {
    const fields = {};
    const timestamp = $("set-timestamp").value.trim();
    if ($("set-timestamp-none").checked) fields.timestamp = null;
    else if (timestamp) fields.timestamp = timestamp;
    const cursor = $("set-cursor").value.trim();
    if (cursor) fields.cursor = parseCursor(cursor);
    if ($("set-clear-seen").checked) fields.seen = {}; // forget every key seen at the boundary
    const extra = $("set-fields").value.trim();
    if (extra) {
      let parsed;
      try {
        parsed = JSON.parse(extra);
      } catch (error) {
        throw new Error(`Other fields: not JSON (${error.message}). Write an object such as {"region": "eu"}.`);
      }
      if (parsed === null || typeof parsed !== "object" || Array.isArray(parsed)) {
        throw new Error('Other fields: write a JSON object such as {"region": "eu"}.');
      }
      Object.assign(fields, parsed);
    }
    return fields;
  }

  async function onSet(event) {
    event.preventDefault();
    hideActionMessages();
    const row = state.current.row;
    let fields;
    try {
      fields = setFields();
    } catch (error) {
      return actionError(error.message);
    }
    const drops = $("set-drop").value.split(",").map((name) => name.trim()).filter(Boolean);
    if (Object.keys(fields).length === 0 && drops.length === 0) {
      return actionError("Nothing to set: fill in a timestamp, a cursor, other fields or fields to remove, or tick a box.");
    }
    const reason = $("set-reason").value.trim();
    if (!reason) {
      $("set-reason").focus();
      return actionError("A reason is required: say why you change this watermark (it is kept with the new version).");
    }
    const ok = await confirmDialog(
      isPartition(row) ? "Set this partition?" : "Set this watermark?",
      [
        `${rowLabel(row)} (${row.store_label}) is saved as a new version with:`,
        el("pre", { class: "document", text: pretty(fields) }),
        drops.length ? `and without the fields: ${drops.join(", ")},` : null,
        `if version ${row.version} is still the current one.`,
        otherPartitions(row),
        el("p", {}, el("strong", { text: "Reason: " }), reason),
      ],
      "Set",
    );
    if (!ok) return;
    if (await perform("set", { expected_version: row.version, fields, drop_fields: drops, reason })) {
      for (const id of ["set-timestamp", "set-cursor", "set-fields", "set-drop", "set-reason"]) $(id).value = "";
      $("set-timestamp-none").checked = false;
      $("set-clear-seen").checked = false;
    }
  }

  // ----- routing and start ---------------------------------------------------------------------

  function route() {
    const match = /^#\/watermark\/(.+)$/.exec(window.location.hash);
    if (match) {
      openDetail(decodeURIComponent(match[1]));
      return;
    }
    state.current = null;
    $("detail-view").hidden = true;
    $("list-view").hidden = false;
    loadList();
  }

  async function start() {
    for (const th of document.querySelectorAll("#watermarks thead th")) {
      th.querySelector("button").addEventListener("click", () => {
        const key = th.dataset.key;
        state.sortDir = state.sortKey === key ? -state.sortDir : 1;
        state.sortKey = key;
        if (state.serverSide) {
          state.limit = PAGE;
          loadList();
        } else renderList();
      });
    }
    $("filter").addEventListener("input", onFilter);
    $("refresh").addEventListener("click", loadList);
    $("more").addEventListener("click", () => {
      state.limit = Math.min(state.limit + PAGE, MAX_ROWS);
      loadList();
    });
    $("partition-all").addEventListener("click", (event) => {
      // Back to the list, filtered to this watermark's partitions.
      event.preventDefault();
      const row = state.current && state.current.row;
      if (!row) return;
      state.filter = `${row.namespace}/${row.name}`;
      $("filter").value = state.filter;
      state.limit = PAGE;
      window.location.hash = "";
    });
    $("back").addEventListener("click", (event) => {
      event.preventDefault();
      window.location.hash = "";
    });
    $("rewind-form").addEventListener("submit", onRewind);
    $("set-form").addEventListener("submit", onSet);
    $("detail-title").setAttribute("tabindex", "-1");
    window.addEventListener("hashchange", route);
    try {
      state.me = await api("me");
      const who = $("who");
      clear(who);
      who.append("Signed in as ", el("strong", { text: state.me.username }));
      if (!state.me.can_edit) who.append(" ", el("span", { class: "badge readonly", text: "read-only" }));
    } catch (error) {
      showBanner(explain(error), error);
    }
    document.body.dataset.ready = "true";
    route();
  }

  start();
})();
