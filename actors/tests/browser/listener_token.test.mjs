// An engine that requires listener tokens (`[auth] require_listener_token = true`): the
// station list and the player, opened with `?token=`, carry the token to the API (as a
// bearer header) and to the audio stream (as `token=`, since a WebSocket cannot send
// headers), and play; without a token the stream is refused with 401.
//
// Run from this folder with `node --test`, SONICFORGE_BIN pointing at the sonicforge
// binary (`make test-browser` does both).
import assert from "node:assert/strict";
import { after, before, test } from "node:test";
import { openPage, startSession } from "./engine.mjs";

const STATION = "main";
const JWT_SECRET = "sonicforge-listener-token-browser-test-0123456789";
const CONFIG = `
[auth]
require_listener_token = true

[[stations]]
id = "${STATION}"
name = "Token Test Station"
renditions_kbps = [64]
crossfade_ms = 1000
track_seconds = 8
upcoming_tracks = 2
seed = 11
playlist = ["lofi chill 80 bpm A minor"]
`;
const PLAY_TIMEOUT_MS = 120_000;
const TEST_TIMEOUT_MS = 180_000;
const PLAYED_MS_REQUIRED = 2_000;

let session = null;
let token = "";

before(async () => {
  session = await startSession({
    folderPrefix: "sonicforge-listener-token-",
    config: CONFIG,
    env: { SONICFORGE_JWT_SECRET: JWT_SECRET },
  });
  token = session.token("listener");
});

after(async () => {
  if (session) await session.close();
});

test("with ?token= the station list and the player work on an engine that requires tokens", { timeout: TEST_TIMEOUT_MS }, async () => {
  const context = await session.browser.newContext({ viewport: { width: 1280, height: 860 } });
  const query = `?token=${encodeURIComponent(token)}`;

  const { page: list, problems: listProblems } = await openPage(context, session.baseUrl, `/${query}`);
  const card = list.locator(`a.station-card[data-station="${STATION}"]`);
  await card.waitFor({ timeout: 30_000 });
  assert.equal(await card.getAttribute("href"), `/stations/${STATION}${query}`, "the link keeps the token");
  assert.deepEqual(listProblems, []);
  await list.close();

  const { page, problems } = await openPage(context, session.baseUrl, `/stations/${STATION}${query}`);
  await page.locator("#station-name", { hasText: "Token Test Station" }).waitFor({ timeout: 30_000 });
  await page.waitForFunction(() => Boolean(window.sonicforgePlayer));
  await page.click("#play");
  try {
    await page.waitForFunction((ms) => window.sonicforgePlayer.stats().playedMs >= ms, PLAYED_MS_REQUIRED, {
      timeout: PLAY_TIMEOUT_MS,
      polling: 250,
    });
  } catch (error) {
    const stats = await page.evaluate(() => window.sonicforgePlayer.stats()).catch(() => null);
    throw new Error(
      `the player did not play with a listener token: ${error.message}\n` +
        `player stats: ${JSON.stringify(stats)}\nlast lines of the engine's stderr:\n${session.engine.log()}`,
    );
  }
  const stats = await page.evaluate(() => window.sonicforgePlayer.stats());
  assert.equal(stats.state, "playing");
  assert.ok(stats.decodedFrames >= PLAYED_MS_REQUIRED / 20, `decoded ${stats.decodedFrames} packets`);

  assert.deepEqual(problems, [], "nothing failed while playing with the token");

  // The same stream and API without the token are refused (Chromium logs both 401s).
  const refused = await page.evaluate(async (station) => {
    const stream = await fetch(`/stations/${station}/stream.opus`);
    const api = await fetch(`/api/stations/${station}`);
    return { stream: stream.status, api: api.status };
  }, STATION);
  assert.deepEqual(refused, { stream: 401, api: 401 });
  await page.click("#play");
  await context.close();
});
