// Development OpenID provider for gatehouse tests and the demo.
// NOT for production: accepts any login/password and keeps everything in memory.
import { createServer } from 'node:http';
import { createServer as createHttpsServer } from 'node:https';
import { readFileSync } from 'node:fs';
import { createHash, generateKeyPairSync, randomUUID } from 'node:crypto';
import Provider, { errors } from 'oidc-provider';

const env = process.env;
const list = (value) => value.split(',').map((s) => s.trim()).filter(Boolean);

const port = Number(env.IDP_PORT || 9090);
const host = env.IDP_HOST || '127.0.0.1';
const issuer = env.IDP_ISSUER || `http://127.0.0.1:${port}`;
// Endpoints are served at the root, so an issuer with a path would advertise
// URLs nothing answers; refuse it rather than fail confusingly later.
if (new URL(issuer).pathname !== '/') {
  console.error(`IDP_ISSUER must be an origin without a path, got ${issuer}`);
  process.exit(2);
}
const clientId = env.IDP_CLIENT_ID || 'gatehouse';
const clientSecret = env.IDP_CLIENT_SECRET || 'gatehouse-dev-secret';
const redirectUris = list(env.IDP_REDIRECT_URIS
  || 'http://127.0.0.1:8080/redirect,http://gatehouse.test/redirect');
const postLogoutRedirectUris = list(env.IDP_POST_LOGOUT_REDIRECT_URIS
  || 'http://127.0.0.1:8080/,http://gatehouse.test/');
const accessTokenTtl = Number(env.IDP_ACCESS_TOKEN_TTL || 3600);

// IDP_FRESH_KEY=1: sign with a new RSA key (random kid) made at start instead of the built-in
// development key, so a restarted provider has rotated its keys (gatehouse's key-rotation test).
let jwks;
if (env.IDP_FRESH_KEY === '1') {
  const { privateKey } = generateKeyPairSync('rsa', { modulusLength: 2048 });
  jwks = { keys: [{ ...privateKey.export({ format: 'jwk' }), kid: randomUUID(), alg: 'RS256', use: 'sig' }] };
}

// Plain http redirect URIs (127.0.0.1 and the fake host gatehouse.test) are
// accepted as-is: oidc-provider only forces https for web clients using the
// implicit flow, and these clients are code-only.
const common = {
  redirect_uris: redirectUris,
  post_logout_redirect_uris: postLogoutRedirectUris,
  grant_types: ['authorization_code', 'refresh_token'],
  response_types: ['code'],
};

// API clients (gatehouse's BEARER__* tests): the client-credentials grant only, with JWT access
// tokens (RFC 9068) for a resource indicator (RFC 8707). Without a `resource` parameter the
// token is for `urn:gatehouse:api`, whose audience is gatehouse's client id (BEARER__AUDIENCES'
// default). The other resources exist to get real, properly signed tokens that must be refused:
// another audience, already expired, or naming another issuer.
const apiClientId = 'gatehouse-api';
const apiGroups = list(env.IDP_API_GROUPS || 'api-clients');
const apiResource = 'urn:gatehouse:api';
// `gatehouse login`'s native client (below) gets JWT access tokens too, for gatehouse itself
// as a resource server (the README's `curl -H "Authorization: Bearer $(gatehouse token)"`
// through a gate with BEARER__ENABLED and BEARER__AUDIENCES set to this audience). They carry
// the user's groups and email, as Keycloak's do.
const cliClientId = 'gatehouse-cli';
const cliResource = env.IDP_CLI_AUDIENCE || 'http://gatehouse.test';
const resources = new Map([
  [apiResource, { audience: clientId }],
  [cliResource, { audience: cliResource }],
  ['urn:gatehouse:other-api', { audience: 'other-api' }],
  ['urn:gatehouse:expired', { audience: clientId, expired: true }],
  ['urn:gatehouse:wrong-issuer', { audience: clientId, issuer: 'https://issuer.invalid' }],
]);

