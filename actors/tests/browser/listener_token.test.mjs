// An engine that requires listener tokens (`[auth] require_listener_token = true`): the
// station list and the player, opened with `?token=`, carry the token to the API (as a
// bearer header) and to the audio stream (as `token=`, since a WebSocket cannot send
// headers), and play; without a token the stream is refused with 401.
//
// Run from this folder with `node --test`, SONICFORGE_BIN pointing at the sonicforge
// binary (`make test-browser` does both).
import assert from "node:assert/strict";
import { execFileSync } from "node:child_process";
import { mkdtempSync, rmSync, writeFileSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { after, before, test } from "node:test";
import { chromium } from "playwright-core";
import { CHROMIUM, CHROMIUM_ARGS, Engine, engineBinary, openPage, requireChromium } from "./engine.mjs";

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
const LISTENING_TIMEOUT_MS = 60_000;
const PLAY_TIMEOUT_MS = 120_000;
const TEST_TIMEOUT_MS = 180_000;
const PLAYED_MS_REQUIRED = 2_000;

let engine = null;
let baseUrl = "";
let workDir = null;
let browser = null;
let token = "";

before(async () => {
  const bin = engineBinary();
  requireChromium();
  workDir = mkdtempSync(join(tmpdir(), "sonicforge-listener-token-"));
  const configPath = join(workDir, "sonicforge.toml");
  writeFileSync(configPath, CONFIG);
  const env = { ...process.env, SONICFORGE_DATA_DIR: join(workDir, "data"), SONICFORGE_JWT_SECRET: JWT_SECRET };
  process.once("exit", () => {
    if (engine && engine.process.exitCode === null) engine.process.kill("SIGKILL");
  });
  engine = new Engine(bin, ["run", "--listen", "127.0.0.1:0", "--config", configPath], env);
  baseUrl = await engine.listening(LISTENING_TIMEOUT_MS);
  token = execFileSync(bin, ["token", "--role", "listener", "--ttl", "1h", "--config", configPath], {
    env,
    encoding: "utf8",
  }).trim();
  browser = await chromium.launch({ executablePath: CHROMIUM, args: CHROMIUM_ARGS, timeout: 60_000 });
});

after(async () => {
  try {
    if (browser) await browser.close();
  } finally {
    if (engine) await engine.stop();
    if (workDir) rmSync(workDir, { recursive: true, force: true });
  }
});

test("with ?token= the station list and the player work on an engine that requires tokens", { timeout: TEST_TIMEOUT_MS }, async () => {
  const context = await browser.newContext({ viewport: { width: 1280, height: 860 } });
  const query = `?token=${encodeURIComponent(token)}`;

  const { page: list, problems: listProblems } = await openPage(context, baseUrl, `/${query}`);
  const card = list.locator(`a.station-card[data-station="${STATION}"]`);
  await card.waitFor({ timeout: 30_000 });
  assert.equal(await card.getAttribute("href"), `/stations/${STATION}${query}`, "the link keeps the token");
  assert.deepEqual(listProblems, []);
  await list.close();

  const { page, problems } = await openPage(context, baseUrl, `/stations/${STATION}${query}`);
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
        `player stats: ${JSON.stringify(stats)}\nlast lines of the engine's stderr:\n${engine.log()}`,
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
