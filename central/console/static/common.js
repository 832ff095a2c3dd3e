/* streetnode console: what every page shares (no build step, no dependencies). */
"use strict";
window.SN = (function () {
  const config = JSON.parse(document.getElementById("page-config").textContent);
  const T = config.messages;
  const STATE_SYMBOL = { live: "●", buffering: "◆", late: "▲", silent: "✕" };
  const dateTime = new Intl.DateTimeFormat(config.lang === "vi" ? "vi-VN" : "en-GB", {
    timeZone: config.timezone, year: "numeric", month: "2-digit", day: "2-digit",
    hour: "2-digit", minute: "2-digit", second: "2-digit", hour12: false });

  async function getJSON(url) {
    const response = await fetch(url, { credentials: "same-origin", headers: { Accept: "application/json" } });
    if (response.status === 401) { window.location = "/console/login?next=" + encodeURIComponent(location.pathname); }
    if (!response.ok) { throw new Error(url + ": HTTP " + response.status); }
    return response.json();
  }
  function time(ms) { return ms == null ? T.never : dateTime.format(new Date(ms)); }
  function age(seconds) {
    if (seconds == null) { return T.never; }
    const s = Math.max(0, Math.round(seconds));
    const text = s < 120 ? s + " " + T.unit_s : s < 7200 ? Math.round(s / 60) + " " + T.unit_min
      : s < 172800 ? Math.round(s / 3600) + " " + T.unit_h : Math.round(s / 86400) + " " + T.unit_d;
    return text + " " + T.ago;
  }
  function number(value, digits) {
    if (value == null) { return "–"; }
    return value.toLocaleString(config.lang === "vi" ? "vi-VN" : "en-GB",
      { maximumFractionDigits: digits == null ? 1 : digits });
  }
  function bandLabel(band) {
    if (!band) { return ""; }
    if (band.kind === "flood") { return T["band_flood_" + Math.min(band.level, 3)]; }
    return T["aqi_" + band.name];
  }
  function bandClass(band) {
    if (!band) { return ""; }
    return band.kind === "flood" ? "flood-" + Math.min(band.level, 3) : "aqi-" + band.name;
  }
  function el(tag, attrs, text) {
    const node = document.createElement(tag);
    for (const [key, value] of Object.entries(attrs || {})) { node.setAttribute(key, value); }
    if (text != null) { node.textContent = text; }
    return node;
  }
  function svg(tag, attrs, text) {
    const node = document.createElementNS("http://www.w3.org/2000/svg", tag);
    for (const [key, value] of Object.entries(attrs || {})) { node.setAttribute(key, value); }
    if (text != null) { node.textContent = text; }
    return node;
  }
  function stateBadge(state) {
    return el("span", { class: "badge state-" + state, "data-state": state }, STATE_SYMBOL[state] + " " + T[state]);
  }
  function showError(on) { const e = document.getElementById("load-error"); if (e) { e.classList.toggle("hidden", !on); } }
  return { config, T, getJSON, time, age, number, bandLabel, bandClass, el, svg, stateBadge, showError, STATE_SYMBOL };
})();
