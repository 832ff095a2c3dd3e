/* Alerts in the console (central/alerts): the overview's panel of active alerts and the markers on
   the table and map (overview.js calls these), the node page's alerts with their history and, for
   an admin, an "Acknowledge" form (POST with the page's CSRF token). Severity is shown by colour,
   symbol and word together (Okabe–Ito colours; an acknowledged alert is outlined and ticked). */
"use strict";
SN.alerts = (function () {
  const { config, T } = SN;
  const RANK = { critical: 0, warning: 1, info: 2 };

  function byNode(alerts) {
    const found = {};
    for (const a of alerts) { (found[a.node] = found[a.node] || []).push(a); }
    return found;
  }
  function worst(alerts) {
    return alerts.slice().sort((a, b) => (a.state === "open" ? 0 : 1) - (b.state === "open" ? 0 : 1)
      || RANK[a.severity] - RANK[b.severity])[0];
  }
  function countText(n) { return n === 1 ? T.alert_count_1 : T.alert_count_n.replace("{n}", n); }
  /* The marker of a node's active alerts: "⚠ 2 alerts" in the worst severity's colour. */
  function mark(alerts) {
    const top = worst(alerts), acked = alerts.every((a) => a.state === "acknowledged");
    const span = SN.el("span", { class: "alert-mark sev-" + top.severity + (acked ? " acked" : ""),
                                 "data-alerts": alerts.length },
      (acked ? "✓ " : "⚠ ") + countText(alerts.length));
    span.title = alerts.map((a) => T["sev_" + a.severity] + ": " + a.summary).join("\n");
    return span;
  }
  function stateCell(alert) {
    const symbol = { open: "⚠", acknowledged: "✓", resolved: "○" }[alert.state];
    const td = SN.el("td", {});
    td.appendChild(SN.el("span", { class: "alert-state alert-" + alert.state, "data-state": alert.state },
      symbol + " " + T["alert_" + alert.state]));
    if (alert.late) { td.appendChild(SN.el("span", { class: "muted" }, " " + T.late_alert)); }
    return td;
  }
  function severityCell(alert) {
    const td = SN.el("td", {});
    td.appendChild(SN.el("span", { class: "alert-mark sev-" + alert.severity }, "⚠ " + T["sev_" + alert.severity]));
    return td;
  }
  function fill(table, rows, columns) {
    const body = SN.el("tbody");
    if (!rows.length) { body.appendChild(SN.el("tr")).appendChild(SN.el("td", { colspan: columns, class: "muted" }, T.no_alerts)); }
    for (const tr of rows) { body.appendChild(tr); }
    table.replaceChild(body, table.tBodies[0]);
  }

  /* Overview: the active alerts, critical and open first. */
  function renderPanel(alerts) {
    const table = document.getElementById("alerts");
    if (!table) { return; }
    const sorted = alerts.slice().sort((a, b) => (a.state === "open" ? 0 : 1) - (b.state === "open" ? 0 : 1)
      || RANK[a.severity] - RANK[b.severity] || b.opened_ms - a.opened_ms);
    fill(table, sorted.map((a) => {
      const tr = SN.el("tr", { "data-alert": a.id, "data-node": a.node, "data-state": a.state });
      const first = SN.el("td");
      first.appendChild(SN.el("a", { href: "/console/nodes/" + encodeURIComponent(a.node) }, a.node));
      tr.appendChild(first);
      tr.appendChild(severityCell(a));
      tr.appendChild(stateCell(a));
      tr.appendChild(SN.el("td", {}, a.summary));
      tr.appendChild(SN.el("td", {}, SN.time(a.opened_ms)));
      return tr;
    }), 5);
    document.getElementById("alert-count").textContent = "(" + alerts.length + ")";
  }
  async function active() {
    if (!config.alerts) { return []; }
    return (await SN.getJSON("/v1/alerts?state=active&limit=1000")).alerts;
  }

  /* Node page: every alert of the node (newest first) with its history; admins may acknowledge. */
  const openHistories = new Set();
  function historyCell(alert) {
    const td = SN.el("td"), details = SN.el("details", { "data-alert": alert.id });
    if (openHistories.has(alert.id)) { details.open = true; }
    details.addEventListener("toggle", () => {
      if (details.open) { openHistories.add(alert.id); } else { openHistories.delete(alert.id); }
    });
    details.appendChild(SN.el("summary", {}, T.history + " (" + alert.history.length + ")"));
    const list = SN.el("ol", { class: "alert-history" });
    for (const e of alert.history) {
      const text = SN.time(e.at_ms) + " — " + (T["transition_" + e.transition] || e.transition)
        + (e.actor ? " · " + e.actor : "") + (e.value != null ? " · " + SN.number(e.value) : "")
        + (e.late ? " · " + T.late_alert : "") + (e.detail ? " · " + e.detail : "");
      list.appendChild(SN.el("li", { "data-transition": e.transition }, text));
    }
    details.appendChild(list);
    td.appendChild(details);
    return td;
  }
  function ackCell(alert) {
    const td = SN.el("td");
    if (!config.can_ack || alert.state !== "open") { return td; }
    const token = document.querySelector('input[name="csrf"]').value;
    const form = SN.el("form", { method: "post", action: "/console/alerts/" + alert.id + "/ack", class: "ack" });
    form.appendChild(SN.el("input", { type: "hidden", name: "csrf", value: token }));
    form.appendChild(SN.el("input", { type: "hidden", name: "next", value: location.pathname + location.search }));
    form.appendChild(SN.el("button", { type: "submit", class: "ack", id: "ack-" + alert.id }, T.acknowledge));
    td.appendChild(form);
    return td;
  }
  function renderNode(alerts) {
    const table = document.getElementById("node-alerts");
    fill(table, alerts.map((a) => {
      const tr = SN.el("tr", { "data-alert": a.id, "data-state": a.state });
      tr.appendChild(stateCell(a));
      tr.appendChild(severityCell(a));
      tr.appendChild(SN.el("td", {}, a.summary));
      tr.appendChild(SN.el("td", {}, SN.time(a.opened_ms)));
      tr.appendChild(SN.el("td", {}, a.acknowledged_by ? a.acknowledged_by + " · " + SN.time(a.acknowledged_ms) : "–"));
      tr.appendChild(SN.el("td", {}, a.resolved_ms ? SN.time(a.resolved_ms) : "–"));
      tr.appendChild(historyCell(a));
      tr.appendChild(ackCell(a));
      return tr;
    }), 8);
    const live = alerts.filter((a) => a.state !== "resolved").length;
    document.getElementById("node-alert-count").textContent = "(" + live + " / " + alerts.length + ")";
  }
  function pollNode(node) {
    if (!config.alerts || !document.getElementById("node-alerts")) { return; }
    const url = "/v1/alerts?" + new URLSearchParams({ node, state: "all", limit: "50", history: "true" });
    const refresh = async () => {
      try { renderNode((await SN.getJSON(url)).alerts); SN.showError(false); } catch (error) { SN.showError(true); }
      setTimeout(refresh, Math.max(config.poll_s, 2) * 1000);
    };
    refresh();
  }
  return { byNode, mark, worst, renderPanel, active, pollNode };
})();
