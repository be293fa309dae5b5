// Runs a station from the operator console at /console in headless Chromium, against a
// real engine: signs in with a token from `sonicforge token`, creates a playlist, swaps
// to it now, and checks that a playing listener page shows its first track within 2 s.
//
// Run from this folder with `node --test`, SONICFORGE_BIN pointing at the sonicforge
// binary (`make test-browser` does both). SONICFORGE_CONSOLE_SCREENSHOT, if set, is
// the folder where screenshots of the console (wide and 375 px) are saved.
// The test also uploads a generated WAV file and a bad one, deletes the upload, and
// stops and starts the station.
import assert from "node:assert/strict";
import { join } from "node:path";
import { after, before, test } from "node:test";
import { openPage, startSession } from "./engine.mjs";

const STATION = "main";
const JWT_SECRET = "sonicforge-console-browser-test-secret-0123456789";
// Two playlists' worth of prompts, short tracks: the built-in one from the config and
// the one the test creates through the console.
const CONFIG = `
[[stations]]
id = "${STATION}"
name = "Console Test Station"
renditions_kbps = [64]
crossfade_ms = 1000
track_seconds = 8
upcoming_tracks = 2
swap_ready_playlists = 2
seed = 7
playlist = ["lofi chill 80 bpm A minor", "deep house 122 bpm F minor"]
`;
const NEW_PLAYLIST = "console-evening";
const NEW_PROMPTS = ["synthwave driving 100 bpm E minor", "ambient calm 70 bpm C major"];
const PLAY_TIMEOUT_MS = 120_000;
const TEST_TIMEOUT_MS = 180_000;
const UI_TIMEOUT_MS = 15_000;
const SWAP_HEARD_WITHIN_MS = 2_000;

let session = null;

before(async () => {
  session = await startSession({
    folderPrefix: "sonicforge-console-",
    config: CONFIG,
    env: { SONICFORGE_JWT_SECRET: JWT_SECRET },
  });
});

after(async () => {
  if (session) await session.close();
});

/** A second of a 440 Hz tone as a 16-bit 48 kHz mono WAV file. */
function toneWav() {
  const rate = 48_000;
  const samples = rate;
  const data = Buffer.alloc(samples * 2);
  for (let i = 0; i < samples; i += 1) {
    data.writeInt16LE(Math.round(Math.sin((2 * Math.PI * 440 * i) / rate) * 12_000), i * 2);
  }
  const header = Buffer.alloc(44);
  header.write("RIFF", 0);
  header.writeUInt32LE(36 + data.length, 4);
  header.write("WAVE", 8);
  header.write("fmt ", 12);
  header.writeUInt32LE(16, 16);
  header.writeUInt16LE(1, 20);
  header.writeUInt16LE(1, 22);
  header.writeUInt32LE(rate, 24);
  header.writeUInt32LE(rate * 2, 28);
  header.writeUInt16LE(2, 32);
  header.writeUInt16LE(16, 34);
  header.write("data", 36);
  header.writeUInt32LE(data.length, 40);
  return Buffer.concat([header, data]);
}

/** Only the failed requests the test provokes on purpose may log errors. */
function unexpected(problems) {
  return problems.filter((line) => !/status of (40[13]|41[35]|422)/.test(line));
}

async function signIn(page, token) {
  await page.fill("#token", token);
  await page.click("#sign-in-button");
}

test("a wrong token shows the sign-in error and keeps the console closed", { timeout: TEST_TIMEOUT_MS }, async () => {
  const context = await session.browser.newContext();
  try {
    const { page, problems } = await openPage(context, session.baseUrl, "/console");
    await signIn(page, "not-a-token");
    await page.locator("#sign-in-error").filter({ hasText: "not a token" }).waitFor({ timeout: UI_TIMEOUT_MS });

    // Well formed, but signed with another secret.
    const forged = session.token("operator").split(".");
    forged[2] = forged[2].split("").reverse().join("");
    await signIn(page, forged.join("."));
    await page.locator("#sign-in-error").filter({ hasText: "refused" }).waitFor({ timeout: UI_TIMEOUT_MS });
    assert.ok(await page.locator("#workspace").isHidden(), "the console stays closed");
    assert.equal(await page.evaluate(() => sessionStorage.length), 0, "nothing is kept");

    // A listener may listen, not operate.
    await signIn(page, session.token("listener"));
    await page.locator("#sign-in-error").filter({ hasText: "role is listener" }).waitFor({ timeout: UI_TIMEOUT_MS });
    assert.ok(await page.locator("#workspace").isHidden());
    assert.deepEqual(unexpected(problems), []);
  } finally {
    await context.close();
  }
});

