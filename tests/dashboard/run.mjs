// /runs/{id}: the record, output, spans and logs; then its diff page.
import { withPage, BASE, args, texts } from "./lib.mjs";

await withPage(async (page, r, shot) => {
  await page.goto(BASE + "/runs/" + args.run);
  r.h1 = (await page.textContent("h1")).trim();
  r.output = (await page.textContent("#output")).trim();
  r.kv = await page.$$eval("dl.kv dt", (dts) => Object.fromEntries(dts.map((dt) => [dt.textContent.trim(), dt.nextElementSibling.textContent.trim()])));
  r.spans = await texts(page, "#spans tbody td:first-child");
  r.shot_run = await shot("run");
  await page.click("text=Diff against the previous run of this name");
  r.diff_url = page.url();
  r.diff_h1 = (await page.textContent("h1")).trim();
  r.diff_keys = await texts(page, "#diff tbody td:nth-child(2)");
  r.shot_diff = await shot("diff");
  if (args.live) {
    // A running run: its output grows on the page without a reload.
    await page.goto(BASE + "/runs/" + args.live);
    r.live_before = (await page.textContent("#output")).length;
    await page.waitForFunction((n) => document.getElementById("output").textContent.length > n, r.live_before, { timeout: 15000 });
    r.live_after = (await page.textContent("#output")).length;
    r.live_duration = (await page.textContent("[data-started]")).trim();
    r.shot_live = await shot("run-live");
  }
});
