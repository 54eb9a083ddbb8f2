// /runs: the list, qualifier filters (good and bad), escaping, keyboard.
import { withPage, BASE, texts } from "./lib.mjs";

await withPage(async (page, r, shot) => {
  await page.goto(BASE + "/runs");
  r.names = await texts(page, "#runs tbody td:nth-child(2)");
  r.states = await texts(page, "#runs tbody td:nth-child(4)");
  r.live = await page.$$eval("#runs [data-started]", (e) => e.length);
  r.script_tags_in_table = await page.$$eval("#runs script", (e) => e.length);
  r.shot_all = await shot("runs");

  // Keyboard: `/` focuses the search box; Tab from the top reaches the skip link.
  await page.keyboard.press("/");
  r.focus_after_slash = await page.evaluate(() => document.activeElement && document.activeElement.id);
  await page.goto(BASE + "/runs");
  await page.keyboard.press("Tab");
  r.first_tab = await page.evaluate(() => document.activeElement && document.activeElement.textContent.trim());

  // A filter typed into the form.
  await page.fill("#runs-q", "state:failed");
  await page.press("#runs-q", "Enter");
  await page.waitForURL(/q=state%3Afailed/);
  r.failed_names = await texts(page, "#runs tbody td:nth-child(2)");
  r.failed_states = await texts(page, "#runs tbody td:nth-child(4)");
  r.shot_failed = await shot("runs-failed");

  await page.goto(BASE + "/runs?q=" + encodeURIComponent("since:banana"));
  r.bad_query_error = (await page.textContent("#query-error")).trim();
  r.shot_bad = await shot("runs-bad-query");

  await page.goto(BASE + "/runs?q=" + encodeURIComponent("tag:team=ml"));
  r.tag_names = await texts(page, "#runs tbody td:nth-child(2)");
});
