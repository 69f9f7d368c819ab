// codemode_jupyter run widget (anywidget ES module).
//
// While a cell runs, Python sends batched deltas as custom messages ({type: "delta", ...}):
// new console lines, changed call rows, counters. They are collected per model (so views
// created later, or several views of one model, see everything) in `initialize`. When the run
// ends, Python sets the final traits (status, result, logs, calls, stubs, ...), which are the
// source of truth for the saved notebook and for re-rendering after a page reload.

// anywidget hands `initialize` and each `render` a different proxy of the same model, so the
// per-model store is found through the model's own `key` trait (unique per run).
const stores = new Map();
const TRAITS = ["status", "title", "duration", "call_count", "failed_count", "result",
  "has_result", "result_truncated", "error", "logs", "logs_omitted", "calls", "stubs", "tools"];

function fromTraits(model) {
  return {
    logs: (model.get("logs") || []).slice(),
    logsOmitted: model.get("logs_omitted") || 0,
    rows: (model.get("calls") || []).slice(),
    callCount: model.get("call_count") || 0,
    failedCount: model.get("failed_count") || 0,
    elapsed: model.get("duration") || 0,
    elapsedAt: performance.now(),
    epoch: 0,
    rowVersions: [],
    listeners: new Set(),
  };
}

function storeKey(model) {
  return model.get("key") || model;
}

function storeFor(model) {
  const key = storeKey(model);
  let store = stores.get(key);
  if (!store) {
    store = fromTraits(model);
    stores.set(key, store);
  }
  return store;
}

function notify(store) {
  for (const listener of store.listeners) listener();
}

function applyDelta(store, delta, maxLogs) {
  if (delta.logs && delta.logs.length) {
    store.logs.push(...delta.logs);
    store.logsOmitted += delta.logs_skipped || 0;
    if (store.logs.length > maxLogs) {
      const extra = store.logs.length - maxLogs;
      store.logs.splice(0, extra);
      store.logsOmitted += extra;
      store.epoch += 1;
    }
  }
  for (const row of delta.rows || []) {
    const index = row.n - 1;
    store.rows[index] = row;
    store.rowVersions[index] = (store.rowVersions[index] || 0) + 1;
  }
  store.callCount = delta.call_count ?? store.callCount;
  store.failedCount = delta.failed_count ?? store.failedCount;
  store.elapsed = delta.elapsed ?? store.elapsed;
  store.elapsedAt = performance.now();
}

function resetStore(model) {
  const store = storeFor(model);
  const fresh = fromTraits(model);
  const epoch = store.epoch + 1;
  Object.assign(store, fresh, { listeners: store.listeners, epoch, rowVersions: [] });
  store.rowVersions = store.rows.map(() => epoch);
  notify(store);
}

// ------------------------------------------------------------------ small DOM helpers

function h(tag, className, text) {
  const node = document.createElement(tag);
  if (className) node.className = className;
  if (text !== undefined && text !== null) node.textContent = String(text);
  return node;
}

function seconds(value) {
  if (value === null || value === undefined) return "…";
  if (value < 1) return `${(value * 1000).toFixed(1)} ms`;
  return `${value.toFixed(2)} s`;
}

function plural(n, word) {
  return `${n.toLocaleString()} ${word}${n === 1 ? "" : "s"}`;
}

function section(title, open) {
  const details = h("details", "cmj-section");
  details.open = open;
  const summary = h("summary", "cmj-summary", title);
  const body = h("div", "cmj-body");
  details.append(summary, body);
  return { details, summary, body };
}

// ------------------------------------------------------------------ JSON tree

const TREE_CHILDREN = 500;

function jsonLeaf(value) {
  if (value === null) return h("span", "cmj-json-null", "null");
  const kind = typeof value;
  const text = kind === "string" ? JSON.stringify(value) : String(value);
  return h("span", `cmj-json-${kind}`, text);
}

