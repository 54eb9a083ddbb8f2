// /timeline: one lane per host, each event in its own host's lane, rows in
// corrected (and causal) order, the form filtering by text.
import { withPage, BASE, args } from "./lib.mjs";

await withPage(async (page, r, shot) => {
  await page.goto(BASE + "/timeline?grep=" + encodeURIComponent(args.grep));
  r.lanes = await page.$$eval("#timeline thead th.lane", (ths) => ths.map((th) => th.textContent.trim()));
  r.rows = await page.$$eval("#timeline tbody tr", (trs) => trs.map((tr) => {
    const td = [...tr.querySelectorAll("td")];
    const lane = td.slice(1).findIndex((c) => c.textContent.trim() !== "");
    return { flag: td[0].textContent.trim().replace(/[0-9TZ:.\-]/g, ""), lane, text: td[lane + 1].textContent.trim() };
  }));
  r.shot = await shot("timeline");
  // The form's text filter narrows to one side of the exchange.
  await page.fill("form[action='/timeline'] input[name=grep]", args.narrow);
  await Promise.all([page.waitForNavigation(), page.click("form[action='/timeline'] button[type=submit]")]);
  r.narrowed = await page.$$eval("#timeline tbody tr", (trs) => trs.length);
  r.url = page.url();
});
