// Shared by the page scripts: launch Debian's chromium headless through
// playwright-core, keep a screenshot of every page visited, and print what
// the page showed as one JSON object on stdout for the Rust test to assert.
import { chromium } from "playwright-core";
import fs from "node:fs";
import path from "node:path";

export const [BASE, OUTDIR, ARG] = process.argv.slice(2);
export const args = ARG ? JSON.parse(ARG) : {};

function chromiumPath() {
  for (const p of [process.env.CHROMIUM, "/usr/bin/chromium", "/usr/bin/chromium-browser"]) {
    if (p && fs.existsSync(p)) return p;
  }
  throw new Error("chromium not found: run .ci/install-dashboard.sh");
}

export async function withPage(fn) {
  if (!BASE || !OUTDIR) throw new Error("usage: node <page>.mjs URL OUTDIR [JSON]");
  fs.mkdirSync(OUTDIR, { recursive: true });
  const browser = await chromium.launch({
    executablePath: chromiumPath(),
    headless: true,
    args: ["--no-sandbox", "--disable-gpu", "--disable-dev-shm-usage"],
  });
  const result = { dialogs: [], console_errors: [] };
  try {
    // A laptop screen.
    const context = await browser.newContext({ viewport: { width: 1366, height: 768 } });
    const page = await context.newPage();
    page.setDefaultTimeout(20000);
    // Any dialog means a script from the data ran: record and dismiss.
    page.on("dialog", (d) => { result.dialogs.push(d.message()); d.dismiss(); });
    page.on("console", (m) => {
      // A refused login answers 401 on purpose; chromium logs that.
      if (m.type() === "error" && !/status of 401/.test(m.text())) result.console_errors.push(m.text());
    });
    page.on("pageerror", (e) => result.console_errors.push(String(e)));
    // Screenshots are evidence for a human, not assertions: chromium on
    // a loaded 2-core machine now and then answers a capture with a
    // protocol error, so one is tried three times and then left out,
    // with a line on stderr.
    const shot = async (name) => {
      const file = path.join(OUTDIR, name + ".png");
      for (let attempt = 1; ; attempt++) {
        try {
          await page.screenshot({ path: file, fullPage: true });
          return file;
        } catch (e) {
          if (attempt >= 3) {
            process.stderr.write(`screenshot ${name} left out: ${e}\n`);
            return null;
          }
          await new Promise((r) => setTimeout(r, 500));
        }
      }
    };
    await fn(page, result, shot, context);
  } finally {
    await browser.close();
  }
  process.stdout.write(JSON.stringify(result) + "\n");
}

export const texts = (page, sel) => page.$$eval(sel, (els) => els.map((e) => e.textContent.trim()));
