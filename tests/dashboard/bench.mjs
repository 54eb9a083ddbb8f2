// The browser stage of `cargo xtask bench dashboard`: visits each page the
// bench names over its seeded collector, keeps a full-page screenshot of
// each, and counts what each chart drew, for xtask to compare with the
// page's JSON twin. Then clicks a bar of the runs chart and reports the
// list it narrowed to.
// args: {pages: [{name, path, probes: [{key, sel, how}]}], click: {path, start}}
//   how "count": elements matching sel; "points": coordinate pairs in the
//   `points` attributes of the elements matching sel (a polyline's points).
import { withPage, BASE, args } from "./lib.mjs";

const probe = (page, p) =>
  p.how === "points"
    ? page.$$eval(p.sel, (els) =>
        els.reduce((n, e) => n + (e.getAttribute("points") || "").trim().split(/\s+/).filter((s) => s).length, 0))
    : page.$$eval(p.sel, (els) => els.length);

await withPage(async (page, r, shot) => {
  r.pages = [];
  for (const p of args.pages) {
    const t = Date.now();
    await page.goto(BASE + p.path, { waitUntil: "load" });
    const load_ms = Date.now() - t;
    const counts = {};
    for (const q of p.probes) counts[q.key] = await probe(page, q);
    const file = await shot(p.name);
    r.pages.push({ name: p.name, path: p.path, load_ms, counts, shot: file });
  }
  if (args.click) {
    await page.goto(BASE + args.click.path, { waitUntil: "load" });
    r.rows_before = await page.$$eval("#runs tbody tr", (e) => e.length);
    const sel = `svg#runs-chart g.bar[data-start="${args.click.start}"]`;
    r.clicked_bars = await page.$$eval(sel, (e) => e.length);
    await page.click(sel);
    await page.waitForURL(/until%3A/);
    r.url_after_click = page.url();
    r.query_after_click = await page.$eval("#runs-q", (e) => e.value);
    r.rows_after_click = await page.$$eval("#runs tbody tr", (e) => e.length);
    r.ids_after_click = await page.$$eval("#runs tbody tr td:first-child a", (e) =>
      e.map((a) => a.getAttribute("href").replace("/runs/", "")));
    r.shot_click = await shot("runs-clicked");
  }
});
