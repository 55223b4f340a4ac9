import { chromium, type Browser } from 'playwright-core';

/** Debian's Chromium (scripts/test.sh installs it); CHROMIUM overrides the path. */
export const CHROMIUM = process.env.CHROMIUM ?? '/usr/bin/chromium';

/**
 * Launches the system's headless Chromium through playwright-core (which downloads no browser of its own).
 * `--no-sandbox`: the tests run as root, where Chromium's sandbox refuses to start.
 */
export function launchBrowser(): Promise<Browser> {
  return chromium.launch({ executablePath: CHROMIUM, headless: true, args: ['--no-sandbox', '--disable-gpu', '--font-render-hinting=none'] });
}