const defaultResources = new Map([[apiClientId, apiResource], [cliClientId, cliResource]]);

const clients = [
  { ...common, client_id: clientId, client_secret: clientSecret, token_endpoint_auth_method: 'client_secret_basic' },
  { ...common, client_id: 'gatehouse-post', client_secret: clientSecret, token_endpoint_auth_method: 'client_secret_post' },
  { ...common, client_id: 'gatehouse-public', token_endpoint_auth_method: 'none' },
  {
    client_id: apiClientId,
    client_secret: clientSecret,
    token_endpoint_auth_method: 'client_secret_basic',
    grant_types: ['client_credentials'],
    response_types: [],
    redirect_uris: [],
  },
  // `gatehouse login` (RFC 8252): a public, native client with a loopback redirect URI, which
  // matches on any port (7.3; oidc-provider does that for native clients by itself).
  {
    client_id: cliClientId,
    application_type: 'native',
    token_endpoint_auth_method: 'none',
    redirect_uris: ['http://127.0.0.1/callback'],
    grant_types: ['authorization_code', 'refresh_token'],
    response_types: ['code'],
  },
];

// RFC 7638 thumbprint of a public JWK: SHA-256 over its required members in lexicographic
// order. Computed here independently of gatehouse, whose default `kid` must match it.
const thumbprint = (jwk) => {
  const members = jwk.kty === 'RSA' ? ['e', 'kty', 'n'] : ['crv', 'kty', 'x', 'y'];
  const canonical = JSON.stringify(Object.fromEntries(members.map((m) => [m, jwk[m]])));
  return createHash('sha256').update(canonical).digest('base64url');
};

// IDP_JWT_CLIENT_JWKS: a JWK Set of public keys; registers the client `gatehouse-jwt`, which
// authenticates with private_key_jwt (RFC 7523) signed by one of them. A key without `kid`
// gets its RFC 7638 thumbprint.
if (env.IDP_JWT_CLIENT_JWKS) {
  const { keys } = JSON.parse(env.IDP_JWT_CLIENT_JWKS);
  clients.push({
    ...common,
    client_id: 'gatehouse-jwt',
    token_endpoint_auth_method: 'private_key_jwt',
    jwks: { keys: keys.map((k) => ({ ...k, kid: k.kid ?? thumbprint(k) })) },
  });
}

// OpenID Connect Back-Channel Logout 1.0: when a user's session at the provider ends
// (end_session, e.g. RP-initiated logout), the provider POSTs a signed `logout_token` (with the
// session's `sid`) to this client's backchannel_logout_uri, IDP_BACKCHANNEL_URI. Its ID tokens
// carry `sid` too. A client of its own, so the others behave as before.
const backchannelUri = env.IDP_BACKCHANNEL_URI || 'http://127.0.0.1:8080/backchannel-logout';
clients.push({
  ...common,
  client_id: 'gatehouse-bcl',
  client_secret: clientSecret,
  token_endpoint_auth_method: 'client_secret_basic',
  backchannel_logout_uri: backchannelUri,
  backchannel_logout_session_required: true,
});

// Any login name is a valid account. oidc-provider always uses the accountId
// as `sub`, so a login typed as an e-mail address is turned into the accountId
// "<local part>" (see interactionFinished below) and the typed login is kept
// here to answer the email / preferred_username claims later.
const loginsBySub = new Map();

function subFor(login) {
  const at = login.indexOf('@');
  if (at <= 0) return login;
  const sub = login.slice(0, at);
  loginsBySub.set(sub, login);
  return sub;
}

