// Shared by every page: service worker registration and the station API.

/** Registers the service worker that keeps the page shell available offline. */
export function registerServiceWorker() {
  if (!("serviceWorker" in navigator)) return Promise.resolve(null);
  return navigator.serviceWorker.register("/sw.js", { scope: "/" }).catch((error) => {
    console.warn("service worker registration failed", error);
    return null;
  });
}

/** An API answer that was not a success, with the server's explanation. */
export class ApiError extends Error {
  constructor(status, body) {
    super(body && body.error ? body.error : `HTTP ${status}`);
    this.name = "ApiError";
    this.status = status;
    this.detail = body ? body.detail : null;
  }
}

/**
 * The listener token of an engine that requires one (`[auth] require_listener_token`),
 * given to the page as `?token=`; null when the page has none.
 */
export const listenerToken = new URLSearchParams(location.search).get("token");

/** `url` with the page's listener token added as `token=` (streams cannot send headers). */
export function withListenerToken(url) {
  if (!listenerToken) return url;
  const separator = url.includes("?") ? "&" : "?";
  return `${url}${separator}token=${encodeURIComponent(listenerToken)}`;
}

async function getJson(path, signal) {
  const headers = { accept: "application/json" };
  if (listenerToken) headers.authorization = `Bearer ${listenerToken}`;
  const response = await fetch(path, { headers, cache: "no-store", signal });
  let body = null;
  try {
    body = await response.json();
  } catch {
    body = null;
  }
  if (!response.ok) throw new ApiError(response.status, body);
  return body;
}

/** Every station, as `GET /api/stations` lists them. */
export async function fetchStations(signal) {
  const body = await getJson("/api/stations", signal);
  return Array.isArray(body && body.stations) ? body.stations : [];
}

/** One station, as `GET /api/stations/{id}` shows it. */
export function fetchStation(id, signal) {
  return getJson(`/api/stations/${encodeURIComponent(id)}`, signal);
}

/** "1 listener", "3 listeners". */
export function listenerLabel(count) {
  const n = Number.isFinite(count) ? count : 0;
  return `${n} listener${n === 1 ? "" : "s"}`;
}

/** Milliseconds as m:ss. */
export function clockLabel(ms) {
  const total = Math.max(0, Math.floor(ms / 1000));
  const minutes = Math.floor(total / 60);
  const seconds = String(total % 60).padStart(2, "0");
  return `${minutes}:${seconds}`;
}