function jsonNode(value, label, depth) {
  const isArray = Array.isArray(value);
  if (value === null || typeof value !== "object") {
    const line = h("div", "cmj-json-line");
    if (label !== null) line.append(h("span", "cmj-json-key", `${label}: `));
    line.append(jsonLeaf(value));
    return line;
  }
  const keys = isArray ? value.map((_, i) => i) : Object.keys(value);
  const details = h("details", "cmj-json-node");
  const summary = h("summary", "cmj-json-summary");
  if (label !== null) summary.append(h("span", "cmj-json-key", `${label}: `));
  const shape = isArray ? `Array(${keys.length})` : `{${plural(keys.length, "key")}}`;
  summary.append(h("span", "cmj-json-shape", shape));
  details.append(summary);
  let built = false;
  const build = () => {
    if (built) return;
    built = true;
    const children = h("div", "cmj-json-children");
    for (const key of keys.slice(0, TREE_CHILDREN)) {
      children.append(jsonNode(value[key], key, depth + 1));
    }
    if (keys.length > TREE_CHILDREN) {
      children.append(h("div", "cmj-muted", `… ${keys.length - TREE_CHILDREN} more`));
    }
    details.append(children);
  };
  details.addEventListener("toggle", () => details.open && build());
  if (depth < 2 && keys.length <= 50) {
    details.open = true;
    build();
  }
  return details;
}

// ------------------------------------------------------------------ the view

