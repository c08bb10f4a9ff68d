// End-to-end browser test of Lanyard's sign-in pages and WebAuthn, in a real Chromium
// driven through playwright-core, with the DevTools Protocol's virtual authenticator
// standing in for a passkey.
//
// Run by a Rust integration test once Lanyard is up with a tenant, a password user, a
// public native client and a service client allowed `lanyard:admin`:
//
//   BASE=http://localhost:18443 TENANT=acme EMAIL=alice@acme.test PASSWORD=... \
//   CLIENT_ID=cli REDIRECT_URI=http://127.0.0.1/cb \
//   ADMIN_CLIENT_ID=robot ADMIN_CLIENT_SECRET=... [SCREENSHOT_DIR=/tmp/shots] \
//   [CHROMIUM=/usr/bin/chromium] node conformance/browser/webauthn.mjs
//
// One JSON line per step on stdout ({"step":…,"ok":true,…}), diagnostics on stderr.
// Exit 0 when every step passes; exit 1 at the first failed expectation (the browser is
// closed first). No timing assertions: only Playwright waits with explicit timeouts.
//
// REDIRECT_URI must be an http loopback URI: the script listens on a free port of that
// address and uses it as the redirect URI, the way a native app does (RFC 8252 §7.3,
// any port matches), since Playwright cannot intercept the authorize endpoint's redirect.
// BYPASS_CSP=1 is for diagnosis by hand only: it makes Chromium ignore the pages'
// Content-Security-Policy.

import { createHash, randomBytes } from 'node:crypto';
import { mkdirSync } from 'node:fs';
import { createServer } from 'node:http';
import { join } from 'node:path';
import { chromium } from 'playwright-core';

const WAIT_MS = 15_000; // every wait; the whole run stays far below the watchdog
const WATCHDOG_MS = 55_000;

function need(name) {
  const v = process.env[name];
  if (!v) {
    process.stdout.write(`${JSON.stringify({ step: 'setup', ok: false, error: `environment variable ${name} is required` })}\n`);
    process.exit(1);
  }
  return v;
}

const BASE = need('BASE').replace(/\/+$/, '');
const TENANT = need('TENANT');
const EMAIL = need('EMAIL');
const PASSWORD = need('PASSWORD');
const CLIENT_ID = need('CLIENT_ID');
const REDIRECT_URI = need('REDIRECT_URI');
const ADMIN_CLIENT_ID = need('ADMIN_CLIENT_ID');
const ADMIN_CLIENT_SECRET = need('ADMIN_CLIENT_SECRET');
const SCREENSHOT_DIR = process.env.SCREENSHOT_DIR || '';
const CHROMIUM = process.env.CHROMIUM || '/usr/bin/chromium';
// Diagnosis only (never set by the integration test): let Playwright ignore the pages'
// Content-Security-Policy, to see how far the rest goes while a CSP bug is open.
const BYPASS_CSP = process.env.BYPASS_CSP === '1';

const T = `${BASE}/t/${TENANT}`;
const URLS = {
  login: `${T}/login`,
  account: `${T}/account`,
  keys: `${T}/account/keys`,
  verify: `${T}/webauthn/verify`,
  verifyBegin: `${T}/webauthn/verify/begin`,
  verifyFinish: `${T}/webauthn/verify/finish`,
  passkeyFinish: `${T}/webauthn/passkey/finish`,
  registerFinish: `${T}/webauthn/register/finish`,
  authorize: `${T}/authorize`,
  token: `${T}/token`,
  adminApi: `${T}/admin/api`,
};
// Another origin with the same RP ID (`localhost`): only the port differs.
const OTHER_ORIGIN = 'http://localhost:1';
// Another origin and another RP ID, still a secure context (`*.localhost` is loopback).
const OTHER_RP_HOST = 'lanyard.localhost';
const OTHER_RP_ORIGIN = `http://${OTHER_RP_HOST}:1`;

// ---------------------------------------------------------------------------------------
// Reporting

class Failed extends Error {
  constructor(message, details = {}) {
    super(message);
    this.details = details;
  }
}

function log(...args) {
  process.stderr.write(`[webauthn.mjs] ${args.map((a) => (typeof a === 'string' ? a : JSON.stringify(a))).join(' ')}\n`);
}

function expect(cond, message, details = {}) {
  if (!cond) throw new Failed(message, details);
}

let currentStep = 'setup';

async function step(name, fn) {
  currentStep = name;
  log(`step ${name}`);
  const extra = (await fn()) || {};
  process.stdout.write(`${JSON.stringify({ step: name, ok: true, ...extra })}\n`);

}

// ---------------------------------------------------------------------------------------
// Small helpers

const b64url = (buf) => Buffer.from(buf).toString('base64url');

