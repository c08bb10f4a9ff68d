// A third-party OpenID relying party (openid-client 6, on oauth4webapi) and an
// independent JOSE library (jose 6) driving Lanyard as OpenID Provider.
//
//   node rp.mjs flows           native app (private-use scheme, PKCE S256, no secret) and
//                               web app (secret, client_secret_basic): discovery,
//                               authorization with the sign-in form submitted by this script,
//                               code exchange, ID-token validation, userinfo, refresh with
//                               rotation, introspection, revocation, logout; prints RESULT
//   node rp.mjs after-rotation  jose validates, offline from the JWKS alone, an access token
//                               signed before a key rotation and one signed after it
//
// Environment: ISSUER, EMAIL, PASSWORD, NATIVE_ID, NATIVE_REDIRECT, WEB_ID, WEB_SECRET,
// WEB_REDIRECT, WEB_LOGOUT_REDIRECT; for after-rotation also BEFORE_TOKEN, REFRESH_TOKEN.
import * as client from 'openid-client';
import * as jose from 'jose';
import assert from 'node:assert/strict';

const env = (k) => { const v = process.env[k]; if (!v) throw new Error(`missing ${k}`); return v; };
const issuer = new URL(env('ISSUER'));
const insecure = { execute: [client.allowInsecureRequests] };
const log = (...a) => console.log('[rp]', ...a);

// A minimal browser: a cookie jar and manual redirects; fills Lanyard's sign-in form.
class Browser {
  constructor() { this.jar = new Map(); }
  cookieHeader() { return [...this.jar].map(([k, v]) => `${k}=${v}`).join('; '); }
  keep(res) {
    for (const c of res.headers.getSetCookie()) {
      const [pair] = c.split(';');
      const i = pair.indexOf('=');
      const [k, v] = [pair.slice(0, i), pair.slice(i + 1)];
      if (/max-age=0/i.test(c)) this.jar.delete(k); else this.jar.set(k, v);
    }
  }
  async fetch(url, init = {}) {
    const res = await fetch(url, { ...init, redirect: 'manual', headers: { ...(init.headers || {}), cookie: this.cookieHeader() } });
    this.keep(res);
    return res;
  }
  // Follows redirects from `start` until one points at `stopPrefix`; signs in when asked.
  async until(start, stopPrefix) {
    let url = start;
    for (let hops = 0; hops < 12; hops++) {
      if (url.startsWith(stopPrefix)) return url;
      const res = await this.fetch(url);
      if ([301, 302, 303, 307].includes(res.status)) { url = new URL(res.headers.get('location'), url).href; continue; }
      const html = await res.text();
      if (res.status === 200 && html.includes('name="password"')) {
        const csrf = html.match(/name="csrf" value="([^"]+)"/)[1];
        const returnTo = new URL(url).searchParams.get('return_to') ?? '';
        const action = new URL(html.match(/<form method="post" action="([^"]+)"/)[1], url).href;
        const body = new URLSearchParams({ csrf, email: env('EMAIL'), password: env('PASSWORD'), return_to: returnTo });
        const posted = await this.fetch(action, { method: 'POST', body, headers: { 'content-type': 'application/x-www-form-urlencoded' } });
        assert.equal(posted.status, 303, 'sign-in form accepted');
        url = new URL(posted.headers.get('location'), action).href;
        continue;
      }
      throw new Error(`unexpected ${res.status} at ${url}: ${html.slice(0, 300)}`);
    }
    throw new Error('too many redirects');
  }
}

async function expectOAuthError(promise, code) {
  try { await promise; } catch (e) {
    const got = e.error ?? e.cause?.error ?? e.code;
    assert.equal(got, code, `expected ${code}, got ${got} (${e.message})`);
    return;
  }
  throw new Error(`expected ${code}, got success`);
}

async function codeFlow(name, config, redirectUri, browser) {
  const verifier = client.randomPKCECodeVerifier();
  const state = client.randomState();
  const nonce = client.randomNonce();
  const authUrl = client.buildAuthorizationUrl(config, {
    redirect_uri: redirectUri, scope: 'openid email profile', state, nonce,
    code_challenge: await client.calculatePKCECodeChallenge(verifier), code_challenge_method: 'S256',
  });
  const callback = await browser.until(authUrl.href, redirectUri);
  log(name, 'callback', callback.replace(/code=[^&]+/, 'code=…'));
  const tokens = await client.authorizationCodeGrant(config, new URL(callback),
    { pkceCodeVerifier: verifier, expectedState: state, expectedNonce: nonce, idTokenExpected: true });
  return { tokens, callback, verifier, state, nonce };
}

