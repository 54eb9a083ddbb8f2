// Charts: the runs-over-time chart on /runs (a bar per interval, hover
// text, a click narrows the list to the bar's interval) and a job's
// history (a point per run, the band, the failure rate per day).
import { withPage, BASE, args, texts } from "./lib.mjs";

await withPage(async (page, r, shot) => {
  await page.goto(BASE + "/runs");
  r.svgs = await page.$$eval("svg#runs-chart", (e) => e.length);
  r.bars = await page.$$eval("svg#runs-chart g.bar", (e) => e.length);
  r.bar_links = await page.$$eval("svg#runs-chart a.bar-link", (e) => e.length);
  r.title = await page.$eval("svg#runs-chart > title", (e) => e.textContent);
  r.legend = await texts(page, "svg#runs-chart g.legend text");
  r.script_tags = await page.$$eval("main script", (e) => e.length);
  const sel = `svg#runs-chart g.bar[data-start="${args.start}"]`;
  r.hover = await page.$eval(sel + " > title", (e) => e.textContent);
  // The chart is visible and has a size on a laptop screen.
  r.chart_box = await page.$eval("svg#runs-chart", (e) => {
    const b = e.getBoundingClientRect();
    return [Math.round(b.width), Math.round(b.height)];
  });
  r.shot_runs = await shot("runs-chart");
  await page.click(sel);
  await page.waitForURL(/until%3A/);
  r.url_after_click = page.url();
  r.query_after_click = await page.$eval("#runs-q", (e) => e.value);
  r.rows_after_click = await page.$$eval("#runs tbody tr", (e) => e.length);
  r.bars_after_click = await page.$$eval("svg#runs-chart g.bar", (e) => e.length);
  r.shot_click = await shot("runs-chart-clicked");

  await page.goto(BASE + "/jobs/nightly");
  r.job_points = await page.$$eval("svg#job-durations g.point", (e) => e.length);
  r.job_band = await page.$eval("svg#job-durations g.band > title", (e) => e.textContent);
  r.job_days = await page.$$eval("svg#job-failures g.bar", (e) => e.length);
  r.shot_job = await shot("job");

  await page.goto(BASE + "/runs/" + args.run);
  r.run_current = await page.$$eval("svg#job-durations g.current", (e) => e.length);
  r.run_job_link = await page.$eval("#job-link", (e) => e.getAttribute("href"));
  r.shot_run = await shot("run-history");

  // A node's charts: a series per line, a hover dot per point.
  await page.goto(BASE + "/nodes/chart-node");
  r.node_series = [];
  r.node_dots = [];
  for (const id of ["load-chart", "memory-chart", "disk-chart"]) {
    r.node_series.push(await page.$$eval(`svg#${id} g.series`, (e) => e.length));
    r.node_dots.push(await page.$$eval(`svg#${id} g.series circle`, (e) => e.length));
  }
  r.shot_node = await shot("node-charts");
  await page.goto(BASE + "/nodes");
  r.node_sparks = await page.$$eval(`#nodes tr[data-node="chart-node"] td.sp svg path`, (e) => e.length > 0 ? 1 : 0);
  await page.goto(BASE + "/status");
  r.status_charts = await page.$$eval("svg#ingest-chart", (e) => e.length);
  r.shot_status = await shot("status");
});
