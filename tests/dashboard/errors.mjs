// /errors and /errors/{fingerprint}: a Python exception grouped, its
// occurrence linking to the run.
import { withPage, BASE, texts } from "./lib.mjs";

await withPage(async (page, r, shot) => {
  await page.goto(BASE + "/errors");
  r.groups = await page.$$eval("#errors tbody tr", (trs) => trs.map((tr) => {
    const td = tr.querySelectorAll("td");
    return { error: td[0].textContent.trim(), status: td[1].textContent.trim(), count: td[2].textContent.trim() };
  }));
  r.shot_errors = await shot("errors");
  await page.click("#errors tbody a >> nth=0");
  r.h1 = (await page.textContent("h1")).trim();
  r.occurrence_links = await page.$$eval("#occurrences a", (as) => as.map((a) => a.getAttribute("href")));
  r.sample = (await page.textContent("pre.output")).trim();
  r.shot_group = await shot("error-group");
});
