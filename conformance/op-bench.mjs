// npm oidc-provider (the certified Node.js OP) configured like Lanyard's token service,
// for the side-by-side figures of benches/tokens.rs: ES256 JWT access tokens (300 s),
// client_secret_basic, client_credentials, introspection, and a native public client
// (PKCE S256, rotating refresh tokens, code 60 s, ES256 ID tokens) whose sign-in and
// consent are completed automatically for user `u` (no forms). Loopback only.
//   node op-bench.mjs PORT SECRET    prints "READY <issuer>"
import http from 'node:http';
import * as jose from 'jose';
import Provider from 'oidc-provider';

const [port, secret] = [Number(process.argv[2]), process.argv[3]];
const issuer = `http://127.0.0.1:${port}`;
const keys = [];
for (const alg of ['ES256', 'RS256']) {
  const { privateKey } = await jose.generateKeyPair(alg, { extractable: true });
  keys.push({ ...(await jose.exportJWK(privateKey)), alg, use: 'sig', kid: alg.toLowerCase() });
}
// oidc-provider's development MemoryAdapter is an LRU of 1000 entries: under load it
// evicts codes before they are exchanged. This adapter keeps everything in plain Maps
// (expiry is irrelevant for a benchmark run), like a store that does not forget.
const models = new Map();
const byUid = new Map();
const byUserCode = new Map();
const byGrant = new Map();
class MapAdapter {
  constructor(name) {
    if (!models.has(name)) models.set(name, new Map());
    this.m = models.get(name);
  }
  async upsert(id, payload) {
    this.m.set(id, payload);
    if (payload.uid) byUid.set(payload.uid, id);
    if (payload.userCode) byUserCode.set(payload.userCode, id);
    if (payload.grantId) {
      if (!byGrant.has(payload.grantId)) byGrant.set(payload.grantId, []);
      byGrant.get(payload.grantId).push([this.m, id]);
    }
  }
  async find(id) { return this.m.get(id); }
  async findByUid(uid) { return this.m.get(byUid.get(uid)); }
  async findByUserCode(code) { return this.m.get(byUserCode.get(code)); }
  async consume(id) { const p = this.m.get(id); if (p) p.consumed = Math.floor(Date.now() / 1000); }
  async destroy(id) { this.m.delete(id); }
  async revokeByGrantId(grantId) {
    for (const [m, id] of byGrant.get(grantId) ?? []) m.delete(id);
    byGrant.delete(grantId);
  }
}

const provider = new Provider(issuer, {
  adapter: MapAdapter,
  jwks: { keys },
  clients: [{
    client_id: 'svc', client_secret: secret, grant_types: ['client_credentials'], redirect_uris: [],
    response_types: [], token_endpoint_auth_method: 'client_secret_basic', scope: 'api',
  }, {
    client_id: 'app', application_type: 'native', token_endpoint_auth_method: 'none',
    redirect_uris: ['com.example.app://cb'], grant_types: ['authorization_code', 'refresh_token'],
    response_types: ['code'], id_token_signed_response_alg: 'ES256',
  }],
  findAccount: (ctx, id) => ({ accountId: id, claims: () => ({ sub: id, email: `${id}@bench.test`, email_verified: true }) }),
  interactions: { url: (ctx, interaction) => `/interaction/${interaction.uid}` },
  issueRefreshToken: async () => true,
  ttl: { AccessToken: 300, IdToken: 300, AuthorizationCode: 60, RefreshToken: 8 * 3600, Grant: 24 * 3600, Session: 12 * 3600, Interaction: 600 },
  scopes: ['api'],
  features: {
    devInteractions: { enabled: false },
    clientCredentials: { enabled: true },
    introspection: { enabled: true },
    resourceIndicators: {
      enabled: true,
      defaultResource: () => 'urn:api',
      useGrantedResource: () => true,
      // oidc-provider cannot introspect JWT access tokens ("Structured JWT Tokens cannot be
      // introspected"); resource urn:opaque issues opaque ones for the introspection figure.
      getResourceServerInfo: (ctx, indicator) => (indicator === 'urn:opaque'
        ? { scope: 'api', audience: 'urn:opaque', accessTokenTTL: 300, accessTokenFormat: 'opaque' }
        : { scope: 'api', audience: 'urn:api', accessTokenTTL: 300, accessTokenFormat: 'jwt', jwt: { sign: { alg: 'ES256' } } }),
    },
  },
});
// Sign-in and consent without forms: the user is `u`, and every requested scope is granted.
provider.use(async (ctx, next) => {
  if (!ctx.path.startsWith('/interaction/')) return next();
  const details = await provider.interactionDetails(ctx.req, ctx.res);
  let result;
  if (details.prompt.name === 'login') {
    result = { login: { accountId: 'u' } };
  } else {
    const grant = details.grantId ? await provider.Grant.find(details.grantId)
      : new provider.Grant({ accountId: details.session.accountId, clientId: details.params.client_id });
    const d = details.prompt.details;
    if (d.missingOIDCScope) grant.addOIDCScope(d.missingOIDCScope.join(' '));
    if (d.missingOIDCClaims) grant.addOIDCClaims(d.missingOIDCClaims);
    for (const [indicator, scopes] of Object.entries(d.missingResourceScopes ?? {})) grant.addResourceScope(indicator, scopes.join(' '));
    result = { consent: { grantId: await grant.save() } };
  }
  const redirectTo = await provider.interactionResult(ctx.req, ctx.res, result, { mergeWithLastSubmission: true });
  ctx.redirect(redirectTo);
});
http.createServer(provider.callback()).listen(port, '127.0.0.1', () => console.log(`READY ${issuer}`));