async function fullFlow(name, config, redirectUri, logoutUri) {
  const browser = new Browser();
  const { tokens, callback, verifier, state, nonce } = await codeFlow(name, config, redirectUri, browser);
  const claims = tokens.claims();
  assert.equal(claims.email, env('EMAIL'));
  assert.deepEqual(claims.amr, ['pwd']);
  log(name, 'id_token validated by openid-client: iss', claims.iss, 'aud', claims.aud, 'alg', jose.decodeProtectedHeader(tokens.id_token).alg);

  const info = await client.fetchUserInfo(config, tokens.access_token, claims.sub);
  assert.equal(info.email, env('EMAIL'));
  log(name, 'userinfo', JSON.stringify(info));

  const refreshed = await client.refreshTokenGrant(config, tokens.refresh_token);
  assert.ok(refreshed.refresh_token && refreshed.refresh_token !== tokens.refresh_token, 'refresh token rotated');
  log(name, 'refreshed: new access token', refreshed.access_token !== tokens.access_token, 'rotated refresh', true);

  const intro = await client.tokenIntrospection(config, refreshed.access_token);
  assert.equal(intro.active, true);
  assert.equal(intro.client_id, config.clientMetadata().client_id);
  log(name, 'introspect access token: active', intro.active);

  await client.tokenRevocation(config, refreshed.refresh_token);
  const after = await client.tokenIntrospection(config, refreshed.refresh_token);
  assert.equal(after.active, false);
  const afterAccess = await client.tokenIntrospection(config, refreshed.access_token);
  log(name, 'after revocation: refresh active', after.active, 'access (same family) active', afterAccess.active);
  assert.equal(afterAccess.active, false);

  await expectOAuthError(client.refreshTokenGrant(config, tokens.refresh_token), 'invalid_grant');
  log(name, 'reused refresh token rejected: invalid_grant');

  const end = client.buildEndSessionUrl(config, { id_token_hint: refreshed.id_token ?? tokens.id_token, post_logout_redirect_uri: logoutUri, state: 'bye' });
  const res = await browser.fetch(end.href);
  assert.equal(res.status, 303);
  assert.equal(res.headers.get('location'), `${logoutUri}?state=bye`);
  const again = await browser.fetch(new URL('account', issuer.href + '/').href);
  assert.equal(again.status, 303, 'session ended by logout');
  log(name, 'logout: redirected to', res.headers.get('location'));

  await expectOAuthError(client.authorizationCodeGrant(config, new URL(callback),
    { pkceCodeVerifier: verifier, expectedState: state, expectedNonce: nonce }), 'invalid_grant');
  log(name, 'replayed code rejected: invalid_grant');
  return tokens;
}

async function flows() {
  const native = await client.discovery(issuer, env('NATIVE_ID'),
    { id_token_signed_response_alg: 'ES256' }, client.None(), insecure);
  log('discovered', native.serverMetadata().issuer, 'token_endpoint', native.serverMetadata().token_endpoint);
  assert.deepEqual(native.serverMetadata().code_challenge_methods_supported, ['S256']);
  const web = await client.discovery(issuer, env('WEB_ID'),
    { client_secret: env('WEB_SECRET'), id_token_signed_response_alg: 'RS256' }, client.ClientSecretBasic(env('WEB_SECRET')), insecure);

  log('=== native public client (private-use scheme, PKCE S256, no secret)');
  await fullFlow('native', native, env('NATIVE_REDIRECT'), env('NATIVE_LOGOUT_REDIRECT'));
  log('=== confidential web client (client_secret_basic)');
  await fullFlow('web', web, env('WEB_REDIRECT'), env('WEB_LOGOUT_REDIRECT'));

  // Fresh tokens for the rotation check, verified offline by jose before rotation.
  const { tokens } = await codeFlow('native', native, env('NATIVE_REDIRECT'), new Browser());
  const jwks = jose.createRemoteJWKSet(new URL(native.serverMetadata().jwks_uri));
  const { protectedHeader } = await jose.jwtVerify(tokens.access_token, jwks,
    { issuer: issuer.href, typ: 'at+jwt', algorithms: ['ES256'] });
  log('jose verified access token offline before rotation, kid', protectedHeader.kid);
  console.log('RESULT ' + JSON.stringify({ before_token: tokens.access_token, refresh_token: tokens.refresh_token }));
}

async function afterRotation() {
  const native = await client.discovery(issuer, env('NATIVE_ID'),
    { id_token_signed_response_alg: 'ES256' }, client.None(), insecure);
  const jwks = jose.createRemoteJWKSet(new URL(native.serverMetadata().jwks_uri));
  const before = await jose.jwtVerify(env('BEFORE_TOKEN'), jwks, { issuer: issuer.href, typ: 'at+jwt', algorithms: ['ES256'] });
  log('jose verified the pre-rotation token (retired key, still published), kid', before.protectedHeader.kid);
  const refreshed = await client.refreshTokenGrant(native, env('REFRESH_TOKEN'));
  const after = await jose.jwtVerify(refreshed.access_token, jwks, { issuer: issuer.href, typ: 'at+jwt', algorithms: ['ES256'] });
  log('jose verified a post-rotation token, kid', after.protectedHeader.kid);
  assert.notEqual(after.protectedHeader.kid, before.protectedHeader.kid, 'new tokens use the new key');
  try {
    await jose.jwtVerify(env('BEFORE_TOKEN').slice(0, -4) + 'AAAA', jwks, { issuer: issuer.href });
    throw new Error('tampered token accepted');
  } catch (e) {
    assert.equal(e.code, 'ERR_JWS_SIGNATURE_VERIFICATION_FAILED');
  }
  log('jose rejected a tampered token');
  console.log('RESULT ' + JSON.stringify({ ok: true }));
}

const mode = process.argv[2];
(mode === 'flows' ? flows() : mode === 'after-rotation' ? afterRotation() : Promise.reject(new Error('mode?')))
  .catch((e) => { console.error('[rp] FAILED', e); process.exit(1); });
