// With tokens: pages send the browser to /login; a viewer token logs in.
import { withPage, BASE, args } from "./lib.mjs";

await withPage(async (page, r, shot) => {
  await page.goto(BASE + "/nodes");
  r.redirected_to = new URL(page.url()).pathname;
  await page.fill("#token", "plumb_not_a_real_token");
  await page.click("button[type=submit] >> text=Log in");
  r.bad_token_error = (await page.textContent(".error-box")).trim();
  await page.fill("#token", args.token);
  await page.click("button[type=submit] >> text=Log in");
  await page.waitForURL(/\/nodes$/);
  r.after_login = new URL(page.url()).pathname;
  r.h1 = (await page.textContent("h1")).trim();
  r.shot = await shot("login-nodes");
});
