/* The overview: map of node positions (offline SVG; optional tiles) and a sortable table, polled. */
"use strict";
(function () {
  const { config, T } = SN;
  const table = document.getElementById("nodes");
  const STATE_ORDER = { silent: 0, late: 1, buffering: 2, live: 3 };
  let sortKey = "node_id", sortDir = 1, latest = null, alertsByNode = {};

  function channelEnding(node, suffix) {
    for (const [name, channel] of Object.entries(node.channels)) { if (name.endsWith(suffix)) { return channel; } }
    return null;
  }
  function row(node) {
    const flood = channelEnding(node, ".depth_cm"), pm25 = channelEnding(node, ".pm2_5_ugm3");
    const temperature = channelEnding(node, ".temperature_c");
    return { node, flood, pm25, temperature, keys: {
      node_id: node.node_id, state: STATE_ORDER[node.state], ward: (node.location || {}).ward || "",
      flood: flood ? flood.value : null, pm25: pm25 ? pm25.value : null,
      temperature: temperature ? temperature.value : null, storm: node.storm ? 1 : 0,
      age: node.last_seen_age_s, backlog: node.health.backlog_readings, cpu: node.health.cpu_temp_c,
      disk: node.health.disk_used_pct, clock: node.health.clock_synced ? 1 : 0 } };
  }
  function valueCell(channel, digits) {
    const td = SN.el("td", { class: "num" });
    if (!channel || channel.value == null) { td.textContent = "–"; return td; }
    td.textContent = SN.number(channel.value, digits) + " " + channel.unit;
    if (channel.band) {
      td.classList.add("band", SN.bandClass(channel.band));
      td.appendChild(SN.el("span", { class: "band-label" }, " " + SN.bandLabel(channel.band)));
    }
    td.title = SN.time(channel.wall_ms) + " (" + SN.age(channel.age_s) + ")";
    return td;
  }
  function renderTable(rows) {
    rows.sort((a, b) => {
      const x = a.keys[sortKey], y = b.keys[sortKey];
      if (x == null && y == null) { return a.keys.node_id < b.keys.node_id ? -1 : 1; }
      if (x == null) { return 1; }
      if (y == null) { return -1; }
      return (x < y ? -1 : x > y ? 1 : 0) * sortDir || (a.keys.node_id < b.keys.node_id ? -1 : 1);
    });
    const body = SN.el("tbody");
    for (const r of rows) {
      const n = r.node, tr = SN.el("tr", { "data-node": n.node_id, "data-state": n.state });
      const link = SN.el("a", { href: "/console/nodes/" + encodeURIComponent(n.node_id) }, n.node_id);
      const first = SN.el("td"); first.appendChild(link); tr.appendChild(first);
      const alerts = alertsByNode[n.node_id];
      if (alerts) { tr.setAttribute("data-alerts", alerts.length); first.append(" "); first.appendChild(SN.alerts.mark(alerts)); }
      const state = SN.el("td"); state.appendChild(SN.stateBadge(n.state)); tr.appendChild(state);
      tr.appendChild(SN.el("td", {}, (n.location || {}).ward || ""));
      tr.appendChild(valueCell(r.flood, 1));
      tr.appendChild(valueCell(r.pm25, 0));
      tr.appendChild(valueCell(r.temperature, 1));
      tr.appendChild(SN.el("td", {}, n.storm ? "⚡ " + T.storm_on : ""));
      const seen = SN.el("td", { class: "num" }, SN.age(n.last_seen_age_s)); seen.title = SN.time(n.last_seen_ms);
      tr.appendChild(seen);
      tr.appendChild(SN.el("td", { class: "num" }, SN.number(n.health.backlog_readings, 0)));
      tr.appendChild(SN.el("td", { class: "num" }, n.health.cpu_temp_c == null ? "–" : SN.number(n.health.cpu_temp_c) + " °C"));
      tr.appendChild(SN.el("td", { class: "num" }, n.health.disk_used_pct == null ? "–" : SN.number(n.health.disk_used_pct, 0) + " %"));
      const clock = n.health.clock_synced == null ? "–" : n.health.clock_synced ? "✓ " + T.clock_ok : "✗ " + T.clock_bad;
      tr.appendChild(SN.el("td", {}, clock + (n.health.clock_offset_ms != null ? " (" + n.health.clock_offset_ms + " ms)" : "")));
      body.appendChild(tr);
    }
    table.replaceChild(body, table.tBodies[0]);
    for (const th of table.tHead.rows[0].cells) {
      th.setAttribute("aria-sort", th.dataset.key === sortKey ? (sortDir > 0 ? "ascending" : "descending") : "none");
    }
    document.getElementById("node-count").textContent = "(" + rows.length + ")";
  }

  function mercator(lat, lon) {
    const sin = Math.sin(lat * Math.PI / 180);
    return [(lon + 180) / 360, 0.5 - Math.log((1 + sin) / (1 - sin)) / (4 * Math.PI)];
  }
  function marker(state, x, y) {
    const attrs = { class: "shape state-" + state };
    if (state === "live") { return SN.svg("circle", { ...attrs, cx: x, cy: y, r: 7 }); }
    if (state === "buffering") { return SN.svg("path", { ...attrs, d: `M${x} ${y - 9}L${x + 9} ${y}L${x} ${y + 9}L${x - 9} ${y}Z` }); }
    if (state === "late") { return SN.svg("path", { ...attrs, d: `M${x} ${y - 9}L${x + 8} ${y + 6}L${x - 8} ${y + 6}Z` }); }
    return SN.svg("path", { ...attrs, d: `M${x - 6} ${y - 6}L${x + 6} ${y + 6}M${x + 6} ${y - 6}L${x - 6} ${y + 6}` });
  }
  function renderMap(nodes) {
    const map = document.getElementById("map"), W = 800, H = 420, PAD = 40;
    const placed = nodes.filter((n) => n.location);
    while (map.firstChild) { map.removeChild(map.firstChild); }
    map.appendChild(SN.svg("rect", { x: 0, y: 0, width: W, height: H, class: "map-bg" }));
    const unplaced = nodes.length - placed.length;
    document.getElementById("map-unplaced").textContent = unplaced ? unplaced + " × " + T.no_location : "";
    if (!placed.length) { return; }
    const points = placed.map((n) => mercator(n.location.lat, n.location.lon));
    const xs = points.map((p) => p[0]), ys = points.map((p) => p[1]);
    const x0 = Math.min(...xs), x1 = Math.max(...xs), y0 = Math.min(...ys), y1 = Math.max(...ys);
    let scale = Math.min((W - 2 * PAD) / Math.max(x1 - x0, 1e-9), (H - 2 * PAD) / Math.max(y1 - y0, 1e-9), 256 * 2 ** 18);
    let zoom = null;
    if (config.tile_url) { zoom = Math.max(0, Math.min(18, Math.floor(Math.log2(scale / 256)))); scale = 256 * 2 ** zoom; }
    const cx = (x0 + x1) / 2, cy = (y0 + y1) / 2;
    const px = (x) => W / 2 + (x - cx) * scale, py = (y) => H / 2 + (y - cy) * scale;
    if (zoom !== null) {
      const n = 2 ** zoom, tx0 = Math.floor((cx - W / 2 / scale) * n), tx1 = Math.floor((cx + W / 2 / scale) * n);
      const ty0 = Math.floor((cy - H / 2 / scale) * n), ty1 = Math.floor((cy + H / 2 / scale) * n);
      for (let tx = tx0; tx <= tx1; tx++) {
        for (let ty = Math.max(0, ty0); ty <= Math.min(n - 1, ty1); ty++) {
          const href = config.tile_url.replace("{z}", zoom).replace("{x}", ((tx % n) + n) % n).replace("{y}", ty);
          map.appendChild(SN.svg("image", { href, x: px(tx / n), y: py(ty / n), width: 256, height: 256 }));
        }
      }
    }
    // a scale bar: metres per pixel at the map's centre latitude
    const lat = Math.atan(Math.sinh(Math.PI * (1 - 2 * cy))) * 180 / Math.PI;
    const metresPerPx = 40075016.686 * Math.cos(lat * Math.PI / 180) / scale;
    const target = metresPerPx * 120, power = 10 ** Math.floor(Math.log10(target));
    const metres = [5, 2, 1].map((k) => k * power).find((m) => m <= target) || power;
    const length = metres / metresPerPx;
    map.appendChild(SN.svg("path", { d: `M20 ${H - 22}v6h${length}v-6`, class: "scale" }));
    map.appendChild(SN.svg("text", { x: 20, y: H - 28, class: "marker-label" },
      metres >= 1000 ? metres / 1000 + " km" : metres + " m"));
    placed.forEach((n, i) => {
      const x = px(points[i][0]), y = py(points[i][1]);
      const link = SN.svg("a", { href: "/console/nodes/" + encodeURIComponent(n.node_id) });
      const g = SN.svg("g", { class: "marker", "data-node": n.node_id, "data-state": n.state });
      const alerts = alertsByNode[n.node_id];
      const warning = alerts ? " — ⚠ " + alerts.map((a) => T["sev_" + a.severity] + ": " + a.summary).join("; ") : "";
      g.appendChild(SN.svg("title", {}, n.node_id + " — " + T[n.state] + (n.location.label ? " — " + n.location.label : "") + warning));
      if (alerts) {  // a ring in the worst alert's colour, dashed once acknowledged, and "⚠" in the label
        const top = SN.alerts.worst(alerts), acked = alerts.every((a) => a.state === "acknowledged");
        g.setAttribute("data-alerts", alerts.length);
        g.appendChild(SN.svg("circle", { cx: x, cy: y, r: 14, class: "alert-ring sev-" + top.severity + (acked ? " acked" : "") }));
      }
      g.appendChild(marker(n.state, x, y));
      const depth = channelEnding(n, ".depth_cm");
      const label = (alerts ? "⚠ " : "") + n.node_id + (depth && depth.value != null ? " · " + SN.number(depth.value) + " cm" : "");
      g.appendChild(SN.svg("text", { x: x + (alerts ? 18 : 11), y: y + 4, class: "marker-label" }, label));
      link.appendChild(g);
      map.appendChild(link);
    });
  }

  async function refresh() {
    try {
      const [doc, alerts] = await Promise.all([SN.getJSON("/v1/latest"), SN.alerts.active()]);
      latest = doc;
      alertsByNode = SN.alerts.byNode(alerts);
      SN.alerts.renderPanel(alerts);
      renderMap(latest.nodes);
      renderTable(latest.nodes.map(row));
      document.getElementById("updated").textContent = T.updated + " " + SN.time(latest.server_time_ms);
      SN.showError(false);
    } catch (error) {
      SN.showError(true);
    } finally {
      setTimeout(refresh, config.poll_s * 1000);
    }
  }
  for (const th of table.tHead.rows[0].cells) {
    th.tabIndex = 0;
    const sort = () => {
      sortDir = sortKey === th.dataset.key ? -sortDir : 1;
      sortKey = th.dataset.key;
      if (latest) { renderTable(latest.nodes.map(row)); }
    };
    th.addEventListener("click", sort);
    th.addEventListener("keydown", (e) => { if (e.key === "Enter") { sort(); } });
  }
  refresh();
})();
