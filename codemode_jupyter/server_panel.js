// Front end of ServerPanel (codemode_jupyter/server_panel.py): the MCP server a notebook serves
// and the requests agents send to it. Rows arrive as a bounded list in the `requests` trait
// (whenever a request starts or ends) and as `{type: "rows"}` custom messages while requests
// run; each row is redrawn only when it changed, and expanded rows stay expanded.

function h(tag, className, text) {
  const node = document.createElement(tag);
  if (className) node.className = className;
  if (text !== undefined && text !== null) node.textContent = String(text);
  return node;
}

function duration(seconds) {
  if (seconds === null || seconds === undefined) return "";
  return seconds < 10 ? `${Math.round(seconds * 1000)} ms` : `${seconds.toFixed(1)} s`;
}

function firstLine(text, limit) {
  const line = String(text || "").replace(/\s+/g, " ").trim();
  return line.length > limit ? `${line.slice(0, limit - 1)}…` : line;
}

function section(title, body) {
  const box = h("div", "cm-serve-section");
  box.appendChild(h("div", "cm-serve-label", title));
  box.appendChild(body);
  return box;
}

function callsTable(row) {
  const table = h("table", "cm-serve-calls");
  const head = h("tr");
  for (const title of ["call", "arguments", "time", "result"]) head.appendChild(h("th", "", title));
  table.appendChild(head);
  for (const call of row.calls) {
    const tr = h("tr", call.error ? "cm-serve-call-failed" : "");
    tr.appendChild(h("td", "cm-serve-mono", call.name));
    tr.appendChild(h("td", "cm-serve-mono", call.args));
    tr.appendChild(h("td", "", call.duration === null ? "running…" : duration(call.duration)));
    tr.appendChild(h("td", "cm-serve-mono", call.error ?? call.result ?? ""));
    table.appendChild(tr);
  }
  return table;
}

function requestView(row, open, onToggle) {
  const details = h("details", `cm-serve-request cm-serve-${row.status}`);
  details.open = open;
  details.addEventListener("toggle", () => onToggle(row.id, details.open));
  const summary = h("summary", "cm-serve-summary");
  summary.appendChild(h("span", "cm-serve-id", `#${row.id}`));
  summary.appendChild(h("span", "cm-serve-kind", row.kind));
  summary.appendChild(h("span", `cm-serve-badge cm-serve-badge-${row.status}`, row.status));
  summary.appendChild(h("span", "cm-serve-time", duration(row.elapsed)));
  if (row.kind === "execute") {
    const count = row.calls.length + row.calls_omitted;
    summary.appendChild(h("span", "cm-serve-count", `${count} call${count === 1 ? "" : "s"}`));
  }
  summary.appendChild(h("span", "cm-serve-code-line", firstLine(row.code, 90)));
  details.appendChild(summary);

  const body = h("div", "cm-serve-body");
  body.appendChild(section(row.kind === "search" ? "query" : "code", h("pre", "cm-serve-pre", row.code)));
  if (row.logs.length || row.logs_omitted) {
    const pre = h("pre", "cm-serve-pre cm-serve-console");
    if (row.logs_omitted) pre.appendChild(h("div", "cm-serve-muted", `(${row.logs_omitted} earlier lines)`));
    for (const [level, text] of row.logs) pre.appendChild(h("div", `cm-serve-log-${level}`, text));
    body.appendChild(section("console", pre));
  }
  if (row.calls.length) {
    const wrap = h("div");
    if (row.calls_omitted) wrap.appendChild(h("div", "cm-serve-muted", `(${row.calls_omitted} more calls not shown)`));
    wrap.appendChild(callsTable(row));
    body.appendChild(section("host calls", wrap));
  }
  if (row.error) body.appendChild(section(`error (${row.error_kind || "error"})`, h("pre", "cm-serve-pre cm-serve-error", row.error)));
  else if (row.result !== null) body.appendChild(section("result", h("pre", "cm-serve-pre", row.result)));
  else if (row.status === "running") body.appendChild(h("div", "cm-serve-muted", "running…"));
  details.appendChild(body);
  return details;
}

function render({ model, el }) {
  const root = h("div", "cm-serve");
  const header = h("div", "cm-serve-header");
  const list = h("div", "cm-serve-list");
  root.appendChild(header);
  root.appendChild(list);
  el.appendChild(root);

  let rows = new Map();
  const views = new Map(); // id -> {key, node}
  const open = new Set();
  const toggle = (id, isOpen) => (isOpen ? open.add(id) : open.delete(id));

  function drawHeader() {
    header.replaceChildren();
    const title = h("div", "cm-serve-title");
    title.appendChild(h("span", "cm-serve-name", `MCP server “${model.get("name")}”`));
    const status = model.get("status");
    title.appendChild(h("span", `cm-serve-badge cm-serve-badge-${status}`, status));
    header.appendChild(title);
    const url = h("div", "cm-serve-url");
    url.appendChild(h("code", "", model.get("url")));
    header.appendChild(url);
    const tools = model.get("tools");
    header.appendChild(h("div", "cm-serve-tools", `codemode.* : ${tools.length ? tools.join(", ") : "(no functions yet)"}`));
    header.appendChild(h("div", "cm-serve-muted", model.get("limits")));
    const counts = `${model.get("total")} requests · ${model.get("ok_count")} ok · ${model.get("failed_count")} failed · ${model.get("busy_count")} refused (busy) · ${model.get("running_count")} running`;
    header.appendChild(h("div", "cm-serve-counts", counts));
  }

  function drawRows() {
    const ordered = [...rows.values()].sort((a, b) => b.id - a.id);
    const seen = new Set();
    const nodes = [];
    for (const row of ordered) {
      seen.add(row.id);
      const key = JSON.stringify(row);
      let view = views.get(row.id);
      if (!view || view.key !== key) {
        view = { key, node: requestView(row, open.has(row.id), toggle) };
        views.set(row.id, view);
      }
      nodes.push(view.node);
    }
    for (const id of [...views.keys()]) if (!seen.has(id)) views.delete(id);
    if (!nodes.length) nodes.push(h("div", "cm-serve-muted", "No requests yet: connect an MCP client with the URL and token printed above."));
    list.replaceChildren(...nodes);
  }

  function fromModel() {
    rows = new Map(model.get("requests").map((row) => [row.id, row]));
    drawRows();
  }

  function onMessage(message) {
    if (!message || message.type !== "rows") return;
    for (const row of message.rows) {
      const known = rows.get(row.id);
      // a late progress message must not undo a finished state
      if (known && known.status !== "running" && row.status === "running") continue;
      rows.set(row.id, row);
    }
    drawRows();
  }

  const headerTraits = ["name", "url", "status", "tools", "limits", "total", "ok_count", "failed_count", "busy_count", "running_count"];
  for (const trait of headerTraits) model.on(`change:${trait}`, drawHeader);
  model.on("change:requests", fromModel);
  model.on("msg:custom", onMessage);
  drawHeader();
  fromModel();
  return () => {
    for (const trait of headerTraits) model.off(`change:${trait}`, drawHeader);
    model.off("change:requests", fromModel);
    model.off("msg:custom", onMessage);
  };
}

export default { render };
