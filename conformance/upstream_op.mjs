// A tenant's own OpenID Provider for Lanyard's upstream-OIDC tests: npm oidc-provider
// (panva, the certified Node.js OP) on 127.0.0.1, with sign-in and consent completed
// automatically (no HTML forms). Run by tests/api/upstream_op.rs; by hand:
//
//   OP_PORT=0 OP_CLIENTS='[...]' node conformance/upstream_op.mjs
//
// Prints exactly one line to stdout, `READY http://127.0.0.1:PORT` (the issuer), once it
// listens; everything else goes to stderr. SIGTERM/SIGINT stop it cleanly.
//
// Environment (all optional):
//   OP_PORT                 port on 127.0.0.1; 0 or unset: a random free one.
//   OP_CLIENTS              JSON array of oidc-provider client metadata (static clients).
//                           Unset: the `lanyard` (confidential, client_secret_basic) and
//                           `mobile-app` (native, public) clients of DEFAULT_CLIENTS below.
//   OP_USERS                JSON object keyed by sub: each value is the user's claims. It
//                           replaces the fixed set (USERS below: alice, bob, mallory).
//   OP_CLAIMS_IN_ID_TOKEN   unset or 1 (the default): scope claims are in the ID token too
//                           (`conformIdTokenClaims: false`), as Lanyard's tests mostly want.
//                           0: oidc-provider's default (`conformIdTokenClaims: true`): when an
//                           access token is issued, the ID token has only sub (+ iss, aud,
//                           nonce, ...) and the scope claims come from userinfo.
//   OP_ID_TOKEN_TTL, OP_ACCESS_TOKEN_TTL, OP_REFRESH_TOKEN_TTL
//                           seconds; defaults 3600, 3600, 86400.
//   OP_JWKS_FILE            a private JWKS (JSON `{"keys": [...]}`). If the file exists its
//                           keys are used (the first RS256 key signs RS256 tokens); if not,
//                           keys are generated and written there; /_test/rotate rewrites it.
//                           So a restart with the same file keeps the keys; remove (or
//                           change) the file to restart with new ones. Unset: an RS256 and
//                           an ES256 key are generated at start and kept in memory only.
//   OP_EXIT_WITH_STDIN      1: exit when stdin reaches end-of-file (the harness holds a pipe
//                           to it, so the OP dies with the test process however that dies).
//
// Users (USERS below; OP_USERS replaces them): alice (alice@acme.test, "Alice Archer",
// sAMAccountName aarcher, groups [staff]), bob (bob@acme.test, "Bob Baker", bbaker,
// [staff]), mallory (mallory@evil.test, "Mallory Mallet", mmallet, []); all with
// email_verified true. The user of an authorization request is its `login_hint` (default
// `alice`); an unknown (or disabled) one ends the interaction with `access_denied` at the
// redirect_uri. A login_hint naming another user than the one signed in on the OP session
// cookie signs the hinted user in on a new session (the other session and its tokens stay
// valid); without a login_hint, a session's (known) user is signed in again without a
// login step (SSO). Consent grants every scope and claim asked for. A client that follows
// the redirects with a cookie jar (the `_interaction`, `_interaction_resume` and `_session`
// cookies are needed) reaches its redirect_uri with a code (and `iss`, RFC 9207).
//
// Scopes -> claims: openid (sub), email (email, email_verified), profile (name,
// given_name, family_name, preferred_username, ... the OIDC profile claims), ad
// (sAMAccountName, groups), offline_access.
//
// Policy: PKCE S256 (plain is not supported) is required for public clients
// (token_endpoint_auth_method none) and allowed for confidential ones. A refresh token is
// issued whenever the client has the refresh_token grant type (no offline_access or
// prompt=consent needed); public clients' refresh tokens rotate (a reused one is refused
// and its grant revoked), confidential clients' do not. oidc-provider grants
// offline_access only to a request with prompt=consent (else it drops it from the granted
// scope, silently); a refresh token without it ends with the OP session it came from.
// Access tokens are opaque; userinfo, introspection, revocation and RP-initiated logout
// (end_session_endpoint) are enabled.
//
// Storage: an in-memory adapter of this file, shared by every Provider instance of this
// process, so codes, sessions, grants and tokens survive a key rotation (below) but not
// a restart of the process.
//
// Test-only control endpoints (same listener; nothing else under /_test/ exists):
//   POST /_test/rotate              new RS256 key with a new kid (its JWK thumbprint); it
//                                   signs from now on; the previous keys stay published in
//                                   /jwks (rotation with overlap). -> {"kid": "..."}
//   POST /_test/rotate?drop_old=1   same, but only the new RS256 key stays published (all
//                                   earlier RS256 keys are dropped; the ES256 key stays).
//   POST /_test/revoke-refresh?sub=alice
//                                   the user's upstream session ends: every refresh token,
//                                   access token, code, grant and OP session of that user
//                                   is deleted, so a refresh fails with invalid_grant.
//                                   -> {"sub": "...", "deleted": {"RefreshToken": n, ...}}
//   POST /_test/disable?sub=alice   the user becomes unknown from now on (refresh fails with
//                                   invalid_grant, a new sign-in with access_denied);
//                                   nothing is deleted. -> {"sub": "...", "disabled": true}
// oidc-provider takes its JWKS at construction and has no public API to change it, so a
// rotation builds a new Provider with the new JWKS and the same configuration, adapter
// storage and cookie-signing keys, and puts it behind the same HTTP server (requests
// already under way finish on the old one). No state is lost by this.
import http from 'node:http';
import { randomBytes } from 'node:crypto';
import { existsSync, readFileSync, writeFileSync } from 'node:fs';
import * as jose from 'jose';
import Provider from 'oidc-provider';

