// The operator console at `/console`: stations, swaps, skips, requests, playlists,
// media and a live listener chart. Every API call sends the signed-in token.
import { ApiError, clockLabel, listenerLabel } from "/assets/shell.js";

const TOKEN_KEY = "sonicforge.console.token";
const CHART_WINDOW_MS = 5 * 60 * 1000;
const CHART_COLORS = ["#3ad7f0", "#c86bfa", "#ff7a59", "#39d98a", "#f5b041", "#ff5d73"];
const CHART_REDRAW_MS = 1000;

const $ = (id) => document.getElementById(id);

const state = {
  token: null,
  role: null,
  stations: new Map(),
  playlists: [],
  media: [],
  sources: new Map(),
  series: new Map(),
  editing: null,
  tokenInQuery: false,
  chartTimer: null,
  expiryTimer: null,
};

// ---- The token ----------------------------------------------------------------

/** The claims of a JWT, decoded for display only (the server checks the signature). */
export function decodeClaims(token) {
  const parts = token.split(".");
  if (parts.length !== 3) return null;
  try {
    const base64 = parts[1].replace(/-/g, "+").replace(/_/g, "/");
    const padded = base64 + "=".repeat((4 - (base64.length % 4)) % 4);
    const claims = JSON.parse(atob(padded));
    return claims && typeof claims === "object" ? claims : null;
  } catch {
    return null;
  }
}

/** Calls the API with the token; a 401 or 403 signs out with the server's reason. */
async function api(method, path, { json, body, contentType } = {}) {
  const headers = { accept: "application/json", authorization: `Bearer ${state.token}` };
  let payload = body;
  if (json !== undefined) {
    headers["content-type"] = "application/json";
    payload = JSON.stringify(json);
  } else if (contentType) {
    headers["content-type"] = contentType;
  }
  const response = await fetch(path, { method, headers, body: payload, cache: "no-store" });
  let answer = null;
  if (response.status !== 204) {
    try {
      answer = await response.json();
    } catch {
      answer = null;
    }
  }
  if (response.status === 401 || response.status === 403) {
    const error = new ApiError(response.status, answer);
    signOut(
      response.status === 401
        ? `Signed out: ${error.message}.`
        : `Signed out: this token may not do that (${error.message}).`,
    );
    throw error;
  }
  if (!response.ok) throw new ApiError(response.status, answer);
  return answer;
}

async function signIn(token) {
  const error = $("sign-in-error");
  error.textContent = "";
  const response = await fetch("/api/session", {
    headers: { accept: "application/json", authorization: `Bearer ${token || "-"}` },
    cache: "no-store",
  });
  const answer = await response.json().catch(() => null);
  const claims = decodeClaims(token) || {};
  if (!response.ok) {
    sessionStorage.removeItem(TOKEN_KEY);
    error.textContent = decodeClaims(token)
      ? `The server refused this token: ${answer && answer.error ? answer.error : `HTTP ${response.status}`}.`
      : "That is not a token: a token has three parts separated by dots.";
    return false;
  }
  if (answer.role !== "operator" && answer.role !== "admin") {
    sessionStorage.removeItem(TOKEN_KEY);
    error.textContent = `This token's role is ${answer.role}; the console needs operator or admin.`;
    return false;
  }
  state.token = token;
  state.role = answer.role;
  sessionStorage.setItem(TOKEN_KEY, token);
  const who = $("whoami");
  const subject = answer.subject ? ` · ${answer.subject}` : "";
  const expiresUnix = answer.expires_unix || claims.exp;
  const expires = expiresUnix ? ` · until ${new Date(expiresUnix * 1000).toLocaleTimeString()}` : "";
  who.textContent = answer.auth_enabled ? `${answer.role}${subject}${expires}` : "auth off";
  who.hidden = false;
  $("sign-out").hidden = false;
  $("sign-in").hidden = true;
  $("workspace").hidden = false;
  clearTimeout(state.expiryTimer);
  if (expiresUnix) {
    // setTimeout takes at most about 24.8 days.
    const left = Math.min(expiresUnix * 1000 - Date.now(), 2_147_000_000);
    state.expiryTimer = setTimeout(() => signOut("Signed out: the token has expired."), Math.max(0, left));
  }
  await start();
  return true;
}

