/* A node's page: health, one chart per channel (uPlot; min–max band and mean), gap timeline. */
"use strict";
(function () {
  const { config, T } = SN;
  const node = config.node, range = config.range;
  const base = "/v1/nodes/" + encodeURIComponent(node);
  const since = "-" + range;
  const COLORS = { mean: "#0072B2", band: "rgba(0,114,178,0.18)", minmax: "rgba(0,114,178,0.5)" };
  const tzDate = (seconds) => uPlot.tzDate(new Date(seconds * 1e3), config.timezone);
  const locale = config.lang === "vi" ? "vi-VN" : "en-GB";
  const short = range === "6h" || range === "24h";
  const tickFormat = new Intl.DateTimeFormat(locale, short
    ? { timeZone: config.timezone, hour: "2-digit", minute: "2-digit", hour12: false }
    : { timeZone: config.timezone, day: "2-digit", month: "2-digit", hour: "2-digit", hour12: false });
  const ticks = (u, splits) => splits.map((s) => tickFormat.format(new Date(s * 1e3)));

  function chart(target, channel, doc) {
    const xs = doc.t.map((ms) => ms / 1000);
    const width = Math.max(300, target.clientWidth || 800);
    const options = {
      width, height: 220, tzDate,
      series: [{}, { label: "min", stroke: COLORS.minmax, width: 1 },
               { label: "max", stroke: COLORS.minmax, width: 1 },
               { label: T.mean, stroke: COLORS.mean, width: 2 }],
      bands: [{ series: [2, 1], fill: COLORS.band }],
      scales: { x: { time: true, range: [doc.since_ms / 1000, doc.until_ms / 1000] } },
      axes: [{ values: ticks }, { label: doc.unit, size: 60 }],
      legend: { live: true },
    };
    return new uPlot(options, [xs, doc.min, doc.max, doc.mean], target);
  }

  async function charts() {
    const holder = document.getElementById("charts");
    const doc = await SN.getJSON(base + "/channels");
    const FIRST = [".depth_cm", ".pm2_5_ugm3", ".rain_rate_mm_h", ".rain_mm"];
    const rank = (name) => { const i = FIRST.findIndex((s) => name.endsWith(s)); return i < 0 ? FIRST.length : i; };
    doc.channels.sort((a, b) => rank(a.channel) - rank(b.channel) || (a.channel < b.channel ? -1 : 1));
    for (const channel of doc.channels) {
      const box = SN.el("figure", { class: "chart", "data-channel": channel.channel });
      const caption = SN.el("figcaption", {}, channel.channel + (channel.unit ? " (" + channel.unit + ")" : ""));
      if (channel.value != null) {
        caption.appendChild(SN.el("span", { class: "muted" }, " — " + SN.number(channel.value) + " " + channel.unit
          + (channel.band ? " " + SN.bandLabel(channel.band) : "") + ", " + SN.age(channel.age_s)));
      }
      box.appendChild(caption);
      const plot = SN.el("div", { class: "plot" });
      box.appendChild(plot);
      holder.appendChild(box);
      const params = new URLSearchParams({ channel: channel.channel, since, step: "auto" });
      SN.getJSON(base + "/series?" + params).then((series) => {
        if (!series.t.length) { plot.appendChild(SN.el("p", { class: "muted" }, T.no_data)); return; }
        chart(plot, channel.channel, series);
        box.setAttribute("data-points", series.t.length);
        box.setAttribute("data-step-ms", series.step_ms);
        if (window.consoleFirstChartMs === undefined) { window.consoleFirstChartMs = performance.now(); }
      }).catch(() => SN.showError(true));
    }
  }

  function healthRow(list, label, value) {
    list.appendChild(SN.el("dt", {}, label));
    list.appendChild(SN.el("dd", {}, value == null || value === "" ? "–" : String(value)));
  }

  function timeline(doc) {
    const state = document.getElementById("node-state");
    state.replaceWith(Object.assign(SN.stateBadge(doc.state), { id: "node-state" }));
    const where = doc.location;
    document.getElementById("node-location").textContent = where
      ? [where.label, where.ward, where.lat.toFixed(5) + ", " + where.lon.toFixed(5)].filter(Boolean).join(" · ")
      : T.no_location;
    const h = doc.health, list = document.getElementById("health");
    list.textContent = "";
    healthRow(list, T.last_upload, SN.time(doc.last_seen_ms));
    healthRow(list, T.backlog, h.backlog_readings == null ? null : SN.number(h.backlog_readings, 0) + " " + T.readings);
    healthRow(list, T.oldest_unsent, h.oldest_reading_age_s == null ? T.none : SN.age(h.oldest_reading_age_s));
    healthRow(list, T.firmware, h.firmware);
    healthRow(list, T.config_hash, h.config_hash);
    healthRow(list, T.clock_offset, h.clock_offset_ms == null ? null : h.clock_offset_ms + " ms");
    healthRow(list, T.clock, h.clock_synced == null ? null : h.clock_synced ? "✓ " + T.clock_ok : "✗ " + T.clock_bad);
    healthRow(list, T.storm, h.storm ? "⚡ " + T.storm_on : "–");

    const svg = document.getElementById("timeline"), W = 1000;
    svg.textContent = "";
    const x = (ms) => Math.max(0, Math.min(W, (ms - doc.since_ms) / (doc.until_ms - doc.since_ms) * W));
    const bar = (start, end, row, cls, title) => {
      const r = SN.svg("rect", { x: x(start), y: 5 + row * 28, width: Math.max(2, x(end) - x(start)), height: 22, class: cls });
      r.appendChild(SN.svg("title", {}, title));
      svg.appendChild(r);
    };
    for (const g of doc.gaps) {
      const start = g.first_wall_ms ?? g.received_ms, end = g.last_wall_ms ?? start;
      bar(start, end, 0, "tl-gap", T.gap + ": " + g.count + " " + T.readings + ", " + g.reason);
    }
    for (const [start, end] of doc.hours.buffered_stretches) { bar(start, end, 1, "tl-buffered", T.buffered); }
    for (const [start, end] of doc.hours.corrected_stretches) { bar(start, end, 2, "tl-corrected", T.corrected); }

    const bars = document.getElementById("completeness"), hours = doc.hours;
    bars.textContent = "";
    const slot = W / Math.max(1, hours.t.length);
    hours.t.forEach((start, i) => {
      const share = hours.expected[i] ? Math.min(1, hours.stored[i] / hours.expected[i]) : 0;
      const r = SN.svg("rect", { x: i * slot, y: 60 - share * 58, width: Math.max(1, slot - 1), height: share * 58,
                                 class: share >= 0.99 ? "complete" : "incomplete" });
      r.appendChild(SN.svg("title", {}, SN.time(start) + ": " + Math.round(share * 100) + " %"));
      bars.appendChild(r);
    });

    const fill = (id, rows) => {
      const body = document.querySelector("#" + id + " tbody");
      body.textContent = "";
      if (!rows.length) { body.appendChild(SN.el("tr")).appendChild(SN.el("td", { colspan: 3 }, T.none)); }
      for (const cells of rows) {
        const tr = SN.el("tr");
        for (const c of cells) { tr.appendChild(SN.el("td", {}, c)); }
        body.appendChild(tr);
      }
    };
    fill("gaps", doc.gaps.map((g) => [SN.time(g.first_wall_ms ?? g.received_ms), SN.number(g.count, 0), g.reason]));
    fill("incidents", doc.incidents.map((i) => [SN.time(i.wall_ms), i.kind, i.detail]));
  }

  async function refreshTimeline() {
    try {
      timeline(await SN.getJSON(base + "/timeline?" + new URLSearchParams({ since })));
      SN.showError(false);
    } catch (error) {
      SN.showError(true);
    }
  }
  charts().catch(() => SN.showError(true));
  refreshTimeline();
  SN.alerts.pollNode(node);
  setInterval(refreshTimeline, Math.max(config.poll_s, 5) * 6000);
})();