function render({ model, el }) {
  const store = storeFor(model);
  const root = h("div", "cmj-root");
  el.append(root);

  const header = h("div", "cmj-header");
  const badge = h("span", "cmj-badge");
  const title = h("span", "cmj-title");
  const meta = h("span", "cmj-meta");
  header.append(badge, title, meta);

  const errorBox = h("div", "cmj-error");
  const result = section("Result", true);
  const consoleSec = section("Console", true);
  const logBox = h("div", "cmj-console");
  const logNote = h("div", "cmj-muted");
  consoleSec.body.append(logNote, logBox);
  const callsSec = section("Calls", true);
  const table = h("table", "cmj-calls");
  const thead = h("thead");
  const headRow = h("tr");
  for (const name of ["#", "function", "arguments", "result / error", "start", "duration", ""]) {
    // Numeric columns are right-aligned, like their cells.
    headRow.append(h("th", ["#", "start", "duration"].includes(name) ? "cmj-num" : null, name));
  }
  thead.append(headRow);
  const tbody = h("tbody");
  table.append(thead, tbody);
  const callsNote = h("div", "cmj-muted");
  // A narrow output area scrolls the table sideways instead of spilling out of the cell.
  const tableWrap = h("div", "cmj-calls-wrap");
  tableWrap.append(table);
  callsSec.body.append(tableWrap, callsNote);
  const stubsSec = section("Callable API", false);
  const stubsPre = h("pre", "cmj-stubs");
  stubsSec.body.append(stubsPre);

  root.append(header, errorBox, result.details, consoleSec.details, callsSec.details,
    stubsSec.details);

  const view = {
    logEpoch: -1,
    logCount: 0,
    rowVersions: [],
    rowNodes: [],
    expanded: new Set(),
    resultKey: null,
    stubs: null,
  };

  function renderLogs() {
    if (view.logEpoch !== store.epoch) {
      logBox.replaceChildren();
      view.logEpoch = store.epoch;
      view.logCount = 0;
    }
    const fragment = document.createDocumentFragment();
    for (const [time, level, text] of store.logs.slice(view.logCount)) {
      const line = h("div", `cmj-log cmj-level-${level}`);
      line.title = `${level} at ${seconds(time)}`;
      if (level !== "log") line.append(h("span", "cmj-level", level));
      line.append(document.createTextNode(text));
      fragment.append(line);
    }
    view.logCount = store.logs.length;
    logBox.append(fragment);
    logNote.textContent = store.logsOmitted
      ? `… ${store.logsOmitted.toLocaleString()} earlier lines not shown ` +
        "(all of them are in codemode_jupyter.last_run().logs)"
      : "";
    const shown = store.logs.length + store.logsOmitted;
    consoleSec.summary.textContent = `Console (${shown.toLocaleString()})`;
    consoleSec.details.style.display = shown ? "" : "none";
    if (model.get("status") === "running") logBox.scrollTop = logBox.scrollHeight;
  }

  function detailRow(row) {
    const tr = h("tr", "cmj-detail");
    const td = h("td");
    td.colSpan = 7;
    const parts = [["arguments", row.args_full || row.args]];
    if (row.error !== undefined) parts.push([`error (${row.error_type || "Error"})`, row.error]);
    else if (row.result !== undefined) parts.push(["result", row.result_full || row.result]);
    for (const [name, text] of parts) {
      td.append(h("div", "cmj-detail-label", name), h("pre", "cmj-detail-value", text));
    }
    tr.append(td);
    return tr;
  }

  function buildRow(row) {
    const tr = h("tr", "cmj-row");
    if (row.error !== undefined) tr.classList.add("cmj-row-error");
    if (row.duration === null) tr.classList.add("cmj-row-running");
    tr.append(h("td", "cmj-num", row.n), h("td", "cmj-fn", row.name));
    const args = h("td", "cmj-value", row.args);
    let outcome;
    if (row.error !== undefined) outcome = h("td", "cmj-value cmj-err", row.error);
    else if (row.duration === null) outcome = h("td", "cmj-value cmj-muted", "running…");
    else outcome = h("td", "cmj-value", row.result);
    const timeline = h("td", "cmj-timeline");
    const bar = h("div", "cmj-bar");
    timeline.append(bar);
    tr.append(args, outcome, h("td", "cmj-num", seconds(row.start)),
      h("td", "cmj-num", seconds(row.duration)), timeline);
    const expandable = row.args_full || row.result_full || row.error !== undefined;
    if (expandable) tr.classList.add("cmj-expandable");
    tr.addEventListener("click", () => {
      if (view.expanded.has(row.n)) view.expanded.delete(row.n);
      else view.expanded.add(row.n);
      view.rowVersions[row.n - 1] = -1;
      update();
    });
    const nodes = [tr];
    if (view.expanded.has(row.n)) nodes.push(detailRow(row));
    return { nodes, bar, row };
  }

  function renderCalls() {
    const rows = store.rows;
    let anchor = null;
    for (let i = rows.length - 1; i >= 0; i--) {
      const row = rows[i];
      if (!row) continue;
      if (view.rowVersions[i] !== store.rowVersions[i] || !view.rowNodes[i]) {
        const built = buildRow(row);
        const old = view.rowNodes[i];
        if (old) {
          old.nodes[0].before(...built.nodes);
          for (const node of old.nodes) node.remove();
        } else {
          if (anchor) anchor.before(...built.nodes);
          else tbody.append(...built.nodes);
        }
        view.rowNodes[i] = built;
        view.rowVersions[i] = store.rowVersions[i];
      }
      anchor = view.rowNodes[i].nodes[0];
    }
    // Timeline bars: position every call on the run's time axis.
    let total = store.elapsed || 0;
    for (const entry of view.rowNodes) {
      if (!entry) continue;
      const end = entry.row.start + (entry.row.duration ?? Math.max(0, store.elapsed - entry.row.start));
      total = Math.max(total, end);
    }
    for (const entry of view.rowNodes) {
      if (!entry) continue;
      const { row, bar } = entry;
      const duration = row.duration ?? Math.max(0, store.elapsed - row.start);
      bar.style.left = `${total ? (100 * row.start) / total : 0}%`;
      bar.style.width = `${Math.max(0.5, total ? (100 * duration) / total : 0)}%`;
      bar.classList.toggle("cmj-bar-error", row.error !== undefined);
    }
    const shownRows = rows.filter(Boolean).length;
    const hidden = store.callCount - shownRows;
    callsNote.textContent = hidden > 0
      ? `… ${hidden.toLocaleString()} more calls not shown ` +
        "(the full trace is in codemode_jupyter.last_run().calls)"
      : "";
    callsSec.summary.textContent = `Calls (${store.callCount.toLocaleString()}` +
      `${store.failedCount ? `, ${store.failedCount.toLocaleString()} failed` : ""})`;
    callsSec.details.style.display = store.callCount ? "" : "none";
  }

  function renderResult(status) {
    const text = model.get("result");
    const key = `${status}:${text}`;
    if (view.resultKey === key) return;
    view.resultKey = key;
    result.body.replaceChildren();
    const show = status === "done" && model.get("has_result");
    result.details.style.display = show ? "" : "none";
    if (!show) return;
    if (model.get("result_truncated")) {
      result.body.append(h("div", "cmj-muted",
        "The result is too large to show in full (see codemode_jupyter.last_run().result):"));
      result.body.append(h("pre", "cmj-stubs", text));
      return;
    }
    let value;
    try {
      value = JSON.parse(text);
    } catch (err) {
      result.body.append(h("pre", "cmj-stubs", text));
      return;
    }
    result.body.append(jsonNode(value, null, 0));
  }

  function renderError() {
    const error = model.get("error") || {};
    errorBox.replaceChildren();
    if (!error.name) {
      errorBox.style.display = "none";
      return;
    }
    errorBox.style.display = "";
    errorBox.append(h("div", "cmj-error-head", `${error.name}: ${error.message}`));
    if (error.stack) {
      const frames = error.stack.split("\n").filter((l) => /^\s+at /.test(l)).join("\n");
      if (frames) errorBox.append(h("pre", "cmj-error-stack", frames));
    }
  }

  function renderHeader(status) {
    badge.className = `cmj-badge cmj-status-${status}`;
    badge.textContent = status;
    title.textContent = model.get("title") || "codemode";
    let elapsed = store.elapsed;
    if (status === "running") elapsed += (performance.now() - store.elapsedAt) / 1000;
    const parts = [seconds(elapsed), plural(store.callCount, "call")];
    if (store.failedCount) parts.push(`${store.failedCount.toLocaleString()} failed`);
    meta.textContent = parts.join(" · ");
  }

  function update() {
    const status = model.get("status") || "running";
    root.dataset.status = status;
    renderHeader(status);
    renderError();
    renderResult(status);
    renderLogs();
    renderCalls();
    const stubs = model.get("stubs") || "";
    if (view.stubs !== stubs) {
      view.stubs = stubs;
      stubsPre.textContent = stubs;
      const count = (model.get("tools") || []).length;
      stubsSec.summary.textContent = `Callable API (${plural(count, "function")})`;
    }
  }

  store.listeners.add(update);
  const onChange = () => update();
  for (const name of TRAITS) model.on(`change:${name}`, onChange);
  const ticker = setInterval(() => {
    if ((model.get("status") || "running") === "running") renderHeader("running");
  }, 200);
  update();
  return () => {
    clearInterval(ticker);
    store.listeners.delete(update);
    for (const name of TRAITS) model.off(`change:${name}`, onChange);
  };
}

export default {
  initialize({ model }) {
    const store = storeFor(model);
    const onMessage = (msg) => {
      if (!msg || msg.type !== "delta") return;
      applyDelta(store, msg, model.get("max_logs") || 1000);
      notify(store);
    };
    const onFinal = () => resetStore(model);
    model.on("msg:custom", onMessage);
    model.on("change:status", onFinal);
    return () => {
      model.off("msg:custom", onMessage);
      model.off("change:status", onFinal);
      stores.delete(storeKey(model));
    };
  },
  render,
};