// Only the READY line may go to stdout (oidc-provider prints notices with console.info).
console.log = console.info = console.error;
const log = (...a) => console.error('[upstream-op]', ...a);

const DEFAULT_CLIENTS = [
  {
    client_id: 'lanyard', client_secret: 's3cret-s3cret',
    redirect_uris: ['http://localhost:8080/t/acme/oidc/callback'],
    grant_types: ['authorization_code', 'refresh_token'], token_endpoint_auth_method: 'client_secret_basic',
  },
  {
    client_id: 'mobile-app', application_type: 'native', token_endpoint_auth_method: 'none',
    redirect_uris: ['http://127.0.0.1/cb'], grant_types: ['authorization_code', 'refresh_token'],
  },
];

const USERS = {
  alice: {
    email: 'alice@acme.test', email_verified: true, name: 'Alice Archer', given_name: 'Alice', family_name: 'Archer',
    preferred_username: 'alice', sAMAccountName: 'aarcher', groups: ['staff'],
  },
  bob: {
    email: 'bob@acme.test', email_verified: true, name: 'Bob Baker', given_name: 'Bob', family_name: 'Baker',
    preferred_username: 'bob', sAMAccountName: 'bbaker', groups: ['staff'],
  },
  mallory: {
    email: 'mallory@evil.test', email_verified: true, name: 'Mallory Mallet', preferred_username: 'mallory',
    sAMAccountName: 'mmallet', groups: [],
  },
};

const envJson = (name, fallback) => {
  const v = process.env[name];
  if (!v) return fallback;
  try { return JSON.parse(v); } catch (e) { throw new Error(`${name} is not valid JSON: ${e.message}`); }
};
const envSeconds = (name, fallback) => {
  const v = process.env[name];
  if (!v) return fallback;
  const n = Number(v);
  if (!Number.isInteger(n) || n <= 0) throw new Error(`${name} must be a positive integer (seconds), got ${v}`);
  return n;
};