function accountFor(sub) {
  const login = loginsBySub.get(sub) ?? sub;
  const email = login.includes('@') ? login : `${login}@example.com`;
  const name = sub
    .split(/[._-]+/)
    .filter(Boolean)
    .map((w) => w[0].toUpperCase() + w.slice(1))
    .join(' ') || sub;
  // Groups and flags ride on the login's local part: `ann+admins+staff` is in the groups
  // `admins` and `staff`; the word `unverified` instead marks the email as not verified, and
  // `accented` gives a non-ASCII name. The groups are also served as Keycloak's
  // `realm_access.roles`, for dotted-path claim settings.
  const [, ...tags] = sub.split('+');
  const flags = new Set(['unverified', 'accented']);
  const groups = tags.filter((t) => t && !flags.has(t));
  return {
    accountId: sub,
    async claims() {
      return {
        sub,
        email,
        email_verified: !tags.includes('unverified'),
        name: tags.includes('accented') ? `Zoë ${name}` : name,
        preferred_username: login,
        groups,
        realm_access: { roles: groups },
      };
    },
  };
}

const provider = new Provider(issuer, {
  clients,
  findAccount: (_ctx, id) => accountFor(id),
  claims: {
    acr: null,
    sid: null,
    auth_time: null,
    iss: null,
    openid: ['sub'],
    email: ['email', 'email_verified'],
    profile: ['name', 'preferred_username', 'groups', 'realm_access'],
  },
  // Put scope-granted claims into the ID token too, not only userinfo.
  conformIdTokenClaims: false,
  pkce: { required: () => true },
  // Always hand out a refresh token to clients allowed the grant, so tests
  // don't depend on offline_access (which oidc-provider silently drops
  // unless prompt=consent is also sent).
  issueRefreshToken: async (_ctx, client) => client.grantTypeAllowed('refresh_token'),
  features: {
    devInteractions: { enabled: true },
    revocation: { enabled: true },
    userinfo: { enabled: true },
    rpInitiatedLogout: { enabled: true },
    clientCredentials: { enabled: true },
    resourceIndicators: {
      enabled: true,
      // Only the API client and the native client get a resource by default: the other
      // clients' access tokens stay opaque (and usable at userinfo), as before.
      defaultResource: (_ctx, client, oneOf) => oneOf ?? defaultResources.get(client?.clientId),
      getResourceServerInfo: (_ctx, indicator) => {
        const resource = resources.get(indicator);
        if (!resource) throw new errors.InvalidTarget();
        return {
          scope: 'api',
          audience: resource.audience,
          accessTokenFormat: 'jwt',
          accessTokenTTL: accessTokenTtl,
          jwt: { sign: { alg: 'RS256' } },
        };
      },
      // With `openid` in the scope oidc-provider otherwise gives the code's access token to
      // userinfo (opaque) unless the token request names the resource again, which an
      // ordinary OAuth client (gatehouse login, any CLI) does not do.
      useGrantedResource: (ctx) => ctx.oidc.client?.clientId === cliClientId,
    },
    backchannelLogout: { enabled: true },
  },
  // An API client's tokens carry groups, as a user's ID token does; a user's JWT access token
  // (the native client's) carries the user's groups, email and name.
  extraTokenClaims: async (_ctx, token) => {
    if (token.kind === 'ClientCredentials') {
      return { groups: apiGroups, realm_access: { roles: apiGroups } };
    }
    if (token.kind === 'AccessToken' && token.resourceServer && token.accountId) {
      const {
        email, email_verified, preferred_username, groups, realm_access,
      } = await accountFor(token.accountId).claims();
      return {
        email, email_verified, preferred_username, groups, realm_access,
      };
    }
    return undefined;
  },
  formats: {
    customizers: {
      // Signed like any other token, but expired an hour ago, or naming another issuer.
      jwt: (_ctx, token, jwt) => {
        const resource = resources.get(token.resourceServer?.identifier());
        if (resource?.expired) {
          jwt.payload.iat -= 7200;
          jwt.payload.exp = jwt.payload.iat + 3600;
        }
        if (resource?.issuer) jwt.payload.iss = resource.issuer;
      },
    },
  },
  ttl: {
    AccessToken: accessTokenTtl,
    AuthorizationCode: 60,
    IdToken: 3600,
    RefreshToken: 14 * 24 * 3600,
    Interaction: 3600,
    Session: 14 * 24 * 3600,
    Grant: 14 * 24 * 3600,
  },
  cookies: { keys: ['gatehouse-dev-cookie-key-not-secret'] },
  // oidc-provider refuses outgoing requests to special-use addresses, loopback included (SSRF
  // protection): the back-channel logout call to a gatehouse on 127.0.0.1 would fail with
  // "fetch failed". This development provider drops that protection for IDP_BACKCHANNEL_URI only.
  fetch: (url, options) => {
    if (String(url) !== new URL(backchannelUri).href) return globalThis.fetch(url, options);
    const { dispatcher, ...rest } = options;
    return globalThis.fetch(url, rest);
  },
  ...(jwks ? { jwks } : {}),
});

