// The offline docs UI of a running service, in a real headless browser
// (Debian's chromium, driven by playwright-core). Run by scripts/docs-ui-test.
//
// Env: PLAYWRIGHT_CORE  path of the playwright-core package (scripts/tools env)
//      DOCS_BASE        the service, e.g. http://127.0.0.1:8081
//      DOCS_API_KEY     an API key the service accepts
//      DOCS_SCREENSHOT  where to save the page (PNG)
//
// Checks: /docs loads with every request outside the service refused (no
// network); it lists every operation of /openapi.json; it links
// /asyncapi.json, served without credentials; the Authorize dialog
// offers the declared schemes (API key, bearer JWT); "Try it out" on
// POST /orders is answered 401 before authorizing and 201 after entering
// the API key.
'use strict';

const fs = require('node:fs');
const os = require('node:os');
const path = require('node:path');
const { chromium } = require(process.env.PLAYWRIGHT_CORE);

const base = process.env.DOCS_BASE;
const apiKey = process.env.DOCS_API_KEY;
const screenshot = process.env.DOCS_SCREENSHOT;
const origin = new URL(base).origin;

const ORDER = {
  customer_id: 'docs-ui',
  destination: {
    name: 'Grace Hopper', street: '1 Navy Way', city: 'Arlington',
    postal_code: '22201', country: 'US',
  },
  items: [{
    sku: 'MUG', name: 'Mug', unit_price_cents: 1200, quantity: 2,
    weight_grams: 350, length_mm: 120, width_mm: 90, height_mm: 100,
  }],
};

function check(condition, message) {
  if (!condition) throw new Error(message);
  console.log(`ok: ${message}`);
}

async function executeStatus(page, operation) {
  await operation.locator('button.execute').click();
  const status = operation.locator('.live-responses-table .response .response-col_status').first();
  await status.waitFor({ timeout: 15000 });
  return (await status.innerText()).trim().split(/\s+/)[0];
}

async function main() {
  const userDataDir = fs.mkdtempSync(path.join(os.tmpdir(), 'chassis-docs-ui-'));
  const context = await chromium.launchPersistentContext(userDataDir, {
    executablePath: '/usr/bin/chromium',
    headless: true,
    args: [
      '--headless', '--no-sandbox', '--disable-gpu', '--disable-quic', '--no-first-run',
      '--disable-background-networking', '--disable-component-update', '--disable-sync',
    ],
    viewport: { width: 1280, height: 900 },
  });
  const outside = [];
  let page;
  try {
    // No network: every request that does not go to the service is refused
    // and recorded; the page must not need any.
    await context.route('**/*', (route) => {
      const url = route.request().url();
      if (url.startsWith(origin + '/') || url.startsWith('data:') || url.startsWith('blob:')) {
        return route.continue();
      }
      outside.push(url);
      return route.abort('internetdisconnected');
    });
    page = context.pages()[0] || (await context.newPage());
    const errors = [];
    page.on('pageerror', (e) => errors.push(String(e)));

    await page.goto(`${base}/docs/`, { waitUntil: 'load' });
    await page.locator('.opblock').first().waitFor({ timeout: 20000 });
    check(outside.length === 0, `the docs UI loads with no network (requests outside ${origin}: ${outside.join(', ') || 'none'})`);
    check(errors.length === 0, `no script errors on the page (${errors.join('; ') || 'none'})`);

    // Every operation of the document, as the UI lists it.
    const doc = await (await fetch(`${base}/openapi.json`)).json();
    const expected = [];
    for (const [p, item] of Object.entries(doc.paths)) {
      for (const method of ['get', 'put', 'post', 'delete', 'patch', 'head', 'options', 'trace']) {
        if (item[method]) expected.push(`${method.toUpperCase()} ${p}`);
      }
    }
    const listed = await page.$$eval('.opblock', (blocks) => blocks.map((b) => {
      const method = b.querySelector('.opblock-summary-method').textContent.trim();
      const p = b.querySelector('.opblock-summary-path').getAttribute('data-path');
      return `${method} ${p}`;
    }));
    expected.sort();
    listed.sort();
    check(JSON.stringify(listed) === JSON.stringify(expected),
      `the UI lists every operation of /openapi.json (${expected.length}: ${expected.join(', ')}; listed: ${listed.join(', ')})`);

    // The page links the service's AsyncAPI document, served without credentials.
    const links = await page.$$eval('.info a', (as) => as.map((a) => a.getAttribute('href')));
    check(links.includes('/asyncapi.json'), `the page links /asyncapi.json (links: ${links.join(', ') || 'none'})`);
    const asyncapi = await fetch(`${base}/asyncapi.json`);
    const asyncapiVersion = asyncapi.status === 200 ? (await asyncapi.json()).asyncapi : undefined;
    check(asyncapiVersion === '3.0.0',
      `/asyncapi.json answers an AsyncAPI 3.0.0 document without credentials (status ${asyncapi.status}, version ${asyncapiVersion})`);

    const schemes = Object.keys((doc.components || {}).securitySchemes || {});
    check(schemes.includes('api_key') && schemes.includes('bearer'),
      `the document declares the API key and bearer schemes (${schemes.join(', ')})`);

    // POST /orders, tried out without credentials: refused.
    const place = page.locator('.opblock-post', { has: page.locator('[data-path="/orders"]') });
    await place.locator('.opblock-summary').first().click();
    await place.locator('button.try-out__btn').click();
    await place.locator('textarea.body-param__text').fill(JSON.stringify(ORDER, null, 2));
    const anonymous = await executeStatus(page, place);
    check(anonymous === '401', `"try it out" without credentials is answered 401 (got ${anonymous})`);

    // The Authorize dialog offers both schemes; the API key is entered.
    await page.locator('.auth-wrapper button.authorize').click();
    const dialog = page.locator('.dialog-ux .modal-ux');
    await dialog.waitFor();
    const containers = dialog.locator('.auth-container');
    const names = await containers.locator('h4').allInnerTexts();
    check(names.some((n) => n.includes('api_key')) && names.some((n) => n.includes('bearer')),
      `the Authorize dialog offers the API key and the bearer token (${names.join(' | ')})`);
    const keyBox = containers.filter({ hasText: 'api_key' });
    await keyBox.locator('input').fill(apiKey);
    await keyBox.locator('button.authorize').click();
    await keyBox.locator('h6', { hasText: 'Authorized' }).waitFor();
    await keyBox.locator('button[aria-label="Remove authorization"]').waitFor();
    console.log('ok: the API key is authorized in the dialog');
    await dialog.locator('button.close-modal').click();

    const authorized = await executeStatus(page, place);
    check(authorized === '201', `"try it out" with the API key is answered 201 (got ${authorized})`);

    await page.screenshot({ path: screenshot, fullPage: true });
    console.log(`screenshot: ${screenshot}`);
  } catch (e) {
    // What the page showed when the check failed, beside the screenshot.
    if (page) {
      const failed = screenshot.replace(/\.png$/, '-failed');
      await page.screenshot({ path: `${failed}.png`, fullPage: true }).catch(() => {});
      fs.writeFileSync(`${failed}.html`, await page.content().catch(() => ''));
      console.error(`the failed page: ${failed}.png, ${failed}.html`);
    }
    throw e;
  } finally {
    await context.close();
    fs.rmSync(userDataDir, { recursive: true, force: true });
  }
}

main().catch((e) => {
  console.error(`FAILED: ${e.message}`);
  process.exit(1);
});
