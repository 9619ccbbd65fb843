// Development OpenID provider for gatehouse tests and the demo.
// NOT for production: accepts any login/password and keeps everything in memory.
import { createServer } from 'node:http';
import { generateKeyPairSync, randomUUID } from 'node:crypto';
import Provider from 'oidc-provider';

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

const clients = [
  { ...common, client_id: clientId, client_secret: clientSecret, token_endpoint_auth_method: 'client_secret_basic' },
  { ...common, client_id: 'gatehouse-post', client_secret: clientSecret, token_endpoint_auth_method: 'client_secret_post' },
  { ...common, client_id: 'gatehouse-public', token_endpoint_auth_method: 'none' },
];

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
    backchannelLogout: { enabled: true },
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

const server = createServer(provider.callback());
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
