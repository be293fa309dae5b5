// Plays a station through the web player in headless Chromium, against a real engine.
//
// Run from this folder with `node --test`, SONICFORGE_BIN pointing at the sonicforge
// binary (`make test-browser` does both). SONICFORGE_CONFIG, if set, is passed as
// `--config`. SONICFORGE_SCREENSHOT, if set, is where a screenshot of the playing
// station page is saved.
import assert from "node:assert/strict";
import { after, before, test } from "node:test";
import { openPage, startSession } from "./engine.mjs";

const STATION = "main";
// The first track is rendered before anything plays; this machine may be slow.
const PLAY_TIMEOUT_MS = 120_000;
const TEST_TIMEOUT_MS = 180_000;
const PLAYED_MS_REQUIRED = 5_000;
const SOUND_TIMEOUT_MS = 15_000;
const AUDIBLE_PEAK = 0.01;

let session = null;
let context = null;

before(async () => {
  session = await startSession({
    folderPrefix: "sonicforge-browser-",
    configFile: process.env.SONICFORGE_CONFIG || null,
  });
  context = await session.browser.newContext({ viewport: { width: 1280, height: 860 } });
});

after(async () => {
  if (session) await session.close();
});

/**
 * Waits until the player reports a peak above `level` (music has quiet moments, so
 * this allows a few seconds) and returns its stats.
 */
async function waitForSound(page, level) {
  try {
    await page.waitForFunction((min) => window.sonicforgePlayer.stats().peak > min, level, {
      timeout: SOUND_TIMEOUT_MS,
      polling: 100,
    });
  } catch {
    // The assertions on the returned stats explain what was heard.
  }
  return page.evaluate(() => window.sonicforgePlayer.stats());
}

/** Clicks Play and waits until the player has played `playedMs` of audio. */
async function playFor(page, playedMs) {
  await page.waitForFunction(() => Boolean(window.sonicforgePlayer));
  await page.click("#play");
  try {
    await page.waitForFunction((ms) => window.sonicforgePlayer.stats().playedMs >= ms, playedMs, {
      timeout: PLAY_TIMEOUT_MS,
      polling: 250,
    });
  } catch (error) {
    const stats = await page.evaluate(() => window.sonicforgePlayer.stats()).catch(() => null);
    throw new Error(
      `the player did not play ${playedMs} ms of audio: ${error.message}\n` +
        `player stats: ${JSON.stringify(stats)}\nlast lines of the engine's stderr:\n${session.engine.log()}`,
    );
  }
  return page.evaluate(() => window.sonicforgePlayer.stats());
}

test("the station list links to the main station", { timeout: TEST_TIMEOUT_MS }, async () => {
  const { page, problems } = await openPage(context, session.baseUrl, "/");
  const card = page.locator(`a.station-card[data-station="${STATION}"]`);
  await card.waitFor({ timeout: 30_000 });
  assert.equal(await card.getAttribute("href"), `/stations/${STATION}`);
  const api = await (await fetch(`${session.baseUrl}/api/stations/${STATION}`)).json();
  assert.ok((await card.innerText()).includes(api.name), `the card names the station "${api.name}"`);
  assert.deepEqual(problems, []);
  await page.close();
});

test("the page links its manifest and registers a service worker that caches only the shell", { timeout: TEST_TIMEOUT_MS }, async () => {
  const { page, problems } = await openPage(context, session.baseUrl, "/");
  const manifestHref = await page.locator('link[rel="manifest"]').getAttribute("href");
  assert.equal(manifestHref, "/manifest.webmanifest");
  const response = await fetch(`${session.baseUrl}${manifestHref}`);
  assert.equal(response.status, 200);
  const manifest = await response.json();
  assert.equal(manifest.start_url, "/");
  assert.equal(manifest.display, "standalone");
  assert.ok(manifest.name, "the manifest has a name");
  for (const icon of manifest.icons) {
    const fetched = await fetch(new URL(icon.src, session.baseUrl));
    assert.equal(fetched.status, 200, `icon ${icon.src} is served`);
    assert.equal(fetched.headers.get("content-type"), icon.type, `icon ${icon.src} has its declared type`);
  }
  assert.ok(manifest.icons.some((icon) => icon.type === "image/png" && icon.sizes === "512x512"));

  const worker = await page.evaluate(async () => {
    const registration = await navigator.serviceWorker.ready;
    return registration.active ? registration.active.scriptURL : null;
  });
  assert.equal(worker, `${session.baseUrl}/sw.js`);
  const cached = await page.evaluate(async () => {
    const urls = [];
    for (const name of await caches.keys()) {
      for (const request of await (await caches.open(name)).keys()) urls.push(new URL(request.url).pathname);
    }
    return urls;
  });
  assert.ok(cached.includes("/"), `the shell is cached: ${cached}`);
  assert.ok(cached.includes("/assets/player.js"), `the player is cached: ${cached}`);
  assert.deepEqual(problems, []);
  await page.close();
});

