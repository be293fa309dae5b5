// The station list at `/`.
import { fetchStations, listenerLabel, registerServiceWorker, withListenerToken } from "/assets/shell.js";

const REFRESH_MS = 10_000;

const list = document.getElementById("stations");
const notice = document.getElementById("stations-notice");
const template = document.getElementById("station-card");

function fill(card, station) {
  const set = (field, text) => {
    card.querySelector(`[data-field="${field}"]`).textContent = text;
  };
  const link = card.querySelector("a");
  link.href = withListenerToken(`/stations/${encodeURIComponent(station.id)}`);
  link.dataset.station = station.id;
  set("name", station.name || station.id);
  set("description", station.description || "");
  const onAir = card.querySelector('[data-field="on-air"]');
  onAir.textContent = station.on_air ? "On air" : "Off air";
  onAir.classList.toggle("live", Boolean(station.on_air));
  const now = station.now_playing;
  set("title", now ? now.title : "Warming up…");
  set("prompt", now ? now.prompt : "");
  set("listeners", listenerLabel(station.listeners));
  const renditions = Array.isArray(station.renditions) ? station.renditions : [];
  set("renditions", renditions.map((kbps) => `${kbps}k`).join(" · "));
}

function render(allStations) {
  // Stations stopped by an operator are not on air: listeners see only running ones.
  const stations = allStations.filter((station) => station.state !== "stopped");
  const cards = stations.map((station) => {
    const card = template.content.cloneNode(true);
    fill(card, station);
    return card;
  });
  list.replaceChildren(...cards);
  notice.hidden = stations.length > 0;
  notice.textContent = stations.length > 0 ? "" : "No stations are on air.";
  notice.classList.remove("error");
}

async function refresh() {
  try {
    render(await fetchStations());
  } catch (error) {
    if (list.children.length === 0) {
      notice.hidden = false;
      notice.textContent = `Could not load the stations: ${error.message}`;
      notice.classList.add("error");
    }
  }
}

refresh();
setInterval(() => {
  if (document.visibilityState === "visible") refresh();
}, REFRESH_MS);
registerServiceWorker();
