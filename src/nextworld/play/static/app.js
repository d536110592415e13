// The nextworld player: a WebSocket carries actions in and frames out (docs/play.md).
"use strict";

const $ = (id) => document.getElementById(id);
const SKETCH_COLOURS = ["#000000", "#ffffff", "#7fb2e5", "#8a5a2b", "#3d9e3d", "#d33a2c", "#f2c12e", "#808080"];
const KEY_SYMBOLS = { ArrowLeft: "←", ArrowRight: "→", ArrowUp: "↑", ArrowDown: "↓", Space: "Space" };

const state = {
  ws: null, session: null, world: null, limits: null,
  selected: 0,        // the action a number key or button picked
  held: null,         // the action of a mapped key being held down
  running: false,     // step continuously, or only on a key press / Step
  inflight: false,    // one action at a time: the next goes when its frame is back
  pending: null,      // an action asked for while one was in flight
  lastSend: 0, arrivals: [], lastMs: null,
  recording: false, recorded: 0,
  brushColour: SKETCH_COLOURS[0],
};

// ------------------------------------------------------------------ messages to the player

function say(text, kind = "error") {
  const box = document.createElement("div");
  box.textContent = text;
  if (kind !== "error") box.className = "note";
  $("messages").append(box);
  while ($("messages").children.length > 4) $("messages").firstChild.remove();
  setTimeout(() => box.remove(), kind === "error" ? 8000 : 5000);
}

// ------------------------------------------------------------------ the connection

function connect(worldName) {
  if (state.ws) { state.ws.onclose = null; state.ws.close(); }
  state.session = null; state.inflight = false; state.pending = null; setRunning(false);
  const scheme = location.protocol === "https:" ? "wss:" : "ws:";
  const query = worldName ? `?world=${encodeURIComponent(worldName)}` : "";
  const ws = new WebSocket(`${scheme}//${location.host}/ws${query}`);
  state.ws = ws;
  $("status").textContent = "connecting…";
  ws.onmessage = (event) => receive(JSON.parse(event.data));
  ws.onclose = (event) => {
    state.session = null; setRunning(false);
    $("status").textContent = `disconnected${event.reason ? ` (${event.reason})` : ""} — reload to play again`;
  };
}

function send(message) {
  if (!state.ws || state.ws.readyState !== WebSocket.OPEN) { say("not connected: reload the page"); return false; }
  state.ws.send(JSON.stringify(message));
  return true;
}

function receive(msg) {
  switch (msg.type) {
    case "hello": return hello(msg);
    case "frame": return frame(msg);
    case "atlas": $("atlas").src = `data:image/png;base64,${msg.png}`; return;  // sized on load (fitAtlas)
    case "sampling": return showSampling(msg);
    case "recording": return showRecording(msg.on, msg.frames, msg.message);
    case "error":
      if (msg.about === "action" || msg.about === "reset") { state.inflight = false; state.pending = null; setRunning(false); }
      return say(msg.message);
    default: return say(`unexpected message from the server: ${msg.type}`);
  }
}

function hello(msg) {
  state.session = msg.session; state.world = msg.world; state.limits = msg.limits;
  state.selected = 0; state.held = null;
  $("status").textContent = `connected · ${msg.world.name}`;
  const [h, w] = msg.world.frame_shape;
  $("world").width = w; $("world").height = h;
  buildActions(msg.world);
  $("sampling-panel").hidden = msg.world.sampling === null;
  if (msg.world.sampling) showSampling(msg.world.sampling);
  $("download-gif").href = `/api/sessions/${msg.session}/recording.gif`;
  $("download-mp4").href = `/api/sessions/${msg.session}/recording.mp4`;
  showRecording(false, 0);
  $("atlas").removeAttribute("src");
  $("placeholder").hidden = false;
  $("step-info").textContent = "step –";
  if (msg.dataset) loadDataset(); else $("dataset-panel").hidden = true;
}

// ------------------------------------------------------------------ frames

function frame(msg) {
  const canvas = $("world");
  if (canvas.width !== msg.width || canvas.height !== msg.height) { canvas.width = msg.width; canvas.height = msg.height; }
  const ctx = canvas.getContext("2d");
  const rgb = Uint8Array.from(atob(msg.pixels), (c) => c.charCodeAt(0));  // uint8 [H, W, 3]
  const image = ctx.createImageData(msg.width, msg.height);
  for (let i = 0, j = 0; i < rgb.length; i += 3, j += 4) {
    image.data[j] = rgb[i]; image.data[j + 1] = rgb[i + 1]; image.data[j + 2] = rgb[i + 2]; image.data[j + 3] = 255;
  }
  ctx.putImageData(image, 0, 0);
  $("placeholder").hidden = true;
  $("step-info").textContent = `step ${msg.step}` + (msg.action === null ? " (prompt)" : ` · a=${msg.action}`);
  canvas.dataset.step = msg.step;
  canvas.dataset.frames = Number(canvas.dataset.frames || 0) + 1;  // frames drawn, for tests and tools
  if (msg.recorded !== null) showRecording(true, msg.recorded);
  state.lastMs = msg.ms;
  state.arrivals.push(performance.now());
  state.inflight = false;
  if (state.pending !== null) { const a = state.pending; state.pending = null; act(a); }
  else if (state.running) scheduleNext();
}

