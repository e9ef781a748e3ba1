import { existsSync, mkdtempSync, rmSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { chromium, type BrowserContext } from "playwright-core";

/** Debian's chromium, which .ci/run installs; playwright-core brings no browser of its own. */
export const CHROMIUM = "/usr/bin/chromium";

/** Why browser tests cannot run here, or undefined when they can. */
export function chromiumMissing(): string | undefined {
  return existsSync(CHROMIUM) ? undefined : `${CHROMIUM} is missing (apt-get install chromium; .ci/run does): browser tests skipped`;
}

/**
 * Flags for a headless chromium on a CI machine: no sandbox (CI runs as
 * root), no GPU, and nothing that reaches out to the internet by itself
 * (updates, sync, QUIC probes), so the page is tested offline.
 */
const ARGS = ["--headless", "--no-sandbox", "--disable-gpu", "--disable-quic", "--no-first-run", "--disable-background-networking", "--disable-component-update", "--disable-sync"];

export interface HeadlessChromium {
  readonly context: BrowserContext;
  /** Closes the browser and removes its profile. */
  close(): Promise<void>;
}

export interface LaunchOptions {
  /** Accept any server certificate (a test CA the browser does not know). */
  readonly ignoreHttpsErrors?: boolean;
}

/** launchChromium starts headless chromium with a fresh profile (user data directory) of its own. */
export async function launchChromium(options: LaunchOptions = {}): Promise<HeadlessChromium> {
  const profile = mkdtempSync(join(tmpdir(), "pkgfarm-chromium-"));
  const context = await chromium.launchPersistentContext(profile, {
    executablePath: CHROMIUM,
    headless: true,
    args: ARGS,
    viewport: { width: 1280, height: 1000 },
    ignoreHTTPSErrors: options.ignoreHttpsErrors ?? false,
    timeout: 30_000,
  }).catch((e: unknown) => {
    rmSync(profile, { recursive: true, force: true });
    throw e;
  });
  return {
    context,
    async close() {
      await context.close();
      rmSync(profile, { recursive: true, force: true });
    },
  };
}