function signOut(message) {
  state.token = null;
  state.role = null;
  sessionStorage.removeItem(TOKEN_KEY);
  for (const source of state.sources.values()) source.close();
  state.sources.clear();
  clearInterval(state.chartTimer);
  state.chartTimer = null;
  clearTimeout(state.expiryTimer);
  state.expiryTimer = null;
  $("workspace").hidden = true;
  $("whoami").hidden = true;
  $("sign-out").hidden = true;
  $("sign-in").hidden = false;
  $("sign-in-error").textContent = message || "";
  $("token").value = "";
  $("token").focus();
}

function status(text, isError = false) {
  const line = $("console-status");
  line.textContent = text;
  line.classList.toggle("error", isError);
}

function describe(error) {
  if (error instanceof ApiError) {
    const field = error.detail && error.detail.field ? ` (${error.detail.field})` : "";
    return `${error.message}${field}`;
  }
  return error && error.message ? error.message : String(error);
}

// ---- Stations -------------------------------------------------------------------

async function start() {
  // EventSource cannot send headers: pass the token in the query only where the
  // server wants a token for reads (`require_listener_token`).
  const open = await fetch("/api/stations", { cache: "no-store" });
  state.tokenInQuery = open.status === 401;
  await Promise.all([loadStations(), loadPlaylists(), loadMedia()]);
  clearInterval(state.chartTimer);
  state.chartTimer = setInterval(drawChart, CHART_REDRAW_MS);
}

async function loadStations() {
  try {
    const answer = await api("GET", "/api/stations");
    const list = $("station-list");
    const seen = new Set();
    for (const station of answer.stations || []) {
      seen.add(station.id);
      let entry = state.stations.get(station.id);
      if (!entry) {
        entry = { data: station, panel: makeStationPanel(station.id) };
        state.stations.set(station.id, entry);
        list.append(entry.panel);
      }
      entry.data = station;
      fillStation(entry);
      followEvents(station);
    }
    for (const [id, entry] of state.stations) {
      if (seen.has(id)) continue;
      entry.panel.remove();
      state.stations.delete(id);
      unsubscribe(id);
    }
    fillSwapChoices();
  } catch (error) {
    if (state.token) status(`Could not load the stations: ${describe(error)}`, true);
  }
}

async function refreshStation(id) {
  try {
    const station = await api("GET", `/api/stations/${encodeURIComponent(id)}`);
    const entry = state.stations.get(id);
    if (!entry) return;
    entry.data = station;
    fillStation(entry);
    followEvents(station);
  } catch (error) {
    if (state.token) status(`Could not refresh station ${id}: ${describe(error)}`, true);
  }
}