// the atlas at the largest whole-pixel scale that fits its panel, so it stays crisp
function fitAtlas() {
  const atlas = $("atlas");
  if (!atlas.naturalWidth) return;
  const room = $("atlas-panel").clientWidth - 24;
  atlas.style.width = `${atlas.naturalWidth * Math.max(1, Math.floor(room / atlas.naturalWidth))}px`;
}

function fpsReadout() {
  const now = performance.now();
  state.arrivals = state.arrivals.filter((t) => now - t < 1000);
  const ms = state.lastMs === null ? "" : ` · ${state.lastMs.toFixed(0)} ms/step`;
  $("fps").textContent = `${state.arrivals.length.toFixed(1)} fps${ms}`;
}

// ------------------------------------------------------------------ actions

function buildActions(world) {
  const box = $("actions");
  box.replaceChildren();
  for (let a = 0; a < world.actions; a++) {
    const button = document.createElement("button");
    button.className = "action";
    button.dataset.action = a;
    const keys = Object.entries(world.key_map).filter(([, v]) => v === a).map(([k]) => KEY_SYMBOLS[k] || k);
    button.textContent = String(a) + (keys.length ? ` ${keys.join(" ")}` : "");
    button.title = `action ${a}` + (a < 10 ? ` (key ${a})` : "");
    button.addEventListener("click", () => { select(a); if (!state.running) act(a); });
    box.append(button);
  }
  const mapped = Object.entries(world.key_map).map(([k, v]) => `${KEY_SYMBOLS[k] || k} → ${v}`);
  $("keys-help").textContent = `Keys: 0–${Math.min(world.actions, 10) - 1} pick an action` +
    (mapped.length ? `; ${mapped.join(", ")} (held)` : "") + "; P run/pause, N step, R reset.";
  select(0);
}

function select(a) {
  state.selected = a;
  for (const b of $("actions").children) b.classList.toggle("selected", Number(b.dataset.action) === a);
}

function showHeld() {
  for (const b of $("actions").children) b.classList.toggle("held", Number(b.dataset.action) === state.held);
}

const current = () => (state.held !== null ? state.held : state.selected);

function act(a) {
  if (!state.session) return;
  if (state.inflight) { state.pending = a; return; }
  if (send({ type: "action", action: a })) { state.inflight = true; state.lastSend = performance.now(); }
}

function scheduleNext() {
  const maxFps = Math.max(1, Number($("max-fps").value) || 15);
  const wait = Math.max(0, 1000 / maxFps - (performance.now() - state.lastSend));
  setTimeout(() => { if (state.running && !state.inflight) act(current()); }, wait);
}

function setRunning(on) {
  state.running = on;
  $("run").textContent = on ? "Pause" : "▶ Run";
  if (on && !state.inflight) act(current());
}

function reset(prompt) {
  if (!state.session) return;
  setRunning(false);
  send(prompt ? { type: "reset", prompt } : { type: "reset" });
}

function keyName(event) { return event.key === " " ? "Space" : event.key; }

function onKeyDown(event) {
  if (event.target.closest("input, select, textarea") || event.ctrlKey || event.metaKey || event.altKey) return;
  if (!state.world) return;
  const name = keyName(event);
  if (/^[0-9]$/.test(event.key)) {
    const a = Number(event.key);
    if (a >= state.world.actions) { say(`key ${a}: the world has actions 0..${state.world.actions - 1}`); return; }
    select(a);
    if (!state.running && !event.repeat) act(a);
  } else if (name in state.world.key_map) {
    event.preventDefault();  // arrows and space must not scroll the page
    state.held = state.world.key_map[name];
    showHeld();
    if (!state.running && !event.repeat) act(state.held);
  } else if (name === "p" || name === "P") {
    setRunning(!state.running);
  } else if (name === "n" || name === "N") {
    act(current());
  } else if (name === "r" || name === "R") {
    reset();
  }
}

function onKeyUp(event) {
  if (!state.world) return;
  const name = keyName(event);
  if (name in state.world.key_map && state.held === state.world.key_map[name]) { state.held = null; showHeld(); }
}

// ------------------------------------------------------------------ sampling and recording

function showSampling(s) {
  $("temperature").value = s.temperature;
  $("temperature-value").textContent = Number(s.temperature).toFixed(2);
  $("sample-steps").value = s.sample_steps;
  $("keep-bias-label").hidden = s.keep_bias === undefined;  // only a world whose dynamics keeps moved tokens
  if (s.keep_bias !== undefined) $("keep-bias").value = s.keep_bias;
}

function showRecording(on, frames, message) {
  state.recording = on; state.recorded = frames;
  $("record").textContent = on ? "■ Stop" : "● Record";
  $("record").classList.toggle("on", on);
  $("record-info").textContent = on ? `recording: ${frames} frames` : frames ? `${frames} frames recorded` : "not recording";
  for (const id of ["download-gif", "download-mp4"]) $(id).classList.toggle("disabled", frames === 0);
  if (message) say(message, "note");
}

