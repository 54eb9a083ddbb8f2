// /search: hits across output, log records and spans, each linking to its
// run at that moment (the anchored line is the :target).
import { withPage, BASE, args, texts } from "./lib.mjs";

await withPage(async (page, r, shot) => {
  await page.goto(BASE + "/runs");
  await page.keyboard.press("/");
  await page.keyboard.type(args.word);
  await page.keyboard.press("Enter");
  await page.waitForURL(/\/search\?q=/);
  r.lines = await texts(page, "#hits tbody td.line");
  r.kinds = await texts(page, "#hits tbody td.kind");
  r.links = await page.$$eval("#hits tbody td.run a", (as) => as.map((a) => a.getAttribute("href")));
  r.shot_search = await shot("search");
  await page.click("#hits tbody td.run a >> nth=0");
  await page.waitForLoadState();
  r.landed = page.url();
  r.target_text = await page.evaluate(() => {
    const t = document.querySelector(":target");
    return t ? t.textContent : null;
  });
  r.shot_target = await shot("search-target");
});
