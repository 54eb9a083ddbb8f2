// /nodes keeps itself current without a reload: a node's new heartbeat
// (its load now makes it busy, and its sparkline rises) and a node that
// reports for the first time appear in the open page, which is never
// reloaded.
// args: {node, busy_report, new_report}: reports posted to the collector.
import { withPage, BASE, args, texts } from "./lib.mjs";

const post = async (report) => {
  const r = await fetch(BASE + "/api/v1/ingest/node", {
    method: "POST",
    headers: { "content-type": "application/json" },
    body: JSON.stringify(report),
  });
  if (!r.ok) throw new Error("posting a node report: HTTP " + r.status + " " + (await r.text()));
};

// A row's sparkline: its hover text and each line's path.
const sparkOf = (page, node) =>
  page.$eval(`#nodes tr[data-node="${node}"] td.sp`, (td) => {
    const svg = td.querySelector("svg");
    return svg
      ? { title: svg.querySelector("title").textContent, paths: [...svg.querySelectorAll("path")].map((p) => p.getAttribute("d")) }
      : null;
  });

const stateOf = (page, node) =>
  page.$eval(`#nodes tr[data-node="${node}"] td:nth-child(2)`, (td) => td.textContent.trim());

await withPage(async (page, r, shot) => {
  let loads = 0;
  page.on("load", () => { loads++; });
  await page.goto(BASE + "/nodes");
  r.before = await stateOf(page, args.node);
  r.spark_before = await sparkOf(page, args.node);
  r.poll = await page.getAttribute("#nodes", "data-poll");
  r.shot_before = await shot("nodes-live-before");
  // A marker a reload would wipe.
  await page.evaluate(() => { window.__sameDocument = true; });

  await post(args.busy_report);
  await post(args.new_report);
  await page.waitForFunction(
    ([n, m]) => {
      const td = document.querySelector(`#nodes tr[data-node="${n}"] td:nth-child(2)`);
      return td && td.textContent.trim() === "busy" && document.querySelector(`#nodes tr[data-node="${m}"]`);
    },
    [args.node, args.new_report.node],
    { timeout: 30000 },
  );
  r.after = await stateOf(page, args.node);
  r.spark_after = await sparkOf(page, args.node);
  r.new_spark = await sparkOf(page, args.new_report.node);
  r.same_document = await page.evaluate(() => window.__sameDocument === true);
  r.loads = loads;
  r.refreshed = await page.getAttribute("#nodes", "data-refreshed");
  r.rows = await texts(page, "#nodes tbody tr td:first-child");
  r.load_cell = await page.$eval(`#nodes tr[data-node="${args.node}"] td:nth-child(4)`, (td) => td.textContent.trim());
  r.new_disks = await page.$$eval(`#nodes tr[data-node="${args.new_report.node}"] .disk .bar`, (b) => b.length);
  r.counts = await page.$eval("#node-counts", (p) => p.textContent.replace(/\s+/g, " ").trim());
  r.shot_after = await shot("nodes-live-after");
});