// ------------------------------------------------------------------ prompts

async function loadDataset() {
  const response = await fetch("/api/dataset");
  if (!response.ok) { $("dataset-panel").hidden = true; return; }
  const info = await response.json();
  $("dataset-panel").hidden = false;
  $("episode").max = info.episodes - 1;
  const thumbs = $("thumbnails");
  thumbs.replaceChildren();
  for (const pick of info.thumbnails) {
    const img = document.createElement("img");
    img.src = `/api/dataset/frame?episode=${pick.episode}&frame=${pick.frame}`;
    img.alt = img.title = `episode ${pick.episode}, frame ${pick.frame}`;
    img.addEventListener("click", () => reset({ source: "dataset", episode: pick.episode, frame: pick.frame }));
    thumbs.append(img);
  }
}

async function startFromImage(blob) {
  if (!state.session) { say("not connected: reload the page"); return; }
  const response = await fetch(`/api/sessions/${state.session}/prompt`, {
    method: "POST", body: blob, headers: { "Content-Type": blob.type || "application/octet-stream" },
  });
  if (!response.ok) {
    const body = await response.json().catch(() => ({ detail: response.statusText }));
    say(`${response.status}: ${body.detail}`);
    return;
  }
  reset({ source: "upload" });
}

function setUpSketch() {
  const canvas = $("sketch");
  const ctx = canvas.getContext("2d");
  const clear = () => { ctx.fillStyle = "#ffffff"; ctx.fillRect(0, 0, canvas.width, canvas.height); };
  clear();
  for (const colour of SKETCH_COLOURS) {
    const button = document.createElement("button");
    button.style.background = colour;
    button.title = colour;
    button.addEventListener("click", () => {
      state.brushColour = colour;
      for (const b of $("palette").children) b.classList.toggle("chosen", b === button);
    });
    $("palette").append(button);
  }
  $("palette").firstChild.classList.add("chosen");
  let last = null;
  const point = (e) => {
    const r = canvas.getBoundingClientRect();
    return [(e.clientX - r.left) * canvas.width / r.width, (e.clientY - r.top) * canvas.height / r.height];
  };
  const draw = (from, to) => {
    ctx.strokeStyle = state.brushColour; ctx.lineWidth = Number($("brush").value); ctx.lineCap = "round";
    ctx.beginPath(); ctx.moveTo(...from); ctx.lineTo(...to); ctx.stroke();
  };
  canvas.addEventListener("pointerdown", (e) => { canvas.setPointerCapture(e.pointerId); last = point(e); draw(last, last); });
  canvas.addEventListener("pointermove", (e) => { if (last) { const p = point(e); draw(last, p); last = p; } });
  canvas.addEventListener("pointerup", () => { last = null; });
  $("sketch-clear").addEventListener("click", clear);
  $("sketch-start").addEventListener("click", () => canvas.toBlob((blob) => startFromImage(blob), "image/png"));
}

// ------------------------------------------------------------------ wiring

async function loadWorlds() {
  const response = await fetch("/api/worlds");
  const info = await response.json();
  const select = $("world-select");
  const chosen = new URLSearchParams(location.search).get("world") || info.default;
  for (const name of info.worlds) select.append(new Option(name, name, name === chosen, name === chosen));
  select.addEventListener("change", () => connect(select.value));
}

function wire() {
  document.addEventListener("keydown", onKeyDown);
  document.addEventListener("keyup", onKeyUp);
  // a clicked button keeps no focus, so Space and the arrows stay the world's
  document.addEventListener("click", (e) => { const b = e.target.closest("button"); if (b) b.blur(); });
  $("run").addEventListener("click", () => setRunning(!state.running));
  $("step").addEventListener("click", () => act(current()));
  $("reset").addEventListener("click", () => reset());
  $("record").addEventListener("click", () => send({ type: "record", on: !state.recording }));
  $("atlas-refresh").addEventListener("click", () => send({ type: "atlas" }));
  $("temperature").addEventListener("input", () => { $("temperature-value").textContent = Number($("temperature").value).toFixed(2); });
  $("temperature").addEventListener("change", (e) => { send({ type: "sampling", temperature: Number(e.target.value) }); e.target.blur(); });
  $("sample-steps").addEventListener("change", (e) => { send({ type: "sampling", sample_steps: Math.round(Number(e.target.value)) }); e.target.blur(); });
  $("keep-bias").addEventListener("change", (e) => { send({ type: "sampling", keep_bias: Number(e.target.value) }); e.target.blur(); });
  $("dataset-start").addEventListener("click", () => reset({
    source: "dataset", episode: Math.round(Number($("episode").value)), frame: Math.round(Number($("frame").value)) }));
  $("upload").addEventListener("change", (e) => { if (e.target.files.length) startFromImage(e.target.files[0]); e.target.value = ""; });
  $("atlas").addEventListener("load", fitAtlas);
  window.addEventListener("resize", fitAtlas);
  setUpSketch();
  setInterval(fpsReadout, 250);
}

wire();
loadWorlds().then(() => connect(new URLSearchParams(location.search).get("world")));
