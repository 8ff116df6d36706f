"""The live-view page: one self-contained HTML document, no build step, no external assets.

Beamline networks are often cut off from the internet, so everything the page needs is inline.
It polls ``stats`` twice a second and fetches ``last_frame?format=png`` only when the latest
frame differs from the one on display (told by the ``X-Series-Id`` / ``X-Frame`` headers of the
image itself, so a frame that arrived between the two requests is fetched on the next poll).
URLs are relative, so the page also works behind a reverse proxy under a sub-path.
"""

from __future__ import annotations

import html

PAGE = """<!doctype html>
<html lang="en">
<head>
<meta charset="utf-8">
<meta name="viewport" content="width=device-width, initial-scale=1">
<title>__NAME__ · live view</title>
<style>
  body { font: 14px system-ui, sans-serif; margin: 0; background: #111; color: #ddd; }
  header { display: flex; gap: 1em; align-items: center; padding: .5em 1em; background: #222; }
  h1 { font-size: 1.2em; margin: 0; }
  #state { padding: .1em .6em; border-radius: .3em; font-weight: bold; text-transform: uppercase; }
  #state.idle { background: #345; } #state.running { background: #262; }
  #state.error { background: #a22; }
  main { display: flex; gap: 1em; padding: 1em; flex-wrap: wrap; align-items: flex-start; }
  figure { margin: 0; flex: 1 1 480px; }
  #frame { width: 100%; image-rendering: pixelated; background: #000; min-height: 8em; }
  table { border-collapse: collapse; }
  th { text-align: left; font-weight: normal; color: #999; padding-right: 1em; }
  td { font-variant-numeric: tabular-nums; text-align: right; }
  td.bad { color: #f66; font-weight: bold; }
  #error, #problem { color: #f66; }
  figure { position: relative; }
  #rois { position: absolute; left: 0; top: 0; pointer-events: none; overflow: visible; }
  #rois rect { fill: none; stroke: #3f3; vector-effect: non-scaling-stroke; }
  #rois text { fill: #3f3; font: 12px monospace; }
  #messages { font: 12px monospace; white-space: pre-wrap; color: #fc6; max-width: 40em; }
</style>
</head>
<body>
<header>
  <h1>__NAME__</h1>
  <span id="state">…</span>
  <span data-field="filename" title="current file"></span>
</header>
<main>
<figure>
  <img id="frame" alt="latest frame">
  <svg id="rois" aria-label="regions of interest"></svg>
  <figcaption id="frame-info">waiting for the first frame</figcaption>
</figure>
<aside>
  <table>
    <tr><th>series</th><td data-field="series_id"></td></tr>
    <tr><th>series started</th><td data-field="series_count"></td></tr>
    <tr><th>frames received</th><td data-field="frames_received"></td></tr>
    <tr><th>frames written</th><td data-field="frames_written"></td></tr>
    <tr><th>frames forwarded</th><td data-field="frames_forwarded"></td></tr>
    <tr><th>forward dropped</th><td data-field="forward_dropped"></td></tr>
    <tr><th>frames missing</th><td data-field="frames_missing"></td></tr>
    <tr><th>frames invalid</th><td data-field="frames_invalid"></td></tr>
    <tr><th>frames duplicate</th><td data-field="frames_duplicate"></td></tr>
    <tr><th>frames outside series</th><td data-field="frames_outside"></td></tr>
    <tr><th>frames discarded</th><td data-field="frames_discarded"></td></tr>
    <tr><th>frame rate</th><td data-field="frame_rate"></td></tr>
    <tr><th>data rate</th><td data-field="data_rate"></td></tr>
    <tr><th>compression</th><td data-field="compression_ratio"></td></tr>
    <tr><th>queue</th><td data-field="queue_depth"></td></tr>
    <tr><th>connected</th><td data-field="connected"></td></tr>
    <tr><th>upstream</th><td data-field="upstream"></td></tr>
    <tr><th>secondary port</th><td data-field="secondary_port"></td></tr>
  </table>
  <p>
    <label><input type="checkbox" id="log"> log scale</label>
    <label>binning <input type="number" id="downsample" min="1" max="64" step="1"></label>
  </p>
  <p id="error"></p>
  <p id="problem"></p>
  <div id="messages"></div>
</aside>
</main>
<script>
"use strict";
const POLL_MS = 500;
const ALARMS = ["forward_dropped", "frames_missing", "frames_invalid", "frames_discarded"];
const FORMAT = {
  frame_rate: v => v.toFixed(1) + " Hz",
  data_rate: v => (v / 1e6).toFixed(1) + " MB/s",
  compression_ratio: v => v ? v.toFixed(2) + " ×" : "–",
  connected: v => v ? "yes" : "no",
  upstream: v => v.join(", "),
};
const $ = id => document.getElementById(id);
let shown = null;        // "series/frame" of the image on display
let imageStale = true;   // fetch the image on the next poll whatever the stats say

function showStats(stats) {
  for (const cell of document.querySelectorAll("[data-field]")) {
    const name = cell.dataset.field;
    const value = stats[name];
    cell.textContent = name in FORMAT ? FORMAT[name](value) : String(value);
    cell.classList.toggle("bad", ALARMS.includes(name) && value > 0);
  }
  $("state").textContent = stats.state;
  $("state").className = stats.state;
  $("error").textContent = stats.state === "error" ? stats.error : "";
  $("messages").textContent = stats.messages.slice(-5).join("\\n");
}

async function refreshImage() {
  const response = await fetch(`last_frame?format=png&log=${$("log").checked}`,
                               {cache: "no-store"});
  if (response.status === 404) {
    $("frame-info").textContent = "no frame to show yet";
    return;
  }
  if (!response.ok) throw new Error(`last_frame: HTTP ${response.status}`);
  const header = name => response.headers.get(name);
  const blob = await response.blob();
  const img = $("frame");
  const old = img.src;
  img.src = URL.createObjectURL(blob);
  try {
    await img.decode();
  } finally {
    if (old.startsWith("blob:")) URL.revokeObjectURL(old);
  }
  const series = decodeURIComponent(header("X-Series-Id"));
  shown = series + "/" + header("X-Frame");
  img.dataset.frame = header("X-Frame");
  $("frame-info").textContent = `series ${series || "–"} · frame ${header("X-Frame")} · ` +
    `${header("X-Shape").replaceAll(",", " × ")} ${header("X-Dtype")} · ` +
    `binning ${header("X-Downsample")}`;
  await drawRois(Number(header("X-Downsample")));
}

// The ROIs of the series shown (GET rois), in frame pixels over the image binned by `factor`.
async function drawRois(factor) {
  const response = await fetch("rois", {cache: "no-store"});
  if (!response.ok) return;
  const {series} = await response.json();
  const img = $("frame"), svg = $("rois"), NS = svg.namespaceURI;  // SVG's, from the markup
  svg.setAttribute("viewBox", `0 0 ${img.naturalWidth} ${img.naturalHeight}`);
  svg.setAttribute("preserveAspectRatio", "none");
  svg.style.width = img.clientWidth + "px";
  svg.style.height = img.clientHeight + "px";
  const shapes = Object.entries(series ? series.regions : {}).map(([name, [r0, r1, c0, c1]]) => {
    const group = document.createElementNS(NS, "g");
    const rect = document.createElementNS(NS, "rect");
    const label = document.createElementNS(NS, "text");
    const box = {x: c0 / factor, y: r0 / factor, width: (c1 - c0) / factor,
                 height: (r1 - r0) / factor};
    for (const [key, value] of Object.entries(box)) rect.setAttribute(key, value);
    label.setAttribute("x", box.x);
    label.setAttribute("y", box.y);
    const sum = series.latest[name].sum;
    label.textContent = `${name} ${sum === null ? "–" : sum}`;
    group.dataset.roi = name;
    group.append(rect, label);
    return group;
  });
  svg.replaceChildren(...shapes);
}

async function tick() {
  try {
    const response = await fetch("stats", {cache: "no-store"});
    if (!response.ok) throw new Error(`stats: HTTP ${response.status}`);
    const stats = await response.json();
    showStats(stats);
    const latest = stats.series_id + "/" + stats.last_frame_number;
    if (imageStale || (stats.last_frame_number >= 0 && latest !== shown)) {
      await refreshImage();
      imageStale = false;
    }
    $("problem").textContent = "";
  } catch (err) {
    $("problem").textContent = `live view: ${err.message}`;
  } finally {
    setTimeout(tick, POLL_MS);
  }
}

async function loadDownsample() {
  const response = await fetch("downsample", {cache: "no-store"});
  if (response.ok) $("downsample").value = (await response.json()).value;
}

$("downsample").addEventListener("change", async event => {
  const response = await fetch(`downsample?value=${encodeURIComponent(event.target.value)}`,
                               {method: "POST"});
  $("problem").textContent = response.ok ? "" : "binning must be a whole number from 1 to 64";
  await loadDownsample();
  imageStale = true;
});
$("log").addEventListener("change", () => { imageStale = true; });

loadDownsample();
tick();
</script>
</body>
</html>
"""


def render_page(receiver_name: str) -> str:
    return PAGE.replace("__NAME__", html.escape(receiver_name))
