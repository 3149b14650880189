// Drives the live demo in headless Chromium with a fake camera fed from a .y4m file; writes
// what the page pushed and showed to $GRW_OUT/browser.json and screenshots beside it.
// Run by tests/test_js_runtime.py (which serves the demo and checks the results).
import { writeFileSync } from "node:fs";
import { join } from "node:path";

import puppeteer from "puppeteer-core";

const { GRW_DEMO_URL, GRW_BAD_URL, GRW_Y4M, GRW_OUT } = process.env;
const frames = Number(process.env.GRW_FRAMES ?? 12);
const browser = await puppeteer.launch({
  executablePath: process.env.CHROMIUM ?? "/usr/bin/chromium",
  headless: true,
  args: ["--no-sandbox", "--use-fake-ui-for-media-stream", "--use-fake-device-for-media-stream",
    `--use-file-for-fake-video-capture=${GRW_Y4M}`, "--autoplay-policy=no-user-gesture-required"],
});
try {
  const page = await browser.newPage();
  await page.setViewport({ width: 900, height: 560 });
  const logs = [];
  page.on("console", (message) => logs.push(`${message.type()}: ${message.text()}`));
  page.on("pageerror", (error) => logs.push(`pageerror: ${error.message}`));
  await page.goto(`${GRW_DEMO_URL}?camera&record`);
  await page.waitForFunction((n) => window.grwDemo && (window.grwDemo.error || window.grwDemo.results.length >= n),
    { timeout: 90_000 }, frames);
  await page.screenshot({ path: join(GRW_OUT, "demo.png") });
  const live = await page.evaluate((n) => ({
    error: window.grwDemo.error, isolated: crossOriginIsolated, results: window.grwDemo.results.slice(0, n),
    top: [...document.querySelectorAll("#top li")].map((li) => li.textContent),
  }), frames);

  await page.click("#selftest");  // the artifact's selftest.bin, in this browser
  await page.waitForFunction(() => document.querySelector("#selftest-result").textContent !== "–" ||
    window.grwDemo.error, { timeout: 60_000 });
  live.selftest = await page.$eval("#selftest-result", (element) => element.textContent);
  await page.screenshot({ path: join(GRW_OUT, "demo-selftest.png") });

  await page.goto(GRW_BAD_URL);
  await page.waitForFunction(() => window.grwDemo && window.grwDemo.error, { timeout: 60_000 });
  await page.screenshot({ path: join(GRW_OUT, "demo-error.png") });
  const shown = await page.$eval("#error", (element) => ({ text: element.textContent, hidden: element.hidden }));
  writeFileSync(join(GRW_OUT, "browser.json"), JSON.stringify({ live, bad: shown, logs }));
} finally {
  await browser.close();
}
