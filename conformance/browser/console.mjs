// The admin console and the people's account page in a real Chromium (playwright-core),
// with an accessibility check of every page by axe-core (npm).
//
// Run by tests/api/browser_console.rs once Lanyard is up with its bootstrap admin:
//
//   BASE=http://localhost:18443 TENANT=default ADMIN_EMAIL=admin@lanyard.local \
//   ADMIN_PASSWORD=... METADATA_GOOD=tests/fixtures/saml/idp-metadata.xml \
//   [SCREENSHOT_DIR=/tmp/shots] [CHROMIUM=/usr/bin/chromium] node conformance/browser/console.mjs
//
// One JSON line per step on stdout ({"step":…,"ok":true,…}); exit 1 at the first failed
// expectation. The flows run with the pages' Content-Security-Policy enforced; axe-core is
// injected in a second context (same cookies) that bypasses CSP, since the pages allow no
// script of their own. An axe violation of impact "serious" or "critical" fails its step.

import { mkdirSync, readFileSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { createRequire } from 'node:module';
import { chromium } from 'playwright-core';

const require = createRequire(import.meta.url);
const AXE = readFileSync(require.resolve('axe-core/axe.min.js'), 'utf8');
const WAIT_MS = 15_000;
const WATCHDOG_MS = 100_000;

function need(name) {
  const v = process.env[name];
  if (!v) {
    process.stdout.write(`${JSON.stringify({ step: 'setup', ok: false, error: `${name} is required` })}\n`);
    process.exit(1);
  }
  return v;
}

const BASE = need('BASE').replace(/\/+$/, '');
const TENANT = need('TENANT');
const ADMIN_EMAIL = need('ADMIN_EMAIL');
const ADMIN_PASSWORD = need('ADMIN_PASSWORD');
const METADATA_GOOD = need('METADATA_GOOD');
const SCREENSHOT_DIR = process.env.SCREENSHOT_DIR || '';
const CHROMIUM = process.env.CHROMIUM || '/usr/bin/chromium';
const T = `${BASE}/t/${TENANT}`;
const PERSON = `carol-${Date.now()}@lanyard.local`;
const PERSON_PW = 'carol first password 1';
const PERSON_PW2 = 'carol second password 2';

let browser;
const watchdog = setTimeout(() => fail('watchdog', new Error(`no end after ${WATCHDOG_MS} ms`)), WATCHDOG_MS);

function report(o) {
  process.stdout.write(`${JSON.stringify(o)}\n`);
}

async function fail(step, e) {
  report({ step, ok: false, error: String(e && e.stack ? e.stack : e) });
  try {
    if (browser) await browser.close();
  } catch {}
  process.exit(1);
}

async function step(name, fn) {
  try {
    const extra = (await fn()) || {};
    report({ step: name, ok: true, ...extra });
  } catch (e) {
    await fail(name, e);
  }
}

function expect(cond, msg) {
  if (!cond) throw new Error(msg);
}

let axeContext;
const checked = [];

/** Screenshots at desktop and phone sizes, and axe on the page as it is now. */
async function look(page, name) {
  const url = page.url();
  if (SCREENSHOT_DIR) {
    mkdirSync(SCREENSHOT_DIR, { recursive: true });
    for (const [size, viewport] of [['desktop', { width: 1280, height: 800 }], ['phone', { width: 390, height: 844 }]]) {
      await page.setViewportSize(viewport);
      await page.screenshot({ path: join(SCREENSHOT_DIR, `${name}-${size}.png`), fullPage: true });
    }
    await page.setViewportSize({ width: 1280, height: 800 });
  }
  // axe sees the same HTML: the page's content is rendered into the CSP-free context.
  const html = await page.content();
  const a = await axeContext.newPage();
  await a.route(url, (route) => route.fulfill({ status: 200, contentType: 'text/html; charset=utf-8', body: html }));
  await a.goto(url, { timeout: WAIT_MS });
  await a.addScriptTag({ content: AXE });
  const result = await a.evaluate(async () =>
    // eslint-disable-next-line no-undef
    axe.run(document, { resultTypes: ['violations'] }),
  );
  await a.close();
  const bad = result.violations.filter((v) => v.impact === 'serious' || v.impact === 'critical');
  checked.push({ page: name, violations: result.violations.map((v) => `${v.id}:${v.impact}`) });
  expect(bad.length === 0, `${name}: ${JSON.stringify(bad.map((v) => ({ id: v.id, impact: v.impact, help: v.help, nodes: v.nodes.map((n) => n.target) })))}`);
}

async function signIn(page, email, password) {
  await page.goto(`${T}/login`, { timeout: WAIT_MS });
  await page.fill('#email', email);
  await page.fill('#password', password);
  await Promise.all([page.waitForNavigation({ timeout: WAIT_MS }), page.click('button[type=submit]')]);
}

try {
  browser = await chromium.launch({ executablePath: CHROMIUM, args: ['--no-sandbox'] });
  const admin = await browser.newContext({ acceptDownloads: true });
  axeContext = await browser.newContext({ bypassCSP: true });
  const page = await admin.newPage();

  await step('sign_in_page', async () => {
    await page.goto(`${T}/login`, { timeout: WAIT_MS });
    await look(page, 'signin');
  });

  await step('admin_signs_in', async () => {
    await signIn(page, ADMIN_EMAIL, ADMIN_PASSWORD);
    await page.goto(`${T}/admin`, { timeout: WAIT_MS });
    expect(page.url().endsWith('/admin/overview'), `at ${page.url()}`);
    expect(await page.isVisible('svg.chart'), 'the sign-in chart');
    await look(page, 'admin-overview');
  });

  await step('keyboard_only', async () => {
    // The skip link is the first stop, and the section links follow in order.
    await page.goto(`${T}/admin/overview`, { timeout: WAIT_MS });
    await page.keyboard.press('Tab');
    const first = await page.evaluate(() => document.activeElement && document.activeElement.textContent);
    expect(first && first.includes('Skip to content'), `first tab stop: ${first}`);
    // Reach the users section by keyboard alone.
    let found = false;
    for (let i = 0; i < 20 && !found; i++) {
      await page.keyboard.press('Tab');
      found = await page.evaluate(() => document.activeElement && document.activeElement.textContent === 'Users');
    }
    expect(found, 'the Users link is reachable with Tab');
    await Promise.all([page.waitForURL(/\/admin\/users/, { timeout: WAIT_MS }), page.keyboard.press('Enter')]);
    expect(page.url().includes('/admin/users'), `Enter followed the link: ${page.url()}`);
  });

  await step('create_user', async () => {
    await page.goto(`${T}/admin/users`, { timeout: WAIT_MS });
    await look(page, 'admin-users');
    await page.fill('#new-email', PERSON);
    await page.fill('#new-user-password', PERSON_PW);
    await page.uncheck('#new-must-change');
    await Promise.all([page.waitForNavigation({ timeout: WAIT_MS }), page.click('#create-user button[type=submit]')]);
    const flash = await page.textContent('#flash');
    expect(flash.includes(`Created ${PERSON}`), flash);
    await look(page, 'admin-user-detail');
  });

  await step('create_user_refused_inline', async () => {
    await page.goto(`${T}/admin/users`, { timeout: WAIT_MS });
    await page.fill('#new-email', `dave-${Date.now()}@lanyard.local`);
    await page.fill('#new-user-password', 'short');
    await Promise.all([page.waitForNavigation({ timeout: WAIT_MS }), page.click('#create-user button[type=submit]')]);
    expect(await page.getAttribute('#new-user-password', 'aria-invalid') === 'true', 'the password field is marked');
    const describedBy = await page.getAttribute('#new-user-password', 'aria-describedby');
    expect(describedBy.includes('new-user-password-error'), `described by ${describedBy}`);
    await look(page, 'admin-users-error');
  });

  await step('create_client', async () => {
    await page.goto(`${T}/admin/clients`, { timeout: WAIT_MS });
    await look(page, 'admin-clients');
    await page.fill('#client_id', 'printer-1');
    await page.selectOption('#kind', 'service');
    await Promise.all([page.waitForNavigation({ timeout: WAIT_MS }), page.click('#create-client button[type=submit]')]);
    const secret = (await page.textContent('#client-secret')).trim();
    expect(secret.length >= 43, `a secret is shown once: ${secret}`);
    await look(page, 'admin-client-secret');
    await page.goto(`${T}/admin/clients`, { timeout: WAIT_MS });
    expect(!(await page.content()).includes(secret), 'the secret is not shown again');
  });

  await step('upload_good_metadata', async () => {
    await page.goto(`${T}/admin/idps`, { timeout: WAIT_MS });
    await look(page, 'admin-idps');
    await page.fill('#idp-name', 'corp');
    await page.setInputFiles('#metadata', METADATA_GOOD);
    await Promise.all([page.waitForNavigation({ timeout: WAIT_MS }), page.click('#upload-form button[type=submit]')]);
    const flash = await page.textContent('#flash');
    expect(flash.includes('Imported the metadata of `corp`'), flash);
    expect(await page.isVisible('.saml-idp'), 'the IdP is listed');
    await look(page, 'admin-idps-uploaded');
  });

  await step('upload_broken_metadata', async () => {
    const broken = join(tmpdir(), `broken-${Date.now()}.xml`);
    writeFileSync(broken, '<?xml version="1.0"?><!DOCTYPE x [<!ENTITY e "boom">]><EntityDescriptor>&e;</EntityDescriptor>');
    await page.goto(`${T}/admin/idps`, { timeout: WAIT_MS });
    await page.fill('#idp-name', 'corp');
    await page.setInputFiles('#metadata', broken);
    const [resp] = await Promise.all([
      page.waitForResponse((r) => r.url().endsWith('/admin/idps/upload')),
      page.click('#upload-form button[type=submit]'),
    ]);
    await page.waitForLoadState('load');
    expect(resp.status() === 400, `status ${resp.status()}`);
    const err = await page.textContent('#metadata-error');
    expect(err && err.length > 10, `the error is shown at the file field: ${err}`);
    expect(await page.getAttribute('#metadata', 'aria-invalid') === 'true', 'the file field is marked');
    expect(await page.isVisible('.saml-idp'), 'the working IdP is still there');
    await look(page, 'admin-idps-refused');
    return { error: err.trim() };
  });

  await step('audit_entry_and_export', async () => {
    await page.goto(`${T}/admin/audit?event=admin.user.create`, { timeout: WAIT_MS });
    const table = await page.textContent('#audit-events');
    expect(table.includes(PERSON) && table.includes(ADMIN_EMAIL), 'the creation is in the audit log');
    await look(page, 'admin-audit');
    const [jsonl] = await Promise.all([page.waitForEvent('download'), page.click('#export-jsonl')]);
    const lines = readFileSync(await jsonl.path(), 'utf8').trim().split('\n').map((l) => JSON.parse(l));
    expect(lines.some((e) => e.event === 'admin.user.create' && e.subject === PERSON), 'JSON lines export');
    expect(lines.every((e) => e.event === 'admin.user.create'), 'the export keeps the filter');
    const [csv] = await Promise.all([page.waitForEvent('download'), page.click('#export-csv')]);
    const text = readFileSync(await csv.path(), 'utf8');
    expect(text.startsWith('id,at,actor,subject,event') && text.includes(`"${PERSON}"`), 'CSV export');
    await page.goto(`${T}/admin/audit?event=admin.saml_idp.import&outcome=failure`, { timeout: WAIT_MS });
    expect((await page.textContent('#audit-events')).includes('corp'), 'the refused upload is audited');
    return { exported: lines.length };
  });

  await step('other_sections', async () => {
    for (const s of ['policy', 'ldap', 'keys', 'tenants']) {
      await page.goto(`${T}/admin/${s}`, { timeout: WAIT_MS });
      expect((await page.getAttribute(`nav.sections a[href$="/admin/${s}"]`, 'aria-current')) === 'page', s);
      await look(page, `admin-${s}`);
    }
  });

  // The person: two browsers, one signs the other out, then changes the password.
  const laptop = await browser.newContext();
  const phone = await browser.newContext();
  const lp = await laptop.newPage();
  const pp = await phone.newPage();

  await step('person_signs_in_twice', async () => {
    await signIn(lp, PERSON, PERSON_PW);
    await signIn(pp, PERSON, PERSON_PW);
    await lp.goto(`${T}/account`, { timeout: WAIT_MS });
    expect((await lp.locator('#sessions li').count()) === 2, 'two sessions listed');
    await look(lp, 'account');
  });

  await step('sign_out_other_session', async () => {
    await Promise.all([lp.waitForNavigation({ timeout: WAIT_MS }), lp.click('#end-others button')]);
    const flash = await lp.textContent('#flash');
    expect(flash.includes('Signed out 1 other session'), flash);
    await pp.goto(`${T}/account`, { timeout: WAIT_MS });
    expect(pp.url().includes('/login'), `the other browser is signed out: ${pp.url()}`);
    await look(lp, 'account-after-sign-out');
  });

  await step('change_password', async () => {
    await lp.goto(`${T}/password/change`, { timeout: WAIT_MS });
    await look(lp, 'change-password');
    await lp.fill('#current_password', PERSON_PW);
    await lp.fill('#new_password', PERSON_PW2);
    await lp.fill('#confirm_password', PERSON_PW2);
    await Promise.all([lp.waitForNavigation({ timeout: WAIT_MS }), lp.click('button[type=submit]')]);
    await signIn(pp, PERSON, PERSON_PW2);
    await pp.goto(`${T}/account`, { timeout: WAIT_MS });
    expect(pp.url().endsWith('/account'), `signed in with the new password: ${pp.url()}`);
  });

  await step('keys_page', async () => {
    await lp.goto(`${T}/account/keys`, { timeout: WAIT_MS });
    await look(lp, 'account-keys');
  });

  report({ step: 'axe', ok: true, pages: checked });
  clearTimeout(watchdog);
  await browser.close();
  process.exit(0);
} catch (e) {
  await fail('run', e);
}