const clients = envJson('OP_CLIENTS', DEFAULT_CLIENTS);
if (!Array.isArray(clients)) throw new Error('OP_CLIENTS must be a JSON array');
const users = envJson('OP_USERS', USERS);
const disabled = new Set();
const knownUser = (sub) => typeof sub === 'string' && Object.hasOwn(users, sub) && !disabled.has(sub);
const claimsInIdToken = process.env.OP_CLAIMS_IN_ID_TOKEN !== '0';
const ttl = {
  IdToken: envSeconds('OP_ID_TOKEN_TTL', 3600),
  AccessToken: envSeconds('OP_ACCESS_TOKEN_TTL', 3600),
  RefreshToken: envSeconds('OP_REFRESH_TOKEN_TTL', 86400),
};
const longest = Math.max(ttl.IdToken, ttl.AccessToken, ttl.RefreshToken);
const jwksFile = process.env.OP_JWKS_FILE || undefined;

// ---- keys -------------------------------------------------------------------------------

async function newKey(alg) {
  const { privateKey } = await jose.generateKeyPair(alg, { extractable: true });
  const jwk = await jose.exportJWK(privateKey);
  return { ...jwk, alg, use: 'sig', kid: await jose.calculateJwkThumbprint(jwk) };
}

let keys;
if (jwksFile && existsSync(jwksFile)) {
  keys = JSON.parse(readFileSync(jwksFile, 'utf8')).keys;
  if (!Array.isArray(keys) || !keys.length) throw new Error(`${jwksFile}: no "keys"`);
  log('keys from', jwksFile, keys.map((k) => k.kid));
} else {
  keys = [await newKey('RS256'), await newKey('ES256')];
  log('generated keys', keys.map((k) => k.kid));
}
const saveKeys = () => { if (jwksFile) writeFileSync(jwksFile, `${JSON.stringify({ keys }, null, 2)}\n`, { mode: 0o600 }); };
saveKeys();
const isRsa = (k) => k.kty === 'RSA';

// ---- storage shared by every Provider instance --------------------------------------------

const stores = new Map(); // model name -> Map(id -> { payload, expiresAt (ms) })
const storeOf = (model) => {
  if (!stores.has(model)) stores.set(model, new Map());
  return stores.get(model);
};
const live = (entry) => entry && (entry.expiresAt === undefined || entry.expiresAt > Date.now());

class Adapter {
  constructor(model) { this.model = model; this.store = storeOf(model); }
  async upsert(id, payload, expiresIn) {
    this.store.set(id, { payload, expiresAt: expiresIn ? Date.now() + expiresIn * 1000 : undefined });
  }
  async find(id) {
    const e = this.store.get(id);
    if (!live(e)) { this.store.delete(id); return undefined; }
    return e.payload;
  }
  async findBy(field, value) {
    for (const [id, e] of this.store) if (e.payload[field] === value) return this.find(id);
    return undefined;
  }
  async findByUid(uid) { return this.findBy('uid', uid); }
  async findByUserCode(userCode) { return this.findBy('userCode', userCode); }
  async consume(id) { const e = this.store.get(id); if (e) e.payload.consumed = Math.floor(Date.now() / 1000); }
  async destroy(id) { this.store.delete(id); }
  async revokeByGrantId(grantId) {
    for (const store of stores.values()) {
      for (const [id, e] of store) if (e.payload.grantId === grantId) store.delete(id);
    }
  }
}

// Deletes everything stored for `sub` (the Grant and Session records carry accountId too).
function deleteUserData(sub) {
  const deleted = {};
  for (const [model, store] of stores) {
    for (const [id, e] of store) {
      if (e.payload.accountId === sub) {
        store.delete(id);
        deleted[model] = (deleted[model] ?? 0) + 1;
      }
    }
  }
  return deleted;
}

// ---- the provider -----------------------------------------------------------------------

const PROFILE = ['name', 'family_name', 'given_name', 'middle_name', 'nickname', 'preferred_username', 'profile',
  'picture', 'website', 'gender', 'birthdate', 'zoneinfo', 'locale', 'updated_at'];
const cookieKeys = [randomBytes(32).toString('base64url')];