// A wait started before the action that triggers it: marked handled at once, so that a
// failure in between does not surface as an unhandled rejection; awaiting it later still
// throws its error.
function later(promise) {
  promise.catch(() => {});
  return promise;
}

function decodeJwtPayload(jwt) {
  const parts = String(jwt).split('.');
  expect(parts.length === 3, 'id_token is not a compact JWS', { id_token: jwt });
  return JSON.parse(Buffer.from(parts[1], 'base64url').toString('utf8'));
}

function samePath(url, target) {
  const u = new URL(url);
  const t = new URL(target);
  return u.origin === t.origin && u.pathname === t.pathname;
}

// The JSON body of a response the page itself received. After a success the page's script
// navigates at once and Chromium may discard the body before it can be read: then the
// body is reported as unavailable and the navigation is what the caller checks.
async function pageJson(res) {
  try {
    return await readJson(res);
  } catch (e) {
    return { _unavailable: String(e.message || e).split('\n')[0] };
  }
}

async function readJson(res) {
  const text = await res.text();
  try {
    return JSON.parse(text);
  } catch {
    return { _raw: text.slice(0, 500) };
  }
}

// Admin API, from Node (not the browser).
let adminToken = null;

async function getAdminToken() {
  const basic = Buffer.from(`${encodeURIComponent(ADMIN_CLIENT_ID)}:${encodeURIComponent(ADMIN_CLIENT_SECRET)}`).toString('base64');
  const res = await fetch(URLS.token, {
    method: 'POST',
    headers: { authorization: `Basic ${basic}`, 'content-type': 'application/x-www-form-urlencoded' },
    body: new URLSearchParams({ grant_type: 'client_credentials', scope: 'lanyard:admin' }),
    signal: AbortSignal.timeout(WAIT_MS),
  });
  const body = await readJson(res);
  expect(res.status === 200 && body.access_token, 'admin token request failed', { status: res.status, body });
  adminToken = body.access_token;
}

async function admin(method, path, body) {
  if (!adminToken) await getAdminToken();
  const res = await fetch(`${URLS.adminApi}${path}`, {
    method,
    headers: {
      authorization: `Bearer ${adminToken}`,
      ...(body !== undefined ? { 'content-type': 'application/json' } : {}),
    },
    body: body !== undefined ? JSON.stringify(body) : undefined,
    signal: AbortSignal.timeout(WAIT_MS),
  });
  const json = await readJson(res);
  expect(res.status >= 200 && res.status < 300, `admin API ${method} ${path} failed`, { status: res.status, body: json });
  return json;
}

const setTenant = (change) => admin('PATCH', '/tenant', change);
const listKeys = () => admin('GET', `/users/${encodeURIComponent(EMAIL)}/webauthn`);

// ---------------------------------------------------------------------------------------
// In-page WebAuthn, for the steps that drive the ceremony by hand. The options come from
// Lanyard's begin endpoint (binary fields base64url); the answer is serialized the way
// /static/webauthn.js does it.

