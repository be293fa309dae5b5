// The service worker: keeps the page shell (pages, scripts, styles, icons) available
// offline. Live audio, the API and metrics are never cached and never intercepted:
// their requests go straight to the network.

const CACHE = "sonicforge-shell-v1";
// Every station page is the same file; the latest copy also answers offline visits
// to stations not yet seen.
const STATION_SHELL = "/stations/:station";
const PRECACHE = [
  "/",
  "/manifest.webmanifest",
  "/assets/style.css",
  "/assets/shell.js",
  "/assets/stations.js",
  "/assets/player.js",
  "/assets/worklet.js",
  "/assets/icon.svg",
  "/assets/icon-192.png",
  "/assets/icon-512.png",
];

/** Whether `url` is part of the shell this worker may answer from its cache. */
function isShell(url) {
  if (url.origin !== self.location.origin) return false;
  const path = url.pathname;
  if (path === "/" || path === "/manifest.webmanifest") return true;
  if (path.startsWith("/assets/")) return true;
  return isStationPage(path);
}

/** `/stations/{id}` exactly: not its `/ws` socket nor its `/stream.opus` stream. */
function isStationPage(path) {
  return /^\/stations\/[^/]+\/?$/.test(path);
}

self.addEventListener("install", (event) => {
  event.waitUntil(
    caches
      .open(CACHE)
      .then((cache) => cache.addAll(PRECACHE))
      .then(() => self.skipWaiting()),
  );
});

self.addEventListener("activate", (event) => {
  event.waitUntil(
    caches
      .keys()
      .then((keys) => Promise.all(keys.filter((key) => key !== CACHE).map((key) => caches.delete(key))))
      .then(() => self.clients.claim()),
  );
});

// Network first, so a new engine build shows at once; the cache answers offline.
async function fromNetworkThenCache(request) {
  const url = new URL(request.url);
  const cache = await caches.open(CACHE);
  try {
    const response = await fetch(request);
    if (response.ok && response.type === "basic") {
      await cache.put(request, response.clone());
      if (isStationPage(url.pathname)) await cache.put(STATION_SHELL, response.clone());
    }
    return response;
  } catch (error) {
    const cached =
      (await cache.match(request, { ignoreSearch: true })) ||
      (isStationPage(url.pathname) ? await cache.match(STATION_SHELL) : undefined);
    if (cached) return cached;
    throw error;
  }
}

self.addEventListener("fetch", (event) => {
  const request = event.request;
  if (request.method !== "GET") return;
  const url = new URL(request.url);
  // Anything outside the shell (streams, sockets, the API, metrics, health) is left alone.
  if (!isShell(url)) return;
  if (request.headers.has("range")) return;
  event.respondWith(fromNetworkThenCache(request));
});
