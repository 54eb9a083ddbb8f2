// /nodes and /nodes/{name}: states, disks, fingerprint markers, history.
import { withPage, BASE, args, texts } from "./lib.mjs";

await withPage(async (page, r, shot) => {
  await page.goto(BASE + "/nodes");
  r.title = await page.title();
  r.rows = await page.$$eval("#nodes tbody tr", (trs) => trs.map((tr) => {
    const td = tr.querySelectorAll("td");
    return {
      node: td[0].textContent.trim(),
      state: td[1].textContent.trim(),
      disks: tr.querySelectorAll(".disk .bar").length,
      clock: td[6].textContent.trim(),
      marker: !!tr.querySelector(".marker"),
    };
  }));
  r.headers = await texts(page, "#nodes thead th");
  r.shot_nodes = await shot("nodes");
  await page.click(`a[href="/nodes/${args.node}"]`);
  r.detail_url = page.url();
  r.detail_h1 = (await page.textContent("h1")).trim();
  r.history = await texts(page, "#history tbody tr td:nth-child(3)");
  r.shot_node = await shot("node");
});