async function getAssertionInPage(page, options, rpIdOverride) {
  return page.evaluate(
    async ({ options, rpIdOverride }) => {
      const fromB64url = (s) => {
        s = s.replace(/-/g, '+').replace(/_/g, '/');
        while (s.length % 4) s += '=';
        const bin = atob(s);
        const out = new Uint8Array(bin.length);
        for (let i = 0; i < bin.length; i++) out[i] = bin.charCodeAt(i);
        return out.buffer;
      };
      const toB64url = (buf) => {
        const bytes = new Uint8Array(buf);
        let bin = '';
        for (let i = 0; i < bytes.length; i++) bin += String.fromCharCode(bytes[i]);
        return btoa(bin).replace(/\+/g, '-').replace(/\//g, '_').replace(/=+$/, '');
      };
      const pk = structuredClone(options.publicKey);
      pk.challenge = fromB64url(pk.challenge);
      (pk.allowCredentials || []).forEach((c) => { c.id = fromB64url(c.id); });
      if (rpIdOverride) pk.rpId = rpIdOverride;
      try {
        const cred = await navigator.credentials.get({ publicKey: pk });
        const r = cred.response;
        return {
          ok: true,
          origin: location.origin,
          credential: {
            id: cred.id,
            rawId: toB64url(cred.rawId),
            type: cred.type,
            extensions: cred.getClientExtensionResults ? cred.getClientExtensionResults() : {},
            response: {
              clientDataJSON: toB64url(r.clientDataJSON),
              authenticatorData: toB64url(r.authenticatorData),
              signature: toB64url(r.signature),
              userHandle: r.userHandle ? toB64url(r.userHandle) : null,
            },
          },
        };
      } catch (e) {
        return {
          ok: false,
          origin: location.origin,
          isSecureContext: window.isSecureContext,
          name: e && e.name,
          message: e && e.message ? e.message : String(e),
        };
      }
    },
    { options, rpIdOverride: rpIdOverride || null },
  );
}

// The client's end of the redirect, as a native app does it (RFC 8252 §7.3): REDIRECT_URI
// is on the loopback interface, where any port matches, so a listener on a free port
// answers the browser. (Playwright cannot route a redirected request, and nothing
// listens at REDIRECT_URI itself.)
let CALLBACK = null;

async function startCallbackServer() {
  const registered = new URL(REDIRECT_URI);
  const host = registered.hostname.replace(/^\[|\]$/g, '');
  expect(
    registered.protocol === 'http:' && ['127.0.0.1', '::1', 'localhost'].includes(host),
    'REDIRECT_URI must be an http loopback URI (RFC 8252 §7.3) such as http://127.0.0.1/cb',
    { REDIRECT_URI },
  );
  const server = createServer((req, res) => {
    res.writeHead(200, { 'content-type': 'text/html; charset=utf-8', 'cache-control': 'no-store' });
    res.end('<!doctype html><title>Signed in</title><p>The application received the answer.</p>');
  });
  await new Promise((resolve, reject) => {
    server.once('error', reject);
    server.listen(0, host === 'localhost' ? '127.0.0.1' : host, resolve);
  });
  const u = new URL(REDIRECT_URI);
  u.port = String(server.address().port);
  CALLBACK = u.href;
  return server;
}

// ---------------------------------------------------------------------------------------

async function main() {
  const callbackServer = await startCallbackServer();
  const browser = await chromium.launch({
    executablePath: CHROMIUM,
    headless: true,
    args: ['--no-sandbox', '--disable-gpu', '--disable-quic', '--no-first-run', '--disable-background-networking', '--disable-component-update', '--disable-sync'],
  });
  try {
    await run(browser);
  } finally {
    await browser.close().catch((e) => log('closing the browser:', String(e)));
    callbackServer.close();
  }
}

async function run(browser) {
  log(`Chromium ${browser.version()}, BASE ${BASE}, tenant ${TENANT}, redirect URI ${CALLBACK}`);
  if (BYPASS_CSP) log('BYPASS_CSP=1: the pages\' Content-Security-Policy is ignored (diagnosis only)');
  const context = await browser.newContext({ viewport: { width: 1280, height: 800 }, bypassCSP: BYPASS_CSP });
  context.setDefaultTimeout(WAIT_MS);
  context.setDefaultNavigationTimeout(WAIT_MS);
  const page = await context.newPage();
  const cspMessages = [];
  page.on('console', (m) => {
    log(`console.${m.type()}: ${m.text()}`);
    if (/Content Security Policy/i.test(m.text())) cspMessages.push(m.text());
  });
  page.on('pageerror', (e) => log(`page error: ${e.message}`));

  // Pages at other origins, for the wrong-origin and wrong-RP-ID steps: answered here.
  const blank = (title) => (route) =>
    route.fulfill({ status: 200, contentType: 'text/html', body: `<!doctype html><title>${title}</title><p>${title}</p>` });
  await page.route((u) => u.origin === OTHER_ORIGIN, blank('other origin'));
  await page.route((u) => u.origin === OTHER_RP_ORIGIN, blank('other rp id'));

  // The virtual authenticator (CDP session of this page; the page is kept throughout).
  const cdp = await context.newCDPSession(page);
  await cdp.send('WebAuthn.enable');
  const { authenticatorId } = await cdp.send('WebAuthn.addVirtualAuthenticator', {
    options: {
      protocol: 'ctap2',
      transport: 'internal',
      hasResidentKey: true,
      hasUserVerification: true,
      isUserVerified: true,
      automaticPresenceSimulation: true,
    },
  });
  const credentials = async () => (await cdp.send('WebAuthn.getCredentials', { authenticatorId })).credentials;
  const removeCredential = (credentialId) => cdp.send('WebAuthn.removeCredential', { authenticatorId, credentialId });
  const addCredential = (c) =>
    cdp.send('WebAuthn.addCredential', {
      authenticatorId,
      credential: {
        credentialId: c.credentialId,
        isResidentCredential: c.isResidentCredential,
        rpId: c.rpId,
        privateKey: c.privateKey,
        userHandle: c.userHandle,
        signCount: c.signCount,
      },
    });
  const localCredentials = async () => (await credentials()).filter((c) => c.rpId === 'localhost');

  // --- page-level helpers -------------------------------------------------------------

  const isDocument = (r, target) => r.request().resourceType() === 'document' && samePath(r.url(), target);

  // Click something that ends with the browser loading `target` (same URL included). The
  // page's `load` event, armed before the click, is the new document's: waitForLoadState
  // could answer for the old one, still on screen when the response arrives.
  async function clickAndLand(locator, target) {
    const landed = later(page.waitForResponse((r) => isDocument(r, target), { timeout: WAIT_MS }));
    const loaded = later(page.waitForEvent('load', { timeout: WAIT_MS }));
    await locator.click();
    const res = await landed;
    await loaded;
    expect(samePath(page.url(), target), 'landed elsewhere', { url: page.url(), expected: target });
    return res;
  }

  // The page's WebAuthn script (/static/webauthn.js) must have loaded: a script the CSP
  // blocks is never fetched: no resource-timing entry with an HTTP status.
  async function expectWebauthnScript() {
    await page.locator('div#webauthn').waitFor({ state: 'attached', timeout: WAIT_MS });
    // (Chromium lists a blocked script too, with response status 0.)
    const loaded = await page.evaluate(() =>
      performance
        .getEntriesByType('resource')
        .some((e) => new URL(e.name).pathname === '/static/webauthn.js' && e.responseStatus >= 200 && e.responseStatus < 400),
    );
    if (!loaded) {
      const res = await fetch(page.url(), { redirect: 'manual', signal: AbortSignal.timeout(WAIT_MS) }).catch(() => null);
      throw new Failed('/static/webauthn.js did not load on this page (blocked by the Content-Security-Policy?)', {
        url: page.url(),
        csp: res ? res.headers.get('content-security-policy') : null,
        console: cspMessages.slice(-2),
      });
    }
  }

  async function expectSignedInPage() {
    expect(samePath(page.url(), URLS.account), 'expected the account page', { url: page.url() });
    const who = (await page.locator('strong#signed-in-as').textContent({ timeout: WAIT_MS }))?.trim();
    expect(who === EMAIL, 'account page shows another person', { shown: who, expected: EMAIL });
  }

  async function passwordSignIn(expectedLanding) {
    await page.goto(URLS.login, { waitUntil: 'load' });
    expect(samePath(page.url(), URLS.login), 'expected the login page', { url: page.url() });
    await page.locator('input#email').fill(EMAIL);
    await page.locator('input#password').fill(PASSWORD);
    // The end of the navigation the form starts (past its 303): where it landed, or the
    // page that refused (a re-rendered form, 403 "Sign-in not allowed from here", …).
    const final = later(
      page.waitForResponse(
        (r) => r.request().isNavigationRequest() && r.frame() === page.mainFrame() && (r.status() < 300 || r.status() >= 400),
        { timeout: WAIT_MS },
      ),
    );
    await page.locator('button[type=submit]', { hasText: 'Sign in' }).click();
    const res = await final;
    if (!samePath(res.url(), expectedLanding)) {
      const text = await res.text().then((t) => t.replace(/<[^>]*>/g, ' ').replace(/\s+/g, ' ').trim().slice(0, 400), () => null);
      throw new Failed('the password sign-in did not land where expected', { expected: expectedLanding, url: res.url(), status: res.status(), page: text });
    }
    await page.waitForURL((u) => samePath(u.href, expectedLanding), { timeout: WAIT_MS, waitUntil: 'load' });
  }

  async function signOut() {
    await page.goto(URLS.account, { waitUntil: 'load' });
    await expectSignedInPage();
    await clickAndLand(page.locator(`form[action="/t/${TENANT}/logout"] button`), `${T}/logout`);
    // Signed out: the account page sends us to the login page.
    await page.goto(URLS.account, { waitUntil: 'load' });
    expect(samePath(page.url(), URLS.login), 'after signing out the account page should redirect to login', { url: page.url() });
  }

  // Authorization code flow with PKCE; the browser must end at the redirect URI.
  function newAuthorization() {
    const verifier = b64url(randomBytes(32));
    const challenge = b64url(createHash('sha256').update(verifier).digest());
    const state = b64url(randomBytes(16));
    const nonce = b64url(randomBytes(16));
    const url = new URL(URLS.authorize);
    url.search = new URLSearchParams({
      response_type: 'code',
      client_id: CLIENT_ID,
      redirect_uri: CALLBACK,
      scope: 'openid',
      state,
      nonce,
      code_challenge: challenge,
      code_challenge_method: 'S256',
    }).toString();
    return { verifier, state, nonce, url: url.href };
  }

  async function redeem(auth, landedUrl) {
    const u = new URL(landedUrl);
    expect(landedUrl.startsWith(CALLBACK), 'expected the redirect URI', { url: landedUrl });
    expect(!u.searchParams.get('error'), 'authorization error', { url: landedUrl });
    const code = u.searchParams.get('code');
    expect(code, 'no code in the redirect', { url: landedUrl });
    expect(u.searchParams.get('state') === auth.state, 'state does not round-trip', { url: landedUrl, state: auth.state });
    const res = await fetch(URLS.token, {
      method: 'POST',
      headers: { 'content-type': 'application/x-www-form-urlencoded' },
      body: new URLSearchParams({
        grant_type: 'authorization_code',
        code,
        redirect_uri: CALLBACK,
        client_id: CLIENT_ID,
        code_verifier: auth.verifier,
      }),
      signal: AbortSignal.timeout(WAIT_MS),
    });
    const body = await readJson(res);
    expect(res.status === 200 && body.id_token, 'token exchange failed', { status: res.status, body });
    const claims = decodeJwtPayload(body.id_token);
    expect(claims.nonce === auth.nonce, 'id_token nonce mismatch', { nonce: claims.nonce, expected: auth.nonce });
    expect(Array.isArray(claims.amr), 'id_token has no amr array', { claims });
    return claims;
  }

  // Already signed in: authorize redirects straight to the client.
  async function codeFlowSignedIn() {
    const auth = newAuthorization();
    await page.goto(auth.url, { waitUntil: 'load' });
    expect(page.url().startsWith(CALLBACK), 'authorize did not redirect to the client', { url: page.url() });
    return redeem(auth, page.url());
  }

  // Lanyard's JSON ceremony endpoints through the browser context (its cookies), with
  // the headers a browser fetch from Lanyard's pages would send.
  async function ceremony(url, body) {
    const res = await context.request.post(url, {
      headers: { 'content-type': 'application/json', origin: BASE },
      data: JSON.stringify(body),
      timeout: WAIT_MS,
      failOnStatusCode: false,
    });
    return { status: res.status(), body: await readJson(res) };
  }

  async function beginVerify() {
    const r = await ceremony(URLS.verifyBegin, {});
    expect(r.status === 200 && r.body.ceremony && r.body.publicKey && r.body.publicKey.challenge, 'verify/begin failed', r);
    return r.body;
  }

  // Click the verify button and return the finish response.
  async function clickVerify() {
    await expectWebauthnScript();
    const finished = later(page.waitForResponse((r) => samePath(r.url(), URLS.verifyFinish) && r.request().method() === 'POST', { timeout: WAIT_MS }));
    await page.locator('button#webauthn-start').click();
    const res = await finished;
    return { status: res.status(), body: await pageJson(res) };
  }

  async function registerKey(name) {
    await page.goto(URLS.keys, { waitUntil: 'load' });
    expect(samePath(page.url(), URLS.keys), 'expected the keys page', { url: page.url() });
    const box = page.locator('div#webauthn[data-mode=register]');
    await box.waitFor({ state: 'visible', timeout: WAIT_MS });
    await expectWebauthnScript();
    await page.locator('input#key-name').fill(name);
    const finished = later(page.waitForResponse((r) => samePath(r.url(), URLS.registerFinish), { timeout: WAIT_MS }));
    const reloaded = later(page.waitForResponse((r) => isDocument(r, URLS.keys), { timeout: WAIT_MS }));
    const loaded = later(page.waitForEvent('load', { timeout: WAIT_MS }));
    await page.locator('button#webauthn-start').click();
    const fin = await finished;
    const finBody = await pageJson(fin);
    expect(fin.status() >= 200 && fin.status() < 300, 'register/finish refused', { status: fin.status(), body: finBody });
    await reloaded;
    await loaded; // the reloaded keys page, not the one the button was on
    return finBody;
  }

  // --- the steps ----------------------------------------------------------------------

  await step('setup', async () => {
    await getAdminToken();
    const tenant = await admin('GET', '/tenant');
    expect(tenant.network && tenant.network.ip_policy === 'off', 'tenant IP policy should start "off"', { network: tenant.network });
    return { chromium: browser.version(), authenticatorId };
  });

  await step('password_signin', async () => {
    await passwordSignIn(URLS.account);
    await expectSignedInPage();
    return { url: page.url() };
  });

  let registered;
  await step('register', async () => {
    await clickAndLand(page.locator('a#keys-link'), URLS.keys);
    const noKeys = await page.locator('p#no-keys').count();
    expect(noKeys === 1 && (await page.locator('ul#keys li.key').count()) === 0, 'the keys page should start empty, with #no-keys');
    await registerKey('Test key');
    const items = page.locator('ul#keys li.key');
    await items.first().waitFor({ state: 'visible', timeout: WAIT_MS });
    const n = await items.count();
    expect(n === 1, 'expected exactly one key on the keys page', { count: n });
    expect((await page.locator('p#no-keys').count()) === 0, '#no-keys still shown with a key listed');
    const shownName = (await items.first().locator('strong.key-name').textContent())?.trim();
    expect(shownName === 'Test key', 'key name not shown', { shownName });
    const creds = await credentials();
    expect(creds.length === 1, 'the virtual authenticator should hold one credential', { creds: creds.map((c) => ({ rpId: c.rpId, isResidentCredential: c.isResidentCredential })) });
    expect(creds[0].isResidentCredential === true, 'the credential is not resident', { isResidentCredential: creds[0].isResidentCredential });
    expect(creds[0].rpId === 'localhost', 'the credential is not for RP ID localhost', { rpId: creds[0].rpId });
    registered = creds[0];
    return { keyId: await items.first().getAttribute('data-id'), credentialId: registered.credentialId, signCount: registered.signCount };
  });

  await step('rename', async () => {
    const item = page.locator('ul#keys li.key').first();
    const id = await item.getAttribute('data-id');
    await item.locator('input[name="name"]').fill('Laptop key');
    await clickAndLand(item.locator('button', { hasText: 'Rename' }), URLS.keys);
    const renamed = page.locator(`ul#keys li.key[data-id="${id}"] strong.key-name`);
    const name = (await renamed.textContent({ timeout: WAIT_MS }))?.trim();
    expect(name === 'Laptop key', 'the new name is not shown', { name });
    const del = (await page.locator(`ul#keys li.key[data-id="${id}"] button`, { hasText: 'Delete' }).textContent())?.trim();
    expect(del && del.includes('Laptop key'), 'the delete button does not name the key', { button: del });
    return { name };
  });

  await step('code_flow_pwd', async () => {
    const claims = await codeFlowSignedIn();
    expect(claims.amr.includes('pwd'), 'amr should contain pwd', { amr: claims.amr });
    expect(!claims.amr.includes('mfa'), 'amr should not contain mfa', { amr: claims.amr });
    return { amr: claims.amr };
  });

  await step('signout', async () => {
    await signOut();
    return { url: page.url() };
  });

  await step('ip_policy_mfa', async () => {
    const t = await setTenant({ ip_policy: 'mfa' });
    expect(t.network && t.network.ip_policy === 'mfa', 'ip_policy not updated', { network: t.network });
    return { ip_policy: t.network.ip_policy };
  });

  await step('mfa_signin', async () => {
    await passwordSignIn(URLS.verify);
    await page.locator('button#webauthn-start').waitFor({ state: 'visible', timeout: WAIT_MS });
    // Not signed in yet: another tab of the same browser is sent to the login page.
    const other = await context.newPage();
    let otherUrl;
    try {
      await other.goto(URLS.account, { waitUntil: 'load' });
      otherUrl = other.url();
    } finally {
      await other.close();
    }
    expect(samePath(otherUrl, URLS.login), 'the account page is reachable before the second factor', { url: otherUrl });
    const landed = later(page.waitForURL((u) => samePath(u.href, URLS.account), { timeout: WAIT_MS, waitUntil: 'load' }));
    const fin = await clickVerify();
    expect(fin.status === 200, 'verify/finish refused', fin);
    await landed;
    await expectSignedInPage();
    return { before: new URL(otherUrl).pathname, after: new URL(page.url()).pathname };
  });

  await step('code_flow_mfa', async () => {
    const claims = await codeFlowSignedIn();
    for (const v of ['pwd', 'mfa']) expect(claims.amr.includes(v), `amr should contain ${v}`, { amr: claims.amr });
    expect(claims.amr.includes('hwk') || claims.amr.includes('swk'), 'amr should contain hwk or swk', { amr: claims.amr });
    return { amr: claims.amr };
  });

  await step('sign_count_regression', async () => {
    await signOut();
    const [cred] = await localCredentials();
    expect(cred, 'the credential is gone from the virtual authenticator');
    const oldCount = cred.signCount;
    await removeCredential(cred.credentialId);
    await addCredential({ ...cred, signCount: 0 });
    await passwordSignIn(URLS.verify);
    const fin = await clickVerify();
    expect(fin.status === 401 && fin.body.error === 'sign_count_regressed', 'expected 401 sign_count_regressed', fin);
    // The page stays and says why (the script shows the server's message).
    const status = page.locator('p#webauthn-status');
    const said = typeof fin.body.message === 'string' && fin.body.message ? fin.body.message : 'did not work';
    await status.filter({ hasText: said }).waitFor({ timeout: WAIT_MS });
    const shown = (await status.textContent())?.trim();
    expect(samePath(page.url(), URLS.verify), 'the page left the verify page', { url: page.url() });
    expect(await page.locator('button#webauthn-start').isEnabled(), 'the button stays disabled after the failure');
    // Put the key back, ahead of everything Lanyard has seen.
    const [used] = await localCredentials();
    await removeCredential(used.credentialId);
    await addCredential({ ...cred, signCount: oldCount + 1000 });
    return { status: fin.status, error: fin.body.error, oldCount, message: shown };
  });

  await step('wrong_origin', async () => {
    expect(samePath(page.url(), URLS.verify), 'expected to be on the verify page', { url: page.url() });
    const options = await beginVerify();
    await page.goto(`${OTHER_ORIGIN}/`, { waitUntil: 'load' });
    const got = await getAssertionInPage(page, options);
    expect(got.ok, 'navigator.credentials.get failed at the other origin', got);
    const clientData = JSON.parse(Buffer.from(got.credential.response.clientDataJSON, 'base64url').toString('utf8'));
    const fin = await ceremony(URLS.verifyFinish, { ceremony: options.ceremony, credential: got.credential });
    expect(fin.status === 401 && fin.body.error === 'assertion_invalid', 'expected 401 assertion_invalid', fin);
    return { status: fin.status, error: fin.body.error, message: fin.body.message, clientDataOrigin: clientData.origin };
  });

  await step('wrong_rp_id', async () => {
    const [cred] = await localCredentials();
    expect(cred, 'the credential is gone from the virtual authenticator');
    const copy = { ...cred, rpId: OTHER_RP_HOST, signCount: cred.signCount + 1000 };
    let swapped = false;
    try {
      await addCredential(copy);
    } catch (e) {
      // An authenticator keys credentials by ID: hold the original aside meanwhile.
      log(`addCredential of a copy with the same ID refused (${e.message}); swapping instead`);
      await removeCredential(cred.credentialId);
      await addCredential(copy);
      swapped = true;
    }
    const options = await beginVerify();
    await page.goto(`${OTHER_RP_ORIGIN}/`, { waitUntil: 'load' });
    const got = await getAssertionInPage(page, options, OTHER_RP_HOST);
    // Restore the authenticator before judging.
    const now = await credentials();
    for (const c of now.filter((c) => c.rpId === OTHER_RP_HOST)) await removeCredential(c.credentialId);
    if (swapped || !(await localCredentials()).length) await addCredential({ ...cred, signCount: cred.signCount + 2000 });
    expect(got.ok, `Chromium refused WebAuthn at ${OTHER_RP_ORIGIN} with RP ID ${OTHER_RP_HOST}`, got);
    const clientData = JSON.parse(Buffer.from(got.credential.response.clientDataJSON, 'base64url').toString('utf8'));
    const fin = await ceremony(URLS.verifyFinish, { ceremony: options.ceremony, credential: got.credential });
    expect(fin.status === 401 && fin.body.error === 'assertion_invalid', 'expected 401 assertion_invalid', fin);
    return { status: fin.status, error: fin.body.error, message: fin.body.message, clientDataOrigin: clientData.origin, swapped };
  });

  await step('deleted_credential', async () => {
    await passwordSignIn(URLS.verify);
    const options = await beginVerify();
    const keys = await listKeys();
    expect(Array.isArray(keys) && keys.length === 1, 'the admin API should list one credential', { keys });
    await admin('DELETE', `/users/${encodeURIComponent(EMAIL)}/webauthn/${encodeURIComponent(keys[0].id)}`);
    const after = await listKeys();
    expect(Array.isArray(after) && after.length === 0, 'the credential is still listed after DELETE', { after });
    const got = await getAssertionInPage(page, options);
    expect(got.ok, 'navigator.credentials.get failed on the verify page', got);
    const fin = await ceremony(URLS.verifyFinish, { ceremony: options.ceremony, credential: got.credential });
    expect(fin.status === 401 && fin.body.error === 'unknown_credential', 'expected 401 unknown_credential', fin);
    return { status: fin.status, error: fin.body.error, message: fin.body.message, deleted: keys[0].id };
  });

  await step('passwordless', async () => {
    const t1 = await setTenant({ ip_policy: 'off' });
    expect(t1.network && t1.network.ip_policy === 'off', 'ip_policy not updated', { network: t1.network });
    await passwordSignIn(URLS.account);
    await expectSignedInPage();
    const before = new Set((await credentials()).map((c) => c.credentialId));
    await registerKey('Passkey');
    const n = await page.locator('ul#keys li.key').count();
    expect(n === 1, 'expected exactly one key on the keys page', { count: n });
    const fresh = (await localCredentials()).filter((c) => !before.has(c.credentialId));
    expect(fresh.length === 1 && fresh[0].isResidentCredential, 'expected one new resident credential', { fresh: fresh.length });
    // The key deleted by the administrator is still in the authenticator (unless the new
    // one replaced it, same RP and user): drop it, so the discoverable sign-in below
    // has exactly one passkey to offer and no account chooser.
    for (const c of await localCredentials()) if (c.credentialId !== fresh[0].credentialId) await removeCredential(c.credentialId);
    await signOut();
    const t2 = await setTenant({ passwordless: true });
    expect(t2.network && t2.network.passwordless === true, 'passwordless not updated', { network: t2.network });
    const auth = newAuthorization();
    await page.goto(auth.url, { waitUntil: 'load' });
    expect(samePath(page.url(), URLS.login), 'expected the login page', { url: page.url() });
    const returnTo = new URL(page.url()).searchParams.get('return_to');
    expect(returnTo, 'the login page has no return_to', { url: page.url() });
    await page.locator('div#webauthn[data-mode=passkey]').waitFor({ state: 'visible', timeout: WAIT_MS });
    await expectWebauthnScript();
    const button = page.locator('button#webauthn-start');
    expect(((await button.textContent()) || '').includes('Sign in with a passkey'), 'passkey button text', { text: await button.textContent() });
    const finished = later(page.waitForResponse((r) => samePath(r.url(), URLS.passkeyFinish), { timeout: WAIT_MS }));
    const landed = later(page.waitForURL((u) => u.href.startsWith(CALLBACK), { timeout: WAIT_MS, waitUntil: 'load' }));
    await button.click();
    const fin = await finished;
    const finBody = await pageJson(fin);
    expect(fin.status() === 200, 'passkey/finish refused', { status: fin.status(), body: finBody });
    await landed;
    const claims = await redeem(auth, page.url());
    expect(claims.amr.includes('mfa'), 'amr should contain mfa', { amr: claims.amr });
    expect(claims.amr.includes('hwk') || claims.amr.includes('swk'), 'amr should contain hwk or swk', { amr: claims.amr });
    expect(!claims.amr.includes('pwd'), 'amr should not contain pwd', { amr: claims.amr });
    return { amr: claims.amr, return_to: returnTo };
  });

  if (SCREENSHOT_DIR) {
    await step('screenshots', async () => {
      mkdirSync(SCREENSHOT_DIR, { recursive: true });
      const sizes = { desktop: { width: 1280, height: 800 }, phone: { width: 390, height: 844 } };
      const files = [];
      const shoot = async (name) => {
        for (const [label, size] of Object.entries(sizes)) {
          await page.setViewportSize(size);
          const path = join(SCREENSHOT_DIR, `${name}-${label}.png`);
          await page.screenshot({ path, fullPage: true });
          files.push(path);
        }
        await page.setViewportSize(sizes.desktop);
      };
      // Keys page (signed in by the passkey above).
      await page.goto(URLS.keys, { waitUntil: 'load' });
      expect(samePath(page.url(), URLS.keys), 'expected the keys page', { url: page.url() });
      await shoot('keys');
      // Sign-in page (passwordless on: with the passkey button).
      await signOut();
      await shoot('signin');
      // Verify page: a password sign-in under the "mfa" policy.
      await setTenant({ ip_policy: 'mfa' });
      await passwordSignIn(URLS.verify);
      await shoot('verify');
      await setTenant({ ip_policy: 'off' });
      return { files };
    });
  }

  // The passkey route passes the same gate: outside an enforced list (empty here, so
  // 127.0.0.1 is outside) a passkey alone is refused, and no session starts.
  await step('passwordless_refused_outside', async () => {
    // A fresh start: no session, no pending sign-in.
    await context.clearCookies();
    const t = await setTenant({ ip_policy: 'enforce' });
    expect(t.network && t.network.ip_policy === 'enforce', 'ip_policy not updated', { network: t.network });
    await page.goto(URLS.login, { waitUntil: 'load' });
    await page.locator('div#webauthn[data-mode=passkey]').waitFor({ state: 'visible', timeout: WAIT_MS });
    await expectWebauthnScript();
    const finished = later(page.waitForResponse((r) => samePath(r.url(), URLS.passkeyFinish), { timeout: WAIT_MS }));
    await page.locator('button#webauthn-start').click();
    const fin = await finished;
    const body = await pageJson(fin);
    expect(fin.status() === 403 && body && body.error === 'outside_allow_list', 'expected 403 outside_allow_list', { status: fin.status(), body });
    await page.locator('p#webauthn-status').filter({ hasText: 'did not work' }).waitFor({ timeout: WAIT_MS });
    expect(samePath(page.url(), URLS.login), 'the page should stay', { url: page.url() });
    const probe = await context.request.get(URLS.account, { maxRedirects: 0, failOnStatusCode: false });
    expect(probe.status() === 303, 'no session may start', { status: probe.status() });
    const back = await setTenant({ ip_policy: 'off' });
    expect(back.network.ip_policy === 'off', 'ip_policy not restored', { network: back.network });
    return { status: fin.status(), error: body.error };
  });
}

// ---------------------------------------------------------------------------------------

const watchdog = setTimeout(() => {
  process.stdout.write(`${JSON.stringify({ step: currentStep, ok: false, error: `the run took longer than ${WATCHDOG_MS} ms` })}\n`);
  process.exit(1);
}, WATCHDOG_MS);
watchdog.unref();

try {
  await main();
  clearTimeout(watchdog);
  process.exit(0);
} catch (e) {
  const line = { step: currentStep, ok: false, error: e && e.message ? e.message : String(e) };
  if (e instanceof Failed) Object.assign(line, { details: e.details });
  process.stdout.write(`${JSON.stringify(line)}\n`);
  if (e && e.stack) log(e.stack);
  process.exit(1);
}