function makeStationPanel(id) {
  const panel = $("station-template").content.firstElementChild.cloneNode(true);
  panel.dataset.station = id;
  const field = (name) => panel.querySelector(`[data-field="${name}"]`);
  const select = field("swap-playlist");
  select.id = `swap-${id}`;
  const error = field("error");
  error.id = `station-error-${id}`;
  for (const control of panel.querySelectorAll("button, input, select")) {
    control.setAttribute("aria-describedby", error.id);
  }
  const run = async (what, action) => {
    error.textContent = "";
    try {
      await action();
      status(`${what} on ${id}.`);
    } catch (failure) {
      if (state.token) error.textContent = `${what} failed: ${describe(failure)}`;
    }
  };
  const swap = (when) =>
    run(when === "now" ? "Swapped now" : "Swap queued after this track", async () => {
      if (!select.value) throw new Error("pick a playlist first");
      await api("PUT", `/api/stations/${encodeURIComponent(id)}/playlist`, {
        json: { playlist: select.value, when },
      });
      await refreshStation(id);
    });
  panel.querySelector('[data-action="swap-now"]').addEventListener("click", () => swap("now"));
  panel.querySelector('[data-action="swap-next"]').addEventListener("click", () => swap("next"));
  panel.querySelector('[data-action="skip"]').addEventListener("click", () =>
    run("Skipped", async () => {
      await api("POST", `/api/stations/${encodeURIComponent(id)}/skip`);
      await refreshStation(id);
    }),
  );
  panel.querySelector('[data-action="stop-start"]').addEventListener("click", () => {
    const stopping = state.stations.get(id)?.data.state !== "stopped";
    run(stopping ? "Stopped the station" : "Started the station", async () => {
      // A stopped station has no event stream: stop following it first.
      if (stopping) unsubscribe(id);
      await api("POST", `/api/stations/${encodeURIComponent(id)}/${stopping ? "stop" : "start"}`);
      await refreshStation(id);
    });
  });
  field("queue-form").addEventListener("submit", (event) => {
    event.preventDefault();
    const prompt = field("prompt").value.trim();
    const seconds = field("seconds").value.trim();
    const item = { prompt };
    if (seconds) item.seconds = Number(seconds);
    run("Request queued", async () => {
      await api("POST", `/api/stations/${encodeURIComponent(id)}/queue`, { json: item });
      field("prompt").value = "";
      await refreshStation(id);
    });
  });
  return panel;
}

function fillStation(entry) {
  const station = entry.data;
  const field = (name) => entry.panel.querySelector(`[data-field="${name}"]`);
  field("name").textContent = station.name || station.id;
  const stopped = station.state === "stopped";
  const onAir = field("on-air");
  onAir.textContent = stopped ? "Stopped" : station.on_air ? "On air" : "Off air";
  onAir.classList.toggle("live", Boolean(station.on_air) && !stopped);
  entry.panel.querySelector('[data-action="stop-start"]').textContent = stopped ? "Start station" : "Stop station";
  for (const control of entry.panel.querySelectorAll('[data-action^="swap"], [data-action="skip"], [data-field="queue-form"] button')) {
    control.disabled = stopped;
  }
  field("listeners").textContent = listenerLabel(station.listeners);
  field("playlist").textContent = station.playlist || "–";
  const now = station.now_playing;
  field("now-playing").textContent = stopped ? "–" : now ? nowPlayingLabel(now) : "Warming up…";
  const items = (station.up_next || []).map((track) => {
    const li = document.createElement("li");
    li.textContent = track.title || track.prompt || track.track_id;
    return li;
  });
  if (items.length === 0) {
    const li = document.createElement("li");
    li.textContent = "Nothing queued yet.";
    items.push(li);
  }
  field("up-next").replaceChildren(...items);
  recordListeners(station.id, station.listeners);
}

function nowPlayingLabel(now) {
  const track = now.track || now;
  const artist = track.artist ? ` — ${track.artist}` : "";
  const length = track.duration_ms ? ` (${clockLabel(track.duration_ms)})` : "";
  return `${track.title || track.prompt || "Untitled"}${artist}${length}`;
}

/** Follows a running station's event stream; a stopped station has none. */
function followEvents(station) {
  if (station.state === "stopped") unsubscribe(station.id);
  else if (!state.sources.has(station.id)) subscribe(station.id);
}

function unsubscribe(id) {
  const source = state.sources.get(id);
  if (source) source.close();
  state.sources.delete(id);
}