// The dev login form stores the raw login as the session's accountId, and the
// session/grant accountIds must equal findAccount's accountId, so map it to
// the sub before the login result is stored.
const interactionFinished = provider.interactionFinished.bind(provider);
provider.interactionFinished = (req, res, result, options) => {
  if (result?.login?.accountId) result.login.accountId = subFor(result.login.accountId);
  return interactionFinished(req, res, result, options);
};

// RFC 8252 §7.3: for a loopback redirect URI the port is not part of the match, so a client
// registered with http://127.0.0.1/redirect (or http://127.0.0.1:8080/redirect) may use
// http://127.0.0.1:<any port>/redirect. oidc-provider does this only for
// application_type=native clients, which may register nothing but loopback and custom-scheme
// URIs (our clients also register http://gatehouse.test/redirect), so the same rule is applied
// here to every client, for redirect_uri and post_logout_redirect_uri alike. Host, path and
// query must still match exactly. IDP_LOOPBACK_ANY_PORT=0 restores exact matching.
const LOOPBACK = /^http:\/\/(127\.0\.0\.1|localhost|\[::1\])(?::[0-9]{1,5})?(?=[/?]|$)/;
const withoutLoopbackPort = (uri) => {
  const m = typeof uri === 'string' ? LOOPBACK.exec(uri) : null;
  return m ? `http://${m[1]}${uri.slice(m[0].length)}` : undefined;
};
const loopbackAllowed = (value, registered) => {
  if (registered.includes(value)) return true;
  const wanted = withoutLoopbackPort(value);
  return wanted !== undefined && registered.some((uri) => withoutLoopbackPort(uri) === wanted);
};
if (env.IDP_LOOPBACK_ANY_PORT !== '0') {
  const { prototype } = provider.Client;
  prototype.redirectUriAllowed = function redirectUriAllowed(value) {
    return loopbackAllowed(value, this.redirectUris);
  };
  prototype.postLogoutRedirectUriAllowed = function postLogoutRedirectUriAllowed(value) {
    return loopbackAllowed(value, this.postLogoutRedirectUris);
  };
}

provider.on('server_error', (_ctx, err) => console.error('idp server_error:', err));
provider.on('backchannel.error', (_ctx, err, client) => console.error(`idp backchannel.error (${client.clientId}): ${err.message}`));

// IDP_TLS_CERT and IDP_TLS_KEY (PEM files): serve https instead of http (set IDP_ISSUER to the
// https:// origin too), for gatehouse's private-CA tests.
const server = env.IDP_TLS_CERT
  ? createHttpsServer(
    { cert: readFileSync(env.IDP_TLS_CERT), key: readFileSync(env.IDP_TLS_KEY) },
    provider.callback(),
  )
  : createServer(provider.callback());
server.listen(port, host, () => {
  console.log(`idp listening on ${issuer}`);
});

// Test harnesses start the provider as a child and may die without cleaning up: with
// IDP_EXIT_WITH_STDIN=1 the provider exits as soon as its parent's end of stdin closes.
if (env.IDP_EXIT_WITH_STDIN === '1') {
  process.stdin.on('end', () => process.exit(0));
  process.stdin.on('close', () => process.exit(0));
  process.stdin.resume();
}

for (const signal of ['SIGTERM', 'SIGINT']) {
  process.on(signal, () => {
    server.close();
    process.exit(0);
  });
}
