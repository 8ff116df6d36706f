"""The live-view page: one self-contained HTML document, no build step, no external assets.

Beamline networks are often cut off from the internet, so everything the page needs is inline.
It polls ``stats`` twice a second and fetches ``last_frame?format=raw`` only when the latest
frame differs from the one on display (told by the ``X-Series-Id`` / ``X-Frame`` headers of the
image itself, so a frame that arrived between the two requests is fetched on the next poll).
URLs are relative, so the page also works behind a reverse proxy under a sub-path.

The page draws the pixel values itself rather than showing a PNG: the value under the pointer,
the colour bar and a display range set by hand all need the numbers, and the server then only
copies the (binned) frame out. Messages from an earlier series than the one running are dimmed
once a later series starts, and dropped ``message_age_s`` later (a query parameter, 60 s by
default): a warning about the last series should still be read after it ends, not stay up all
afternoon.
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
  #frame { width: 100%; image-rendering: pixelated; background: #000; min-height: 8em;
           cursor: crosshair; display: block; }
  #frame:not([data-frame]) { height: 8em; }  /* no frame yet: no 1 x 1 canvas stretched square */
  #colorbar { width: 100%; height: 14px; display: block; image-rendering: pixelated;
              margin-top: .4em; }
  #ticks { display: flex; justify-content: space-between; font-variant-numeric: tabular-nums; }
  #scale label { margin-right: .8em; white-space: nowrap; }
  #scale input[type=number] { width: 7em; }
  #pixel { font: 13px monospace; color: #9cf; min-height: 1.3em; }
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
  #messages .earlier { color: #887; }
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
  <canvas id="frame" width="1" height="1" aria-label="latest frame"></canvas>
  <svg id="rois" aria-label="regions of interest"></svg>
  <div id="pixel">pointer over the image: x, y and value</div>
  <div id="scale">
    <canvas id="colorbar" width="256" height="1" aria-label="colour bar"></canvas>
    <div id="ticks"><span id="range-min">–</span><span id="range-mid"></span>
      <span id="range-max">–</span></div>
    <label><input type="checkbox" id="auto" checked> auto range</label>
    <label>min <input type="number" id="vmin" step="any"></label>
    <label>max <input type="number" id="vmax" step="any"></label>
    <label><input type="checkbox" id="log"> log scale</label>
    <label>colours <select id="cmap">
      <option>grey</option><option>viridis</option><option>inferno</option></select></label>
  </div>
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
// how long a message stays up (dimmed) once a later series has started
const MESSAGE_AGE_MS = 1000 * (Number(new URLSearchParams(location.search)
                                      .get("message_age_s")) || 60);
// the pixel types /last_frame?format=raw sends (always little-endian), as typed arrays
const ARRAYS = {uint8: Uint8Array, int8: Int8Array, uint16: Uint16Array, int16: Int16Array,
                uint32: Uint32Array, int32: Int32Array, float32: Float32Array,
                float64: Float64Array, uint64: BigUint64Array, int64: BigInt64Array};
// colour maps as evenly spaced stops, interpolated to 256 entries
const STOPS = {
  grey: ["000000", "ffffff"],
  viridis: ["440154", "482878", "3e4989", "31688e", "26828e", "1f9e89", "35b779", "6ece58",
            "b5de2b", "fde725"],
  inferno: ["000004", "1b0c41", "4a0c6b", "781c6d", "a52c60", "cf4446", "ed6925", "fb9b06",
            "f7d13d", "fcffa4"],
};
const $ = id => document.getElementById(id);
let shown = null;        // "series/frame" of the image on display
let imageStale = true;   // fetch the image on the next poll whatever the stats say
let frame = null;        // the frame on display: {values, width, height, shape, factor, min, max}
let pointer = null;      // where the pointer is over the image, as fractions of its size
let messages = [];       // {text, series, stale}: stats.messages, with the series they came in
                         // and when a later one was first seen

function lut(name) {
  const stops = STOPS[name].map(hex => [0, 2, 4].map(i => parseInt(hex.slice(i, i + 2), 16)));
  const table = new Uint8ClampedArray(256 * 3);
  for (let k = 0; k < 256; k++) {
    const at = k / 255 * (stops.length - 1), i = Math.min(Math.floor(at), stops.length - 2);
    for (let c = 0; c < 3; c++) {
      table[3 * k + c] = Math.round(stops[i][c] + (stops[i + 1][c] - stops[i][c]) * (at - i));
    }
  }
  return table;
}

function halfFloats(bits) {
  const out = new Float32Array(bits.length);
  for (let i = 0; i < bits.length; i++) {
    const h = bits[i], sign = h & 0x8000 ? -1 : 1, exp = (h >> 10) & 0x1f, frac = h & 0x3ff;
    out[i] = sign * (exp === 0 ? frac * 2 ** -24 : exp === 31 ? (frac ? NaN : Infinity)
                                                  : (1 + frac / 1024) * 2 ** (exp - 15));
  }
  return out;
}

function pixelValues(buffer, dtype) {
  if (dtype === "float16") return halfFloats(new Uint16Array(buffer));
  if (!(dtype in ARRAYS)) throw new Error(`cannot show ${dtype} pixels`);
  const values = new ARRAYS[dtype](buffer);
  const wide = values instanceof BigInt64Array || values instanceof BigUint64Array;
  return wide ? Float64Array.from(values, Number) : values;
}

function finiteRange(values) {
  let min = Infinity, max = -Infinity;
  for (let i = 0; i < values.length; i++) {
    const v = values[i];
    if (v < min && v > -Infinity) min = v;
    if (v > max && v < Infinity) max = v;
  }
  return min <= max ? [min, max] : [0, 0];
}

function number(v) {
  // a count exactly; a fraction (a binned mean, a float detector) to 6 digits
  return Number.isInteger(v) || !Number.isFinite(v) ? String(v)
    : String(parseFloat(v.toPrecision(6)));
}

// the display range: the frame's finite min..max, or what was typed (either end)
function displayRange() {
  const [min, max] = [frame.min, frame.max];
  if ($("auto").checked) return [min, max];
  const low = parseFloat($("vmin").value), high = parseFloat($("vmax").value);
  return [Number.isFinite(low) ? low : min, Number.isFinite(high) ? high : max];
}

// 0..255 for a value: linear or log1p from the low end; below it 0, above it 255
function scaler(low, high, log) {
  const span = high - low, top = log ? Math.log1p(span) : span;
  return v => !(v > low) ? 0 : v >= high ? 255
    : Math.round((log ? Math.log1p(v - low) : v - low) * 255 / top);
}

function render() {
  if (!frame) return;
  const [low, high] = displayRange();
  const log = $("log").checked, table = lut($("cmap").value), scale = scaler(low, high, log);
  const canvas = $("frame");
  canvas.width = frame.width;
  canvas.height = frame.height;
  const context = canvas.getContext("2d");
  const image = context.createImageData(frame.width, frame.height);
  const rgba = image.data, values = frame.values;
  for (let i = 0; i < values.length; i++) {
    const k = 3 * scale(values[i]);
    rgba[4 * i] = table[k];
    rgba[4 * i + 1] = table[k + 1];
    rgba[4 * i + 2] = table[k + 2];
    rgba[4 * i + 3] = 255;
  }
  context.putImageData(image, 0, 0);
  drawColorbar(table, low, high, log);
  if ($("auto").checked) {
    $("vmin").value = low;
    $("vmax").value = high;
  }
  showPixel();
}

function drawColorbar(table, low, high, log) {
  const context = $("colorbar").getContext("2d");
  const bar = context.createImageData(256, 1);
  for (let k = 0; k < 256; k++) {
    bar.data.set([table[3 * k], table[3 * k + 1], table[3 * k + 2], 255], 4 * k);
  }
  context.putImageData(bar, 0, 0);
  const mid = log ? low + Math.expm1(Math.log1p(high - low) / 2) : (low + high) / 2;
  $("range-min").textContent = number(low);
  $("range-mid").textContent = high > low ? number(mid) : "";
  $("range-max").textContent = number(high);
}

// x and y in detector pixels (the first of a binned block), the module of a stacked frame
function showPixel() {
  if (!frame || !pointer) {
    $("pixel").textContent = "pointer over the image: x, y and value";
    return;
  }
  const col = Math.min(frame.width - 1, Math.floor(pointer.x * frame.width));
  const row = Math.min(frame.height - 1, Math.floor(pointer.y * frame.height));
  const rows = frame.shape.length > 2 ? frame.shape[frame.shape.length - 2] : frame.height;
  const f = frame.factor, value = frame.values[row * frame.width + col];
  const module = frame.shape.length > 2 ? `module ${Math.floor(row / rows)} · ` : "";
  $("pixel").textContent = `${module}x ${col * f} · y ${(row % rows) * f} · value ` +
    number(Number(value)) + (f > 1 ? ` (mean of ${f} × ${f})` : "");
}

function showMessages(current, series) {
  let kept = Math.min(messages.length, current.length);
  while (kept > 0 && !messages.slice(-kept).every((m, i) => m.text === current[i])) kept--;
  const now = Date.now();
  messages = messages.slice(messages.length - kept).concat(
    current.slice(kept).map(text => ({text, series, stale: null})));
  for (const m of messages) if (m.series !== series && m.stale === null) m.stale = now;
  const box = $("messages");
  box.replaceChildren(...messages
    .filter(m => m.stale === null || now - m.stale < MESSAGE_AGE_MS).slice(-5)
    .map(m => {
      const line = document.createElement("div");
      line.textContent = m.text;
      line.className = m.series === series ? "current" : "earlier";
      return line;
    }));
}

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
  showMessages(stats.messages, stats.series_count);
}

async function refreshImage() {
  const response = await fetch("last_frame?format=raw", {cache: "no-store"});
  if (response.status === 404) {
    $("frame-info").textContent = "no frame to show yet";
    return;
  }
  if (!response.ok) throw new Error(`last_frame: HTTP ${response.status}`);
  const header = name => response.headers.get(name);
  const shape = header("X-Shape").split(",").map(Number);
  const values = pixelValues(await response.arrayBuffer(), header("X-Dtype"));
  const width = shape.length > 1 ? shape[shape.length - 1] : values.length;
  frame = {values, shape, width, height: values.length / width,
           factor: Number(header("X-Downsample"))};
  [frame.min, frame.max] = finiteRange(values);
  render();
  const series = decodeURIComponent(header("X-Series-Id"));
  shown = series + "/" + header("X-Frame");
  $("frame").dataset.frame = header("X-Frame");
  $("frame-info").textContent = `series ${series || "–"} · frame ${header("X-Frame")} · ` +
    `${shape.join(" × ")} ${header("X-Dtype")} · binning ${frame.factor}`;
  await drawRois(frame.factor);
}

// The ROIs of the series shown (GET rois), in frame pixels over the image binned by `factor`.
async function drawRois(factor) {
  const response = await fetch("rois", {cache: "no-store"});
  if (!response.ok) return;
  const {series} = await response.json();
  const canvas = $("frame"), svg = $("rois"), NS = svg.namespaceURI;  // SVG's, from the markup
  svg.setAttribute("viewBox", `0 0 ${canvas.width} ${canvas.height}`);
  svg.setAttribute("preserveAspectRatio", "none");
  svg.style.width = canvas.clientWidth + "px";
  svg.style.height = canvas.clientHeight + "px";
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
for (const id of ["vmin", "vmax"]) {
  $(id).addEventListener("change", () => { $("auto").checked = false; render(); });
}
for (const id of ["auto", "log", "cmap"]) $(id).addEventListener("change", render);
$("frame").addEventListener("mousemove", event => {
  const box = event.target.getBoundingClientRect();
  pointer = {x: (event.clientX - box.left) / box.width, y: (event.clientY - box.top) / box.height};
  showPixel();
});
$("frame").addEventListener("mouseleave", () => { pointer = null; showPixel(); });

loadDownsample();
tick();
</script>
</body>
</html>
"""


def render_page(receiver_name: str) -> str:
    return PAGE.replace("__NAME__", html.escape(receiver_name))