function subscribe(id) {
  const query = state.tokenInQuery ? `?token=${encodeURIComponent(state.token)}` : "";
  const source = new EventSource(`/api/stations/${encodeURIComponent(id)}/events${query}`);
  state.sources.set(id, source);
  const parse = (event) => {
    try {
      return JSON.parse(event.data);
    } catch {
      return null;
    }
  };
  source.addEventListener("listeners", (event) => {
    const data = parse(event);
    const entry = state.stations.get(id);
    if (!data || !entry) return;
    entry.data.listeners = data.listeners;
    entry.panel.querySelector('[data-field="listeners"]').textContent = listenerLabel(data.listeners);
    recordListeners(id, data.listeners);
  });
  source.addEventListener("track_change", (event) => {
    const data = parse(event);
    const entry = state.stations.get(id);
    if (!data || !entry) return;
    entry.data.now_playing = data.now_playing;
    entry.panel.querySelector('[data-field="now-playing"]').textContent = data.now_playing
      ? nowPlayingLabel(data.now_playing)
      : "The fallback loop is on air.";
    refreshStation(id);
  });
  source.addEventListener("station", (event) => {
    const data = parse(event);
    const entry = state.stations.get(id);
    if (!data || !entry) return;
    const onAir = entry.panel.querySelector('[data-field="on-air"]');
    const up = data.state === "up";
    onAir.textContent = up ? "On air" : data.state;
    onAir.classList.toggle("live", up);
  });
}

// ---- The listener chart ---------------------------------------------------------

function recordListeners(id, count) {
  if (!Number.isFinite(count)) return;
  let points = state.series.get(id);
  if (!points) {
    points = [];
    state.series.set(id, points);
  }
  const now = Date.now();
  points.push({ t: now, n: count });
  while (points.length > 0 && points[0].t < now - CHART_WINDOW_MS) points.shift();
}

function drawChart() {
  const canvas = $("listener-chart");
  if (!canvas || $("workspace").hidden) return;
  const ratio = window.devicePixelRatio || 1;
  const width = Math.max(1, Math.round(canvas.clientWidth * ratio));
  const height = Math.max(1, Math.round(canvas.clientHeight * ratio));
  if (canvas.width !== width || canvas.height !== height) {
    canvas.width = width;
    canvas.height = height;
  }
  const ctx = canvas.getContext("2d");
  ctx.clearRect(0, 0, width, height);
  const now = Date.now();
  const from = now - CHART_WINDOW_MS;
  let top = 1;
  for (const points of state.series.values()) for (const p of points) top = Math.max(top, p.n);
  const pad = 28 * ratio;
  const x = (t) => pad + ((t - from) / CHART_WINDOW_MS) * (width - pad - 8 * ratio);
  const y = (n) => height - pad + -((n / top) * (height - pad - 10 * ratio));
  ctx.strokeStyle = "#242e46";
  ctx.fillStyle = "#8d98b3";
  ctx.lineWidth = ratio;
  ctx.font = `${11 * ratio}px system-ui, sans-serif`;
  for (const n of [0, top]) {
    ctx.beginPath();
    ctx.moveTo(pad, y(n));
    ctx.lineTo(width, y(n));
    ctx.stroke();
    ctx.fillText(String(n), 4 * ratio, y(n) + 4 * ratio);
  }
  ctx.fillText("−5 min", pad, height - 8 * ratio);
  ctx.fillText("now", width - 30 * ratio, height - 8 * ratio);
  const legend = [];
  let index = 0;
  for (const [id, points] of state.series) {
    const color = CHART_COLORS[index % CHART_COLORS.length];
    index += 1;
    ctx.strokeStyle = color;
    ctx.lineWidth = 2 * ratio;
    ctx.beginPath();
    let last = null;
    for (const p of points) {
      if (p.t < from) continue;
      if (last === null) ctx.moveTo(x(p.t), y(p.n));
      else ctx.lineTo(x(p.t), y(last.n));
      ctx.lineTo(x(p.t), y(p.n));
      last = p;
    }
    if (last) ctx.lineTo(x(now), y(last.n));
    ctx.stroke();
    const item = document.createElement("li");
    const swatch = document.createElement("span");
    swatch.className = "swatch";
    swatch.style.background = color;
    item.append(swatch, `${id}: ${last ? listenerLabel(last.n) : "–"}`);
    legend.push(item);
  }
  $("chart-legend").replaceChildren(...legend);
}

// ---- Playlists ------------------------------------------------------------------

async function loadPlaylists() {
  try {
    const answer = await api("GET", "/api/playlists");
    state.playlists = answer.playlists || [];
    renderPlaylists();
    fillSwapChoices();
  } catch (error) {
    if (state.token) status(`Could not load the playlists: ${describe(error)}`, true);
  }
}