function makeProvider() {
  const provider = new Provider(issuer, {
    adapter: Adapter,
    clients,
    jwks: { keys },
    cookies: { keys: cookieKeys },
    findAccount: (ctx, sub) => (knownUser(sub)
      ? { accountId: sub, claims: async () => ({ ...users[sub], sub }) }
      : undefined),
    claims: {
      openid: ['sub'],
      email: ['email', 'email_verified'],
      profile: PROFILE,
      ad: ['sAMAccountName', 'groups'],
    },
    scopes: ['openid', 'offline_access', 'email', 'profile', 'ad'],
    conformIdTokenClaims: !claimsInIdToken,
    pkce: { required: (ctx, client) => client.clientAuthMethod === 'none' },
    issueRefreshToken: async (ctx, client) => client.grantTypeAllowed('refresh_token'),
    rotateRefreshToken: (ctx) => ctx.oidc.entities.Client.clientAuthMethod === 'none',
    ttl: {
      ...ttl,
      AuthorizationCode: 60,
      Interaction: 600,
      Session: longest,
      Grant: longest,
    },
    interactions: {
      url: (ctx, interaction) => `/interaction/${interaction.uid}`,
    },
    features: {
      devInteractions: { enabled: false },
      introspection: { enabled: true },
      revocation: { enabled: true },
      userinfo: { enabled: true },
      rpInitiatedLogout: { enabled: true },
    },
  });

  // Sign-in and consent without forms.
  provider.use(async (ctx, next) => {
    if (!ctx.path.startsWith('/interaction/')) return next();
    const details = await provider.interactionDetails(ctx.req, ctx.res);
    let result;
    if (details.prompt.name === 'login') {
      const sub = details.params.login_hint ?? 'alice';
      result = knownUser(sub)
        ? { login: { accountId: sub } }
        : { error: 'access_denied', error_description: `unknown user ${JSON.stringify(sub)}` };
      log('interaction login', JSON.stringify(sub), result.login ? 'signed in' : 'access_denied');
    } else {
      const grant = details.grantId
        ? await provider.Grant.find(details.grantId)
        : new provider.Grant({ accountId: details.session.accountId, clientId: details.params.client_id });
      const d = details.prompt.details;
      if (d.missingOIDCScope) grant.addOIDCScope(d.missingOIDCScope.join(' '));
      if (d.missingOIDCClaims) grant.addOIDCClaims(d.missingOIDCClaims);
      for (const [indicator, scopes] of Object.entries(d.missingResourceScopes ?? {})) {
        grant.addResourceScope(indicator, scopes.join(' '));
      }
      result = { consent: { grantId: await grant.save() } };
    }
    ctx.redirect(await provider.interactionResult(ctx.req, ctx.res, result, { mergeWithLastSubmission: true }));
  });

  for (const event of ['server_error', 'grant.error', 'authorization.error', 'userinfo.error', 'introspection.error',
    'revocation.error', 'end_session.error']) {
    provider.on(event, (ctx, err) => log(event, err.name, err.message, err.error_detail ?? err.error_description ?? ''));
  }
  return provider;
}

// The login_hint picks the user: an authorization request whose OP session cookie belongs
// to another user (or to an unknown or disabled one) reaches oidc-provider without that
// cookie, and so does the resume of the interaction it starts, so the hinted user is signed
// in on a new session (which replaces the cookie); the other user's session and tokens stay
// valid. (oidc-provider itself answers a change of user on a session with a logout
// confirmation form to POST, which a redirect-following client cannot get past.) Without a
// login_hint, a valid session's user stays.
function forgetOtherUsersSession(req, url) {
  if (!req.headers.cookie) return;
  const pairs = req.headers.cookie.split(';').map((p) => p.trim());
  const sid = pairs.find((p) => p.startsWith('_session='))?.slice('_session='.length);
  const accountId = sid && storeOf('Session').get(sid)?.payload.accountId;
  if (!accountId) return;
  let forget = false;
  if (url.pathname === '/auth') {
    const hint = url.searchParams.get('login_hint');
    forget = !knownUser(accountId) || (hint !== null && hint !== accountId);
  } else if (url.pathname.startsWith('/auth/')) {
    // The resume: the interaction was started without a signed-in session (by the above).
    const interaction = storeOf('Interaction').get(url.pathname.slice('/auth/'.length))?.payload;
    forget = interaction !== undefined && !interaction.session?.uid;
  }
  if (forget) req.headers.cookie = pairs.filter((p) => !/^_session(\.sig)?=/.test(p)).join('; ');
}

