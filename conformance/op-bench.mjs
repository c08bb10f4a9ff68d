// npm oidc-provider (the certified Node.js OP) configured like Lanyard's token service,
// for the side-by-side figures of benches/tokens.rs: ES256 JWT access tokens (300 s),
// client_secret_basic, client_credentials and introspection. Loopback only.
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
const provider = new Provider(issuer, {
  jwks: { keys },
  clients: [{
    client_id: 'svc', client_secret: secret, grant_types: ['client_credentials'], redirect_uris: [],
    response_types: [], token_endpoint_auth_method: 'client_secret_basic', scope: 'api',
  }],
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
http.createServer(provider.callback()).listen(port, '127.0.0.1', () => console.log(`READY ${issuer}`));