function renderPlaylists() {
  const rows = state.playlists.map((playlist) => {
    const row = document.createElement("tr");
    row.dataset.playlist = playlist.name;
    const cell = (text) => {
      const td = document.createElement("td");
      td.textContent = text;
      return td;
    };
    const actions = document.createElement("td");
    actions.className = "actions";
    const edit = document.createElement("button");
    edit.type = "button";
    edit.className = "button quiet";
    edit.textContent = "Edit";
    edit.setAttribute("aria-label", `Edit playlist ${playlist.name}`);
    edit.addEventListener("click", () => openEditor(playlist));
    actions.append(edit);
    if (!playlist.built_in) {
      const remove = document.createElement("button");
      remove.type = "button";
      remove.className = "button quiet danger";
      remove.textContent = "Delete";
      remove.setAttribute("aria-label", `Delete playlist ${playlist.name}`);
      remove.addEventListener("click", () => deletePlaylist(playlist.name));
      actions.append(remove);
    }
    const name = playlist.built_in ? `${playlist.name} (built in)` : playlist.name;
    row.append(cell(name), cell(playlist.rotation), cell(String(playlist.items.length)), actions);
    return row;
  });
  $("playlist-rows").replaceChildren(...rows);
}

function fillSwapChoices() {
  for (const [id, entry] of state.stations) {
    const select = entry.panel.querySelector('[data-field="swap-playlist"]');
    const chosen = select.value;
    const options = state.playlists.map((playlist) => {
      const option = document.createElement("option");
      option.value = playlist.name;
      option.textContent = playlist.name === entry.data.playlist ? `${playlist.name} (on air)` : playlist.name;
      return option;
    });
    select.replaceChildren(...options);
    if (state.playlists.some((p) => p.name === chosen)) select.value = chosen;
    else if (entry.data.playlist) select.value = entry.data.playlist;
    select.dataset.station = id;
  }
}

async function deletePlaylist(name) {
  if (!window.confirm(`Delete playlist ${name}?`)) return;
  try {
    await api("DELETE", `/api/playlists/${encodeURIComponent(name)}`);
    status(`Deleted playlist ${name}.`);
    if (state.editing === name) closeEditor();
    await loadPlaylists();
  } catch (error) {
    if (state.token) status(`Could not delete ${name}: ${describe(error)}`, true);
  }
}

function openEditor(playlist) {
  const form = $("playlist-form");
  clearFieldErrors();
  state.editing = playlist ? playlist.name : null;
  $("editor-title").textContent = playlist ? `Edit playlist ${playlist.name}` : "New playlist";
  const name = $("playlist-name");
  name.value = playlist ? playlist.name : "";
  name.readOnly = Boolean(playlist);
  $("playlist-rotation").value = playlist ? playlist.rotation : "sequential";
  $("playlist-items").replaceChildren();
  const items = playlist ? playlist.items : [{ prompt: "" }];
  for (const item of items) addItem(item);
  form.hidden = false;
  (playlist ? $("playlist-rotation") : name).focus();
}

function closeEditor() {
  state.editing = null;
  $("playlist-form").hidden = true;
  clearFieldErrors();
}

function mediaOptions(select, chosen) {
  const options = state.media.map((entry) => {
    const option = document.createElement("option");
    option.value = entry.id;
    option.textContent = `${entry.tags && entry.tags.title ? entry.tags.title : entry.file_name} (${entry.file_name})`;
    return option;
  });
  if (chosen && !state.media.some((entry) => entry.id === chosen)) {
    const missing = document.createElement("option");
    missing.value = chosen;
    missing.textContent = `${chosen} (not in the library)`;
    options.push(missing);
  }
  select.replaceChildren(...options);
  if (chosen) select.value = chosen;
}