test("an operator creates a playlist in the console and swaps to it on air", { timeout: TEST_TIMEOUT_MS }, async () => {
  const context = await session.browser.newContext({ viewport: { width: 1280, height: 900 } });
  try {
    const { page: console_, problems } = await openPage(context, session.baseUrl, "/console");
    await signIn(console_, session.token("operator"));
    await console_.locator("#whoami").filter({ hasText: "operator" }).waitFor({ timeout: UI_TIMEOUT_MS });
    const panel = console_.locator(`.station-panel[data-station="${STATION}"]`);
    await panel.waitFor({ timeout: UI_TIMEOUT_MS });
    assert.equal(await panel.locator('[data-field="playlist"]').innerText(), STATION, "the built-in playlist plays");

    // A field error from the API shows next to its field.
    await console_.click("#new-playlist");
    await console_.fill("#playlist-name", NEW_PLAYLIST);
    await console_.fill("#item-0-seconds", "0");
    await console_.fill("#item-0-prompt", NEW_PROMPTS[0]);
    await console_.click("#save-playlist");
    await console_.locator("#item-0-error").filter({ hasText: "seconds" }).waitFor({ timeout: UI_TIMEOUT_MS });
    assert.equal(await console_.getAttribute("#item-0-seconds", "aria-invalid"), "true");

    await console_.fill("#item-0-seconds", "");
    await console_.click("#add-item");
    await console_.fill("#item-1-prompt", NEW_PROMPTS[1]);
    await console_.selectOption("#playlist-rotation", "shuffle");
    await console_.click("#save-playlist");
    const row = console_.locator(`#playlist-rows tr[data-playlist="${NEW_PLAYLIST}"]`);
    await row.waitFor({ timeout: UI_TIMEOUT_MS });
    assert.match(await row.innerText(), /shuffle\s+2/);
    const stored = await (await fetch(`${session.baseUrl}/api/playlists/${NEW_PLAYLIST}`)).json();
    assert.deepEqual(
      stored.items.map((item) => item.prompt),
      NEW_PROMPTS,
    );

    // A listener plays the station in a second page.
    const { page: player, problems: playerProblems } = await openPage(context, session.baseUrl, `/stations/${STATION}`);
    await player.waitForFunction(() => Boolean(window.sonicforgePlayer));
    await player.click("#play");
    await player.waitForFunction(() => window.sonicforgePlayer.stats().playedMs >= 2_000, null, {
      timeout: PLAY_TIMEOUT_MS,
      polling: 250,
    });
    const before = await player.evaluate(() => window.sonicforgePlayer.stats().nowPlaying);
    assert.equal(before.playlist, STATION);

    // The console sees the listener through the event stream.
    await panel.locator('[data-field="listeners"]').filter({ hasText: /^1 listener$/ }).waitFor({ timeout: UI_TIMEOUT_MS });

    await panel.locator('[data-field="swap-playlist"]').selectOption(NEW_PLAYLIST);
    const answered = console_.waitForResponse(
      (response) => response.url().endsWith(`/api/stations/${STATION}/playlist`) && response.request().method() === "PUT",
    );
    // Both pages stamp their moments with the same clock: the click where the console
    // gets it, the title where the player shows it.
    await player.evaluate(() => {
      window.titleShownAt = [];
      const title = document.getElementById("np-title");
      new MutationObserver(() => window.titleShownAt.push({ at: Date.now(), text: title.textContent })).observe(title, {
        childList: true,
        characterData: true,
        subtree: true,
      });
    });
    await panel.locator('[data-action="swap-now"]').evaluate((button) => {
      button.addEventListener("click", () => (window.swapClickedAt = Date.now()), { once: true });
    });
    await panel.locator('[data-action="swap-now"]').click();
    const swap = await (await answered).json();
    assert.equal(swap.to, NEW_PLAYLIST);
    await player.waitForFunction(
      (name) => {
        const now = window.sonicforgePlayer.stats().nowPlaying;
        return Boolean(now && now.playlist === name && document.getElementById("np-title").textContent === now.title);
      },
      NEW_PLAYLIST,
      { timeout: 10_000, polling: 50 },
    );
    const clickedAt = await console_.evaluate(() => window.swapClickedAt);
    const shown = await player.evaluate(() => {
      const title = window.sonicforgePlayer.stats().nowPlaying.title;
      return window.titleShownAt.find((change) => change.text === title);
    });
    assert.ok(Number.isFinite(clickedAt) && shown, "the click and the title change were both seen");
    const heardAfterMs = shown.at - clickedAt;
    console.log(`the player showed the new playlist's first track ${heardAfterMs} ms after the swap click`);
    const title = await player.locator("#np-title").innerText();
    const playerStats = await player.evaluate(() => window.sonicforgePlayer.stats());
    assert.ok(
      heardAfterMs <= SWAP_HEARD_WITHIN_MS,
      `the player showed "${title}" of ${NEW_PLAYLIST} ${heardAfterMs} ms after the click ` +
        `(first track ready: ${swap.first_track_ready}; ` +
        `player latency ${Math.round(playerStats.latencyMs)} ms, buffer ${Math.round(playerStats.bufferMs)} ms)`,
    );
    assert.ok(NEW_PROMPTS.includes(await player.evaluate(() => window.sonicforgePlayer.stats().nowPlaying.prompt)));

    // The console follows: playlist and now playing from the API and the event stream.
    await panel.locator('[data-field="playlist"]').filter({ hasText: NEW_PLAYLIST }).waitFor({ timeout: UI_TIMEOUT_MS });
    await panel.locator('[data-field="now-playing"]').filter({ hasText: title }).waitFor({ timeout: UI_TIMEOUT_MS });

    if (process.env.SONICFORGE_CONSOLE_SCREENSHOT) {
      await console_.screenshot({ path: join(process.env.SONICFORGE_CONSOLE_SCREENSHOT, "console-wide.png"), fullPage: true });
      await console_.setViewportSize({ width: 375, height: 800 });
      await console_.screenshot({ path: join(process.env.SONICFORGE_CONSOLE_SCREENSHOT, "console-375.png"), fullPage: true });
    }
    // Nothing is wider than a 375 px phone.
    await console_.setViewportSize({ width: 375, height: 800 });
    const overflow = await console_.evaluate(() => document.documentElement.scrollWidth - window.innerWidth);
    assert.ok(overflow <= 0, `the console scrolls sideways by ${overflow} px at 375 px`);

    // Media: an upload is listed with its tags, a bad file is refused with the reason, a delete removes it.
    await console_.setViewportSize({ width: 1280, height: 900 });
    console_.on("dialog", (dialog) => dialog.accept());
    await console_.setInputFiles("#upload-file", { name: "console-tone.wav", mimeType: "audio/wav", buffer: toneWav() });
    await console_.click("#upload-button");
    const media = console_.locator("#media-rows tr", { hasText: "console-tone.wav" });
    await media.waitFor({ timeout: UI_TIMEOUT_MS });
    assert.match(await media.innerText(), /0:01/);
    await console_.setInputFiles("#upload-file", { name: "noise.wav", mimeType: "audio/wav", buffer: Buffer.from("not audio at all") });
    await console_.click("#upload-button");
    await console_.locator("#upload-error").filter({ hasText: "Upload failed" }).waitFor({ timeout: UI_TIMEOUT_MS });
    await media.locator("button", { hasText: "Delete" }).click();
    await media.waitFor({ state: "detached", timeout: UI_TIMEOUT_MS });
    assert.equal((await (await fetch(`${session.baseUrl}/api/media`)).json()).media.length, 0);

    // The listener stops playing; the operator stops the station and starts it again.
    await player.click("#play");
    const stopStart = panel.locator('[data-action="stop-start"]');
    await stopStart.filter({ hasText: "Stop station" }).click();
    await panel.locator('[data-field="on-air"]').filter({ hasText: "Stopped" }).waitFor({ timeout: UI_TIMEOUT_MS });
    assert.equal((await (await fetch(`${session.baseUrl}/api/stations/${STATION}`)).json()).state, "stopped");
    assert.ok(await panel.locator('[data-action="skip"]').isDisabled());
    await stopStart.filter({ hasText: "Start station" }).click();
    await panel.locator('[data-field="on-air"]').filter({ hasText: "On air" }).waitFor({ timeout: PLAY_TIMEOUT_MS });
    assert.equal((await (await fetch(`${session.baseUrl}/api/stations/${STATION}`)).json()).state, "running");

    // Signing out forgets the token.
    await console_.click("#sign-out");
    await console_.locator("#sign-in").waitFor({ timeout: UI_TIMEOUT_MS });
    assert.equal(await console_.evaluate(() => sessionStorage.length), 0);

    assert.deepEqual(unexpected(problems), []);
    assert.deepEqual(playerProblems, []);
  } finally {
    await context.close();
  }
});
