// What the browser tests share: the engine process they start and the Chromium they drive.
import { execFileSync, spawn } from "node:child_process";
import { existsSync, mkdtempSync, rmSync, writeFileSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { createInterface } from "node:readline";
import { chromium } from "playwright-core";

export const CHROMIUM = "/usr/bin/chromium";
export const CHROMIUM_ARGS = [
  "--headless",
  "--no-sandbox",
  "--disable-gpu",
  "--disable-quic",
  "--no-first-run",
  "--disable-background-networking",
  "--disable-component-update",
  "--disable-sync",
  "--autoplay-policy=no-user-gesture-required",
];
const STDERR_LINES_KEPT = 40;

/** The engine process, its base URL and the tail of its log. */
export class Engine {
  constructor(bin, args, env) {
    this.stderr = [];
    this.exited = null;
    this.process = spawn(bin, args, { env, stdio: ["ignore", "pipe", "pipe"] });
    this.process.on("exit", (code, signal) => {
      this.exited = { code, signal };
    });
    createInterface({ input: this.process.stderr }).on("line", (line) => {
      this.stderr.push(line);
      if (this.stderr.length > STDERR_LINES_KEPT) this.stderr.shift();
    });
  }

  log() {
    return this.stderr.join("\n");
  }

  /** Resolves with the URL of the `listening on http://...` line the engine prints once bound. */
  listening(timeoutMs) {
    return new Promise((resolve, reject) => {
      const lines = createInterface({ input: this.process.stdout });
      const fail = (why) => {
        clearTimeout(timer);
        lines.close();
        reject(new Error(`${why}\nlast lines of the engine's stderr:\n${this.log()}`));
      };
      const timer = setTimeout(() => fail(`the engine printed no "listening on" line within ${timeoutMs} ms`), timeoutMs);
      lines.on("line", (line) => {
        const match = /^listening on (http:\/\/\S+?)\/?$/.exec(line.trim());
        if (!match) return;
        clearTimeout(timer);
        resolve(match[1]);
      });
      this.process.once("exit", (code, signal) => fail(`the engine exited early (code ${code}, signal ${signal})`));
      this.process.once("error", (error) => fail(`the engine could not be started: ${error.message}`));
    });
  }

  /** Stops the engine: SIGTERM, then SIGKILL if it lingers. */
  async stop() {
    if (this.exited || this.process.exitCode !== null) return;
    const gone = new Promise((resolve) => this.process.once("exit", resolve));
    this.process.kill("SIGTERM");
    const timer = setTimeout(() => this.process.kill("SIGKILL"), 5_000);
    await gone;
    clearTimeout(timer);
  }
}

/** The sonicforge binary named by SONICFORGE_BIN (`make test-browser` sets it). */
export function engineBinary() {
  const bin = process.env.SONICFORGE_BIN;
  if (!bin) {
    throw new Error(
      "SONICFORGE_BIN is not set: point it at the sonicforge binary, e.g. " +
        "SONICFORGE_BIN=$CARGO_TARGET_DIR/debug/sonicforge node --test (or run `make test-browser`)",
    );
  }
  if (!existsSync(bin)) {
    throw new Error(`SONICFORGE_BIN=${bin} does not exist: build it with \`cargo build -p sonicforge-actors\``);
  }
  return bin;
}

/** Fails with a clear message where Chromium is missing. */
export function requireChromium() {
  if (!existsSync(CHROMIUM)) {
    throw new Error(`${CHROMIUM} is missing: run \`make test\`, which installs Debian's chromium`);
  }
}

/** Opens `path` of the engine at `baseUrl` in a new page of `ctx`; the page's uncaught
 * exceptions and console errors are collected into `problems`. */
export async function openPage(ctx, baseUrl, path) {
  const page = await ctx.newPage();
  const problems = [];
  page.on("pageerror", (error) => problems.push(`uncaught: ${error.message}`));
  page.on("console", (message) => {
    if (message.type() === "error") problems.push(`console: ${message.text()}`);
  });
  await page.goto(`${baseUrl}${path}`, { waitUntil: "load" });
  return { page, problems };
}

const LISTENING_TIMEOUT_MS = 60_000;

/**
 * What a browser test file runs against: an engine on a free loopback port, its files
 * in a throwaway folder, and a headless Chromium. `config` is the TOML text of the
 * engine's config (null: `configFile` when given, else the embedded defaults); `env`
 * is added to the engine's environment (and to `sonicforge token`'s).
 */
export async function startSession({ folderPrefix, config = null, configFile = null, env = {} }) {
  const bin = engineBinary();
  requireChromium();
  const workDir = mkdtempSync(join(tmpdir(), folderPrefix));
  const session = {
    bin,
    workDir,
    configPath: configFile,
    env: { ...process.env, SONICFORGE_DATA_DIR: join(workDir, "data"), ...env },
    engine: null,
    baseUrl: "",
    browser: null,
    /** A token of `role` from `sonicforge token` (needs a config). */
    token(role) {
      return execFileSync(bin, ["token", "--role", role, "--ttl", "1h", "--config", this.configPath], {
        env: this.env,
        encoding: "utf8",
      }).trim();
    },
    /** Closes Chromium, stops the engine and removes the folder. */
    async close() {
      try {
        if (this.browser) await this.browser.close();
      } finally {
        if (this.engine) await this.engine.stop();
        rmSync(workDir, { recursive: true, force: true });
      }
    },
  };
  try {
    if (config !== null) {
      session.configPath = join(workDir, "sonicforge.toml");
      writeFileSync(session.configPath, config);
    }
    const args = ["run", "--listen", "127.0.0.1:0"];
    if (session.configPath) args.push("--config", session.configPath);
    const engine = new Engine(bin, args, session.env);
    session.engine = engine;
    process.once("exit", () => {
      if (engine.process.exitCode === null) engine.process.kill("SIGKILL");
    });
    session.baseUrl = await engine.listening(LISTENING_TIMEOUT_MS);
    session.browser = await chromium.launch({ executablePath: CHROMIUM, args: CHROMIUM_ARGS, timeout: 60_000 });
    return session;
  } catch (error) {
    await session.close();
    throw error;
  }
}