function addItem(item = {}) {
  const li = $("item-template").content.firstElementChild.cloneNode(true);
  const input = (key) => li.querySelector(`[data-key="${key}"]`);
  const kind = input("kind");
  kind.value = item.file ? "file" : "prompt";
  input("prompt").value = item.prompt || "";
  mediaOptions(input("file"), item.file);
  for (const key of ["seconds", "seed", "weight", "crossfade_ms"]) {
    input(key).value = item[key] === undefined || item[key] === null ? "" : String(item[key]);
  }
  const showKind = () => {
    for (const part of li.querySelectorAll("[data-kind]")) part.hidden = part.dataset.kind !== kind.value;
  };
  kind.addEventListener("change", showKind);
  showKind();
  li.querySelector('[data-action="remove-item"]').addEventListener("click", () => {
    li.remove();
    numberItems();
  });
  $("playlist-items").append(li);
  numberItems();
  return li;
}

/** Names every item's inputs after its place (`items[2].prompt`), as the API names fields. */
function numberItems() {
  [...$("playlist-items").children].forEach((li, index) => {
    li.dataset.index = String(index);
    for (const control of li.querySelectorAll("[data-key]")) {
      const field = `items[${index}].${control.dataset.key}`;
      control.dataset.field = field;
      control.id = `item-${index}-${control.dataset.key}`;
      control.setAttribute("aria-describedby", `item-${index}-error`);
    }
    li.querySelector("[data-error-for-item]").id = `item-${index}-error`;
    li.querySelector('[data-action="remove-item"]').setAttribute("aria-label", `Remove item ${index + 1}`);
  });
}

/** The item rows as the API takes them; empty number fields are left out. */
function collectItems() {
  return [...$("playlist-items").children].map((li) => {
    const value = (key) => li.querySelector(`[data-key="${key}"]`).value.trim();
    const item = {};
    if (value("kind") === "file") {
      item.file = value("file");
    } else {
      item.prompt = value("prompt");
      if (value("seconds")) item.seconds = Number(value("seconds"));
      if (value("seed")) item.seed = Number(value("seed"));
    }
    if (value("weight")) item.weight = Number(value("weight"));
    if (value("crossfade_ms")) item.crossfade_ms = Number(value("crossfade_ms"));
    return item;
  });
}

function clearFieldErrors() {
  for (const field of document.querySelectorAll("#playlist-form [aria-invalid]")) field.removeAttribute("aria-invalid");
  for (const error of document.querySelectorAll("#playlist-form .field-error")) error.textContent = "";
}

/** Shows an API error next to the field it names (`detail.field`), or under the form. */
function showFieldError(error) {
  const field = error instanceof ApiError && error.detail ? error.detail.field : null;
  const message = error instanceof ApiError ? error.message : describe(error);
  if (field) {
    const control = document.querySelector(`#playlist-form [data-field="${CSS.escape(field)}"]`);
    if (control) {
      control.setAttribute("aria-invalid", "true");
      const item = control.closest("li.item");
      const slot = item ? item.querySelector("[data-error-for-item]") : null;
      if (slot) slot.textContent = message;
      else $("playlist-error").textContent = message;
      control.focus();
      return;
    }
    const itemMatch = /^items\[(\d+)\]/.exec(field);
    const item = itemMatch ? $("playlist-items").children[Number(itemMatch[1])] : null;
    if (item) {
      item.querySelector("[data-error-for-item]").textContent = message;
      return;
    }
    const slot = document.querySelector(`#playlist-form [data-error-for="${CSS.escape(field)}"]`);
    if (slot) {
      slot.textContent = message;
      return;
    }
  }
  $("playlist-error").textContent = message;
}

async function savePlaylist(event) {
  event.preventDefault();
  clearFieldErrors();
  const name = $("playlist-name").value.trim();
  const body = { rotation: $("playlist-rotation").value, items: collectItems() };
  try {
    if (state.editing) {
      await api("PUT", `/api/playlists/${encodeURIComponent(state.editing)}`, { json: body });
    } else {
      await api("POST", "/api/playlists", { json: { name, ...body } });
    }
    status(`Saved playlist ${name}.`);
    closeEditor();
    await loadPlaylists();
  } catch (error) {
    if (state.token) showFieldError(error);
  }
}