// ---- test-only control endpoints -------------------------------------------------------------

async function rotate(dropOld) {
  const key = await newKey('RS256');
  const rest = dropOld ? keys.filter((k) => !isRsa(k)) : keys;
  const next = [key, ...rest]; // the first RS256 key is the one that signs
  // Build the new Provider before switching, so a failure leaves the old one in place.
  const previous = keys;
  keys = next;
  try {
    current = makeProvider().callback();
  } catch (e) {
    keys = previous;
    throw e;
  }
  saveKeys();
  log('rotated: signing kid', key.kid, 'published', keys.map((k) => k.kid));
  return { kid: key.kid };
}

function sendJson(res, status, body) {
  res.writeHead(status, { 'content-type': 'application/json', 'cache-control': 'no-store' });
  res.end(JSON.stringify(body));
}

async function control(req, res, url) {
  const sub = url.searchParams.get('sub');
  if (req.method !== 'POST') return sendJson(res, 405, { error: 'POST only' });
  switch (url.pathname) {
    case '/_test/rotate':
      return sendJson(res, 200, await rotate(url.searchParams.get('drop_old') === '1'));
    case '/_test/revoke-refresh': {
      if (!sub) return sendJson(res, 400, { error: 'sub is required' });
      const deleted = deleteUserData(sub);
      log('revoke-refresh', sub, JSON.stringify(deleted));
      return sendJson(res, 200, { sub, deleted });
    }
    case '/_test/disable':
      if (!sub) return sendJson(res, 400, { error: 'sub is required' });
      disabled.add(sub);
      log('disabled', sub);
      return sendJson(res, 200, { sub, disabled: true });
    default:
      return sendJson(res, 404, { error: 'no such test endpoint' });
  }
}

// ---- server -----------------------------------------------------------------------------

let issuer;
let current; // the request handler (Koa callback) of the Provider in use
const server = http.createServer((req, res) => {
  res.on('finish', () => log(req.method, req.url.split('?')[0], res.statusCode));
  let url;
  try { url = new URL(req.url, issuer); } catch { return sendJson(res, 400, { error: 'bad request target' }); }
  if (url.pathname.startsWith('/_test/')) {
    control(req, res, url).catch((e) => { log('control error', e); sendJson(res, 500, { error: String(e) }); });
    return;
  }
  if (!current) return sendJson(res, 503, { error: 'starting' });
  forgetOtherUsersSession(req, url);
  current(req, res);
});

let stopping = false;
function shutdown(why) {
  if (stopping) return;
  stopping = true;
  log('stopping:', why);
  server.close(() => process.exit(0));
  server.closeAllConnections();
  setTimeout(() => process.exit(0), 2000).unref();
}
process.on('SIGTERM', () => shutdown('SIGTERM'));
process.on('SIGINT', () => shutdown('SIGINT'));
if (process.env.OP_EXIT_WITH_STDIN === '1') {
  process.stdin.on('end', () => shutdown('stdin closed'));
  process.stdin.on('error', () => shutdown('stdin error'));
  process.stdin.resume();
}

const port = Number(process.env.OP_PORT || 0);
if (!Number.isInteger(port) || port < 0 || port > 65535) throw new Error(`bad OP_PORT ${process.env.OP_PORT}`);
server.listen(port, '127.0.0.1', () => {
  issuer = `http://127.0.0.1:${server.address().port}`;
  current = makeProvider().callback();
  log('clients', clients.map((c) => c.client_id).join(', '), '| users', Object.keys(users).join(', '),
    '| claims in ID token', claimsInIdToken, '| ttl', JSON.stringify(ttl));
  process.stdout.write(`READY ${issuer}\n`);
});
