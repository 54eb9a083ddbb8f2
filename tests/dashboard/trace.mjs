// /traces/{id}: reached from a span hit of the search and from a run's
// spans; the waterfall's rows in tree order, their bars, the log records
// under their span.
import { withPage, BASE, args, texts } from "./lib.mjs";

await withPage(async (page, r, shot) => {
  await page.goto(BASE + "/search?q=" + encodeURIComponent("kind:span " + args.span));
  r.search_kinds = await texts(page, "#hits tbody td.kind");
  await page.click("#hits tbody a.span-name >> nth=0");
  await page.waitForURL(/\/traces\//);
  r.from_search = page.url();
  r.target = await page.evaluate(() => {
    const t = document.querySelector(":target");
    return t ? t.querySelector("td.span-name").textContent.trim() : null;
  });
  await page.goto(BASE + "/runs/" + args.run);
  await page.click("#spans tbody a >> nth=0");
  await page.waitForURL(/\/traces\//);
  r.from_run = page.url();
  r.h1 = (await page.textContent("h1")).trim();
  r.rows = await page.$$eval("#waterfall tbody tr", (trs) => trs.map((tr) => tr.className + ":" + tr.querySelector("td").textContent.trim()));
  r.bars = await page.$$eval("#waterfall tr.span .waterfall > span", (bs) => bs.map((b) => [parseFloat(b.style.left), parseFloat(b.style.width)]));
  r.shot_trace = await shot("trace");
});