// ---- Media ----------------------------------------------------------------------

async function loadMedia() {
  const notice = $("media-notice");
  try {
    const answer = await api("GET", "/api/media");
    state.media = answer.media || [];
    notice.textContent = state.media.length === 0 ? "The library is empty." : "";
    notice.classList.remove("error");
  } catch (error) {
    state.media = [];
    if (!state.token) return;
    notice.textContent = `The media library is not available: ${describe(error)}`;
    notice.classList.add("error");
  }
  renderMedia();
}

function renderMedia() {
  const rows = state.media.map((entry) => {
    const row = document.createElement("tr");
    row.dataset.media = entry.id;
    const tags = entry.tags || {};
    const cell = (text) => {
      const td = document.createElement("td");
      td.textContent = text || "–";
      return td;
    };
    const actions = document.createElement("td");
    actions.className = "actions";
    const remove = document.createElement("button");
    remove.type = "button";
    remove.className = "button quiet danger";
    remove.textContent = "Delete";
    remove.setAttribute("aria-label", `Delete ${entry.file_name}`);
    remove.addEventListener("click", () => deleteMedia(entry));
    actions.append(remove);
    row.append(
      cell(tags.title),
      cell(tags.artist),
      cell(tags.genre),
      cell(clockLabel((entry.duration_seconds || 0) * 1000)),
      cell(`${entry.file_name} · ${entry.codec} · ${Math.round((entry.size_bytes || 0) / 1024)} KiB`),
      actions,
    );
    return row;
  });
  $("media-rows").replaceChildren(...rows);
  for (const select of document.querySelectorAll('#playlist-items [data-key="file"]')) mediaOptions(select, select.value);
}

async function deleteMedia(entry) {
  if (!window.confirm(`Delete ${entry.file_name} from the library?`)) return;
  try {
    await api("DELETE", `/api/media/${encodeURIComponent(entry.id)}`);
    status(`Deleted ${entry.file_name}.`);
    await loadMedia();
  } catch (error) {
    if (state.token) status(`Could not delete ${entry.file_name}: ${describe(error)}`, true);
  }
}

async function upload(event) {
  event.preventDefault();
  const error = $("upload-error");
  error.textContent = "";
  const file = $("upload-file").files[0];
  if (!file) {
    error.textContent = "Choose a file to upload.";
    $("upload-file").focus();
    return;
  }
  const button = $("upload-button");
  button.disabled = true;
  try {
    await api("POST", `/api/media?name=${encodeURIComponent(file.name)}`, {
      body: file,
      contentType: "application/octet-stream",
    });
    status(`Uploaded ${file.name}.`);
    $("upload-form").reset();
    await loadMedia();
  } catch (failure) {
    if (state.token) error.textContent = `Upload failed: ${describe(failure)}`;
  } finally {
    button.disabled = false;
  }
}

// ---- Wiring ---------------------------------------------------------------------

$("sign-in-form").addEventListener("submit", async (event) => {
  event.preventDefault();
  const button = $("sign-in-button");
  button.disabled = true;
  try {
    await signIn($("token").value.trim());
  } catch (error) {
    $("sign-in-error").textContent = `Could not sign in: ${describe(error)}`;
  } finally {
    button.disabled = false;
  }
});
$("sign-out").addEventListener("click", () => signOut("Signed out."));
$("new-playlist").addEventListener("click", () => openEditor(null));
$("add-item").addEventListener("click", () => {
  const li = addItem({});
  li.querySelector('[data-key="prompt"]').focus();
});
$("cancel-playlist").addEventListener("click", closeEditor);
$("playlist-form").addEventListener("submit", savePlaylist);
$("upload-form").addEventListener("submit", upload);

const saved = sessionStorage.getItem(TOKEN_KEY);
if (saved) {
  signIn(saved).catch((error) => signOut(`Could not sign in: ${describe(error)}`));
} else {
  $("token").focus();
}