test("the station page plays the WebSocket stream through WebCodecs", { timeout: TEST_TIMEOUT_MS }, async () => {
  const { page, problems } = await openPage(context, session.baseUrl, `/stations/${STATION}`);
  assert.ok(
    await page.evaluate(() => Boolean(navigator.serviceWorker.controller)),
    "the station page loads under the service worker",
  );
  await playFor(page, PLAYED_MS_REQUIRED);
  const stats = await waitForSound(page, AUDIBLE_PEAK);
  if (process.env.SONICFORGE_SCREENSHOT) await page.screenshot({ path: process.env.SONICFORGE_SCREENSHOT });

  assert.equal(stats.mode, "webcodecs", "the WebCodecs path plays, not the fallback");
  assert.equal(await page.locator("#fallback-audio").getAttribute("src"), null, "the fallback element stays unused");
  assert.equal(stats.state, "playing");
  assert.equal(stats.sampleRate, 48_000);
  assert.equal(stats.channels, 2);
  assert.ok(stats.decodedFrames >= PLAYED_MS_REQUIRED / 20, `decoded ${stats.decodedFrames} packets`);
  assert.ok(stats.peak > AUDIBLE_PEAK, `decoded audio is not silent (peak ${stats.peak})`);
  assert.ok(stats.rms > 0.001, `decoded audio is not silent (rms ${stats.rms})`);
  assert.ok(stats.peak <= 1.5, `decoded audio is in range (peak ${stats.peak})`);
  assert.ok(Number.isFinite(stats.latencyMs), `latency is measured (${stats.latencyMs})`);
  assert.ok(stats.nowPlaying && stats.nowPlaying.title, "now playing is known");
  assert.equal(await page.locator("#np-title").innerText(), stats.nowPlaying.title);

  const cached = await page.evaluate(async () => {
    const urls = [];
    for (const name of await caches.keys()) {
      for (const request of await (await caches.open(name)).keys()) urls.push(new URL(request.url).pathname);
    }
    return urls;
  });
  const live = cached.filter((path) => /\/(ws|stream\.opus)$|^\/api\/|^\/metrics/.test(path));
  assert.deepEqual(live, [], "no stream, socket, API or metrics response is cached");

  await page.click("#play");
  assert.equal((await page.evaluate(() => window.sonicforgePlayer.stats())).state, "stopped");
  assert.deepEqual(problems, []);
  await page.close();
});

test("the player falls back to the Ogg stream where WebCodecs is missing", { timeout: TEST_TIMEOUT_MS }, async () => {
  const bare = await session.browser.newContext();
  try {
    await bare.addInitScript(() => {
      delete window.AudioDecoder;
    });
    const { page, problems } = await openPage(bare, session.baseUrl, `/stations/${STATION}`);
    await playFor(page, 2_000);
    const stats = await waitForSound(page, AUDIBLE_PEAK);
    assert.equal(stats.mode, "fallback");
    const src = await page.locator("#fallback-audio").getAttribute("src");
    assert.match(src, new RegExp(`^/stations/${STATION}/stream\\.opus\\?bitrate=\\d+$`));
    assert.equal(stats.decodedFrames, 0, "nothing went through WebCodecs");
    assert.ok(stats.peak > AUDIBLE_PEAK, `the stream is not silent (peak ${stats.peak})`);
    assert.deepEqual(problems, []);
  } finally {
    await bare.close();
  }
});
