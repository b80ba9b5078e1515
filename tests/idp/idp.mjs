// Test OpenID provider for the tokd end-to-end tests: panva's oidc-provider on
// http://127.0.0.1:<ephemeral port>, in-memory storage, short-lived access tokens, rotating
// refresh tokens with reuse detection, and test-only control routes under /test/.
//
// Login flows without a human:
// - Authorization code (+ PKCE): every interaction (/interaction/<uid>) is finished at once
//   for the account "alice", logging her in and consenting to everything requested (or, with
//   {"interaction": "deny"} in /test/config, answering access_denied). A plain
//   redirect-following HTTP client that keeps cookies ends at the client's redirect_uri.
// - Device authorization grant: /test/approve-device and /test/deny-device act as the user
//   entering the user code. The device authorization response carries "interval" (1 s by
//   default, see device_interval), which oidc-provider itself never sends.
//
// stdout carries exactly one line, the readiness signal:
//   {"ready":true,"issuer":"http://127.0.0.1:PORT"}
// Everything else goes to stderr. The process exits on SIGTERM/SIGINT and when stdin closes,
// so it never outlives the test process that spawned it.

import { generateKeyPairSync } from 'node:crypto';
import * as http from 'node:http';
import * as querystring from 'node:querystring';

import Provider from 'oidc-provider';

// oidc-provider prints notices with console.info (stdout); stdout is reserved for the
// readiness line.
console.log = console.error;
console.info = console.error;
console.debug = console.error;

const log = (...args) => console.error('[idp]', ...args);

// ---------------------------------------------------------------------------------------
// Runtime-adjustable test configuration.

const config = {
  access_ttl: 10, // seconds, for access tokens issued from now on
  token_delay_ms: 0, // artificial delay before the token endpoint handles a request
  openid_configuration: true, // false: /.well-known/openid-configuration answers 404
  device_interval: 1, // "interval" of device authorization responses; 0: omitted (RFC 8628: 5 s)
  device_slow_down: 0, // the next n device_code token requests answer slow_down
  interaction: 'approve', // 'approve' | 'deny': how interactions are finished
  // OpenID Connect Core §11, enforced by oidc-provider: an authorization request's
  // offline_access scope is dropped (no refresh token) unless it carries prompt=consent.
  // false: a request asking for offline_access without any prompt gets prompt=consent added.
  offline_access_needs_consent_prompt: true,
};

const zeroStats = () => ({
  token_requests: 0,
  refresh_requests: 0,
  client_credentials_requests: 0,
  device_code_requests: 0,
  failed_requests: 0,
  in_flight: 0,
  max_in_flight: 0,
});
let stats = zeroStats();

const REFRESH_TTL = 24 * 60 * 60;
const SECRET = 'tokd-test-secret';
const SCOPE = 'openid offline_access api';
const REDIRECT_URIS = ['http://127.0.0.1/callback'];
const DEVICE_CODE = 'urn:ietf:params:oauth:grant-type:device_code';
const AUTO_ACCOUNT = 'alice'; // the account that interactions log in
const INTERACTION_VALUES = ['approve', 'deny'];
// The endpoints that authenticate clients (oidc-provider's default routes).
const CLIENT_AUTH_PATHS = new Set(['/token', '/device/auth', '/token/revocation', '/token/introspection']);

// ---------------------------------------------------------------------------------------
// Storage: a plain in-memory adapter without the size-bounded LRU of oidc-provider's default
// adapter (which holds 1000 entries), so long tests never see tokens evicted.

const nowEpoch = () => Math.floor(Date.now() / 1000);
const stores = new Map(); // model name -> Map(id -> { payload, expiresAt })
const byGrant = new Map(); // `${model}\0${grantId}` -> Set(id)
const byUserCode = new Map(); // userCode -> id (DeviceCode)
const byUid = new Map(); // uid -> id (Session)

// Every credential handed out since start, rotated and revoked ones included, for the tests
// that prove none of them leaks (GET /test/issued). Opaque tokens and codes are their own
// adapter ids; ID tokens (JWTs, never stored) are taken from the answers that carry them.
const issued = new Set();
const ISSUED_MODELS = new Set([
  'AccessToken', 'RefreshToken', 'ClientCredentials', 'DeviceCode', 'AuthorizationCode',
]);
const ISSUED_FIELDS = ['access_token', 'refresh_token', 'id_token', 'device_code'];
function recordIssued(body) {
  if (body === null || typeof body !== 'object') return;
  for (const field of ISSUED_FIELDS) {
    if (typeof body[field] === 'string' && body[field]) issued.add(body[field]);
  }
}

class TestAdapter {
  constructor(name) {
    this.name = name;
    if (!stores.has(name)) stores.set(name, new Map());
    this.store = stores.get(name);
  }

  #get(id) {
    const entry = this.store.get(id);
    if (!entry) return undefined;
    if (entry.expiresAt <= Date.now()) {
      this.store.delete(id);
      return undefined;
    }
    return entry.payload;
  }

  async upsert(id, payload, expiresIn) {
    const expiresAt = typeof expiresIn === 'number' ? Date.now() + expiresIn * 1000 : Infinity;
    this.store.set(id, { payload, expiresAt });
    if (ISSUED_MODELS.has(this.name)) issued.add(id);
    if (payload.grantId) {
      const key = `${this.name}\0${payload.grantId}`;
      if (!byGrant.has(key)) byGrant.set(key, new Set());
      byGrant.get(key).add(id);
    }
    if (payload.userCode) byUserCode.set(payload.userCode, id);
    if (this.name === 'Session' && payload.uid) byUid.set(payload.uid, id);
  }

  async find(id) {
    return this.#get(id);
  }

  async findByUserCode(userCode) {
    const id = byUserCode.get(userCode);
    return id === undefined ? undefined : this.#get(id);
  }

  async findByUid(uid) {
    const id = byUid.get(uid);
    return id === undefined ? undefined : this.#get(id);
  }

  async consume(id) {
    const payload = this.#get(id);
    if (payload) payload.consumed = nowEpoch();
  }

  async destroy(id) {
    this.store.delete(id);
  }

  async revokeByGrantId(grantId) {
    const key = `${this.name}\0${grantId}`;
    for (const id of byGrant.get(key) ?? []) this.store.delete(id);
    byGrant.delete(key);
  }
}

// ---------------------------------------------------------------------------------------
// Provider configuration.

// Native clients (RFC 8252): the registered redirect_uri http://127.0.0.1/callback matches
// http://127.0.0.1:<any port>/callback (§7.3; oidc-provider ignores the port of loopback
// redirect URIs for native clients only). Native clients also always get a consent prompt,
// which the automatic interaction answers.
function clientMetadata(clientId, authMethod) {
  const grantTypes = ['refresh_token', 'authorization_code', DEVICE_CODE];
  if (authMethod !== 'none') grantTypes.push('client_credentials');
  const metadata = {
    client_id: clientId,
    application_type: 'native',
    token_endpoint_auth_method: authMethod,
    grant_types: grantTypes,
    response_types: ['code'],
    redirect_uris: REDIRECT_URIS,
    scope: SCOPE,
    id_token_signed_response_alg: 'ES256',
  };
  if (authMethod !== 'none') metadata.client_secret = SECRET;
  return metadata;
}

// EC P-256: generated in microseconds (an RSA key's prime search can take seconds on a
// loaded machine, and the harness waits for this process to be ready).
function signingKey() {
  const { privateKey } = generateKeyPairSync('ec', { namedCurve: 'P-256' });
  return { ...privateKey.export({ format: 'jwk' }), kid: 'tokd-test-es256', alg: 'ES256', use: 'sig' };
}

const providerConfig = {
  adapter: TestAdapter,
  clients: [
    clientMetadata('tokd-test', 'client_secret_basic'),
    clientMetadata('tokd-post', 'client_secret_post'),
    clientMetadata('tokd-public', 'none'),
  ],
  jwks: { keys: [signingKey()] },
  cookies: { keys: ['tokd-test-cookie-key'] },
  scopes: SCOPE.split(' '),
  claims: { openid: ['sub'] },
  async findAccount(_ctx, sub) {
    return {
      accountId: sub,
      async claims() {
        return { sub };
      },
    };
  },
  features: {
    devInteractions: { enabled: false },
    introspection: { enabled: true },
    revocation: { enabled: true },
    clientCredentials: { enabled: true },
    deviceFlow: { enabled: true },
  },
  // A refresh token is issued when the client may use the refresh_token grant and
  // offline_access was granted. (The refresh_token grant itself always answers with a
  // rotated refresh token, see rotateRefreshToken.)
  async issueRefreshToken(_ctx, client, code) {
    return client.grantTypeAllowed('refresh_token') && code.scopes.has('offline_access');
  },
  // Every refresh rotates; presenting an already-rotated token revokes the whole grant.
  rotateRefreshToken: true,
  ttl: {
    AccessToken: () => config.access_ttl,
    ClientCredentials: () => config.access_ttl,
    RefreshToken: () => REFRESH_TTL,
    Grant: () => REFRESH_TTL,
    IdToken: () => 60 * 60,
    AuthorizationCode: () => 60,
    DeviceCode: () => 10 * 60,
    Interaction: () => 60 * 60,
    Session: () => REFRESH_TTL,
  },
};

// ---------------------------------------------------------------------------------------
// Test-only control routes.

class HttpError extends Error {
  constructor(status, message) {
    super(message);
    this.status = status;
  }
}

async function readRaw(req) {
  const chunks = [];
  for await (const chunk of req) chunks.push(chunk);
  return Buffer.concat(chunks).toString('utf8');
}

async function readJson(req) {
  const text = await readRaw(req);
  if (!text.trim()) return {};
  try {
    const body = JSON.parse(text);
    if (body === null || typeof body !== 'object' || Array.isArray(body)) {
      throw new Error('not an object');
    }
    return body;
  } catch (err) {
    throw new HttpError(400, `request body must be a JSON object: ${err.message}`);
  }
}

function requireString(body, field) {
  const value = body[field];
  if (typeof value !== 'string' || value === '') {
    throw new HttpError(400, `"${field}" must be a non-empty string`);
  }
  return value;
}

function optionalNonNegativeInt(body, field) {
  const value = body[field];
  if (value === undefined) return undefined;
  if (!Number.isInteger(value) || value < 0) {
    throw new HttpError(400, `"${field}" must be a non-negative integer`);
  }
  return value;
}

// Finds a token of any kind by value; undefined when unknown, expired or revoked.
async function findToken(provider, value) {
  for (const Model of [provider.AccessToken, provider.RefreshToken, provider.ClientCredentials]) {
    const token = await Model.find(value);
    if (token) return token;
  }
  return undefined;
}

// Mirrors the introspection endpoint: valid (unexpired, unconsumed) and its grant alive.
async function isActive(provider, value) {
  const token = await findToken(provider, value);
  if (!token?.isValid) return false;
  if (token.grantId) {
    const grant = await provider.Grant.find(token.grantId);
    if (!grant || grant.clientId !== token.clientId || grant.accountId !== token.accountId) {
      return false;
    }
  }
  return true;
}

// Creates a Grant, an AccessToken, a RefreshToken (when the scope holds offline_access) and
// an ID Token (when it holds openid), as an authorization_code exchange would have.
async function mintGrant(provider, body) {
  const clientId = requireString(body, 'client_id');
  const scope = typeof body.scope === 'string' ? body.scope : SCOPE;
  const sub = typeof body.sub === 'string' && body.sub ? body.sub : 'alice';
  const client = await provider.Client.find(clientId);
  if (!client) throw new HttpError(400, `unknown client ${clientId}`);
  const scopes = new Set(scope.split(' ').filter(Boolean));
  for (const s of scopes) {
    if (!SCOPE.split(' ').includes(s)) throw new HttpError(400, `unknown scope ${s}`);
  }
  const scopeText = [...scopes].join(' ');

  const grant = new provider.Grant({ accountId: sub, clientId });
  grant.addOIDCScope(scopeText);
  const grantId = await grant.save();

  const common = {
    accountId: sub,
    client,
    grantId,
    gty: 'authorization_code',
    expiresWithSession: false,
    scope: scopeText,
  };
  const at = new provider.AccessToken(common);
  const accessToken = await at.save();
  const response = {
    access_token: accessToken,
    token_type: 'Bearer',
    expires_in: at.expiration,
    scope: scopeText,
  };

  if (client.grantTypeAllowed('refresh_token') && scopes.has('offline_access')) {
    const rt = new provider.RefreshToken({ ...common, rotations: 0 });
    response.refresh_token = await rt.save();
  }

  if (scopes.has('openid')) {
    const idToken = new provider.IdToken({ sub }, { client });
    idToken.scope = 'openid';
    idToken.set('at_hash', accessToken);
    response.id_token = await idToken.issue({ use: 'idtoken' });
  }

  recordIssued(response);
  return response;
}

async function revokeGrant(provider, body) {
  const value = requireString(body, 'refresh_token');
  const rt = await provider.RefreshToken.find(value, { ignoreExpiration: true });
  if (!rt?.grantId) throw new HttpError(404, 'refresh token not found');
  await Promise.all([
    provider.AccessToken.adapter.revokeByGrantId(rt.grantId),
    provider.RefreshToken.adapter.revokeByGrantId(rt.grantId),
    provider.Grant.adapter.destroy(rt.grantId),
  ]);
  return { revoked: true };
}

// oidc-provider's user code normalisation (helpers/user_codes.js): upper case, no separators.
const normalizeUserCode = (input) => input.toUpperCase().replace(/\W/g, '');

// The pending device code behind body.user_code.
async function pendingDeviceCode(provider, body) {
  const userCode = requireString(body, 'user_code');
  const code = await provider.DeviceCode.findByUserCode(normalizeUserCode(userCode), {
    ignoreExpiration: true,
  });
  if (!code) throw new HttpError(404, `no device code with user code ${userCode}`);
  if (code.isExpired) throw new HttpError(409, `the device code of ${userCode} has expired`);
  if (code.consumed) throw new HttpError(409, `the device code of ${userCode} was already used`);
  if (code.accountId || code.error) {
    throw new HttpError(409, `the device code of ${userCode} was already approved or denied`);
  }
  return code;
}

// What the user does at the verification URI: logs in, enters the user code, consents to all
// requested scopes. The next poll of the device code answers tokens.
async function approveDevice(provider, body) {
  const code = await pendingDeviceCode(provider, body);
  const sub = typeof body.sub === 'string' && body.sub ? body.sub : AUTO_ACCOUNT;
  const scope = code.params?.scope ?? '';
  const grant = new provider.Grant({ accountId: sub, clientId: code.clientId });
  if (scope) grant.addOIDCScope(scope);
  const grantId = await grant.save();
  Object.assign(code, {
    accountId: sub,
    authTime: nowEpoch(),
    grantId,
    scope: scope || undefined,
    expiresWithSession: false,
  });
  await code.save();
  log(`device code of ${body.user_code} approved for ${sub}: ${scope}`);
  return { approved: true, sub, scope };
}

// The user refuses at the verification URI: the next poll answers access_denied.
async function denyDevice(provider, body) {
  const code = await pendingDeviceCode(provider, body);
  Object.assign(code, { error: 'access_denied', errorDescription: 'the user denied the request' });
  await code.save();
  log(`device code of ${body.user_code} denied`);
  return { denied: true };
}

// Finishes an interaction (GET /interaction/<uid>) as the user would: logs in AUTO_ACCOUNT (or
// keeps the session's account) and consents to every requested scope and claim; with
// config.interaction 'deny' the user refuses. Redirects (303) to the authorization resume
// endpoint, which redirects to the client. Needs the interaction cookie oidc-provider set.
async function finishInteraction(provider, ctx) {
  let details;
  try {
    details = await provider.interactionDetails(ctx.req, ctx.res);
  } catch (err) {
    throw new HttpError(400, `no interaction to finish (cookies kept?): ${err.message}`);
  }
  const { prompt, params, session, grantId: existingGrantId } = details;
  let result;
  if (config.interaction === 'deny') {
    result = { error: 'access_denied', error_description: 'the user denied the request' };
  } else {
    const accountId = session?.accountId ?? AUTO_ACCOUNT;
    let grant = existingGrantId ? await provider.Grant.find(existingGrantId) : undefined;
    grant ??= new provider.Grant({ accountId, clientId: params.client_id });
    if (params.scope) grant.addOIDCScope(params.scope);
    const missing = prompt?.details ?? {};
    if (missing.missingOIDCScope) grant.addOIDCScope(missing.missingOIDCScope.join(' '));
    if (missing.missingOIDCClaims) grant.addOIDCClaims(missing.missingOIDCClaims);
    for (const [indicator, scopes] of Object.entries(missing.missingResourceScopes ?? {})) {
      grant.addResourceScope(indicator, scopes.join(' '));
    }
    const grantId = await grant.save();
    result = { login: { accountId }, consent: { grantId } };
  }
  const returnTo = await provider.interactionResult(ctx.req, ctx.res, result, {
    mergeWithLastSubmission: false,
  });
  log(`interaction ${details.uid} (${prompt?.name}) finished: ${config.interaction}`);
  ctx.status = 303;
  ctx.redirect(returnTo);
}

async function controlRoute(provider, ctx) {
  const route = `${ctx.method} ${ctx.path}`;
  switch (route) {
    case 'POST /test/grant':
      return mintGrant(provider, await readJson(ctx.req));
    case 'GET /test/stats':
      return stats;
    case 'GET /test/issued':
      return { tokens: [...issued] };
    case 'POST /test/stats/reset': {
      // Requests still running keep counting down in_flight.
      const inFlight = stats.in_flight;
      stats = zeroStats();
      stats.in_flight = inFlight;
      stats.max_in_flight = inFlight;
      return stats;
    }
    case 'GET /test/config':
      return config;
    case 'POST /test/config': {
      const body = await readJson(ctx.req);
      const accessTtl = optionalNonNegativeInt(body, 'access_ttl');
      const delay = optionalNonNegativeInt(body, 'token_delay_ms');
      if (accessTtl === 0) throw new HttpError(400, '"access_ttl" must be at least 1');
      const interval = optionalNonNegativeInt(body, 'device_interval');
      const slowDown = optionalNonNegativeInt(body, 'device_slow_down');
      if (body.openid_configuration !== undefined && typeof body.openid_configuration !== 'boolean') {
        throw new HttpError(400, '"openid_configuration" must be a boolean');
      }
      const strictOffline = body.offline_access_needs_consent_prompt;
      if (strictOffline !== undefined && typeof strictOffline !== 'boolean') {
        throw new HttpError(400, '"offline_access_needs_consent_prompt" must be a boolean');
      }
      if (body.interaction !== undefined && !INTERACTION_VALUES.includes(body.interaction)) {
        throw new HttpError(400, `"interaction" must be one of ${INTERACTION_VALUES.join(', ')}`);
      }
      if (accessTtl !== undefined) config.access_ttl = accessTtl;
      if (delay !== undefined) config.token_delay_ms = delay;
      if (body.openid_configuration !== undefined) {
        config.openid_configuration = body.openid_configuration;
      }
      if (interval !== undefined) config.device_interval = interval;
      if (slowDown !== undefined) config.device_slow_down = slowDown;
      if (body.interaction !== undefined) config.interaction = body.interaction;
      if (strictOffline !== undefined) config.offline_access_needs_consent_prompt = strictOffline;
      log('config', JSON.stringify(config));
      return config;
    }
    case 'POST /test/introspect': {
      const body = await readJson(ctx.req);
      return { active: await isActive(provider, requireString(body, 'token')) };
    }
    case 'POST /test/revoke-grant':
      return revokeGrant(provider, await readJson(ctx.req));
    case 'POST /test/approve-device':
      return approveDevice(provider, await readJson(ctx.req));
    case 'POST /test/deny-device':
      return denyDevice(provider, await readJson(ctx.req));
    default:
      throw new HttpError(404, `no test route ${route}`);
  }
}

// oidc-provider accepts client_secret_basic and client_secret_post interchangeably for a
// client registered with either. Real providers may not, so the test provider insists on the
// registered method: true when a secret arrives the other way.
async function authMethodMismatch(provider, ctx, form) {
  const header = ctx.get('authorization');
  let clientId;
  let presented;
  if (typeof form.client_secret === 'string' && !header) {
    presented = 'client_secret_post';
    clientId = form.client_id;
  } else if (/^basic /i.test(header) && form.client_secret === undefined) {
    presented = 'client_secret_basic';
    const decoded = Buffer.from(header.slice(6).trim(), 'base64').toString('utf8');
    const colon = decoded.indexOf(':');
    if (colon === -1) return false;
    try {
      clientId = decodeURIComponent(decoded.slice(0, colon).replace(/\+/g, ' '));
    } catch {
      return false;
    }
  } else {
    return false; // none, JWT assertions, or malformed: oidc-provider decides
  }
  if (typeof clientId !== 'string') return false;
  const client = await provider.Client.find(clientId);
  const registered = client?.clientAuthMethod;
  return (registered === 'client_secret_basic' || registered === 'client_secret_post')
    && registered !== presented;
}

function installMiddleware(provider) {
  provider.use(async (ctx, next) => {
    if (ctx.path.startsWith('/test/')) {
      try {
        ctx.body = await controlRoute(provider, ctx);
      } catch (err) {
        if (!(err instanceof HttpError)) log('control route failed:', err);
        ctx.status = err instanceof HttpError ? err.status : 500;
        ctx.body = { error: err.message };
      }
      return;
    }

    if (ctx.path === '/.well-known/openid-configuration' && !config.openid_configuration) {
      ctx.status = 404;
      ctx.body = { error: 'not_found', error_description: 'openid-configuration disabled by the test' };
      return;
    }
    if (ctx.path === '/.well-known/oauth-authorization-server') {
      // RFC 8414 metadata: the same document as OpenID discovery.
      ctx.path = '/.well-known/openid-configuration';
      await next();
      return;
    }

    if (ctx.method === 'GET' && ctx.path === '/auth' && !config.offline_access_needs_consent_prompt) {
      const { query } = ctx;
      if (query.prompt === undefined && typeof query.scope === 'string'
        && query.scope.split(' ').includes('offline_access')) {
        ctx.query = { ...query, prompt: 'consent' };
      }
    }

    if (ctx.method === 'GET' && /^\/interaction\/[^/]+$/.test(ctx.path)) {
      try {
        await finishInteraction(provider, ctx);
      } catch (err) {
        if (!(err instanceof HttpError)) log('interaction failed:', err);
        ctx.status = err instanceof HttpError ? err.status : 500;
        ctx.body = { error: err.message };
      }
      return;
    }

    if (ctx.method === 'POST' && CLIENT_AUTH_PATHS.has(ctx.path)) {
      const isToken = ctx.path === '/token';
      if (isToken) {
        stats.token_requests += 1;
        stats.in_flight += 1;
        stats.max_in_flight = Math.max(stats.max_in_flight, stats.in_flight);
      }
      let form = {};
      try {
        // Read the body here (oidc-provider then parses ctx.request.body) to see the grant
        // type and the client authentication.
        const raw = await readRaw(ctx.req);
        ctx.request.body = raw;
        if (ctx.is('application/x-www-form-urlencoded')) form = querystring.parse(raw);
        if (isToken && config.token_delay_ms > 0) {
          await new Promise((resolve) => {
            setTimeout(resolve, config.token_delay_ms);
          });
        }
        if (await authMethodMismatch(provider, ctx, form)) {
          ctx.status = 401;
          ctx.set('WWW-Authenticate', 'Basic realm="tokd-test-idp"');
          ctx.body = { error: 'invalid_client', error_description: 'client authentication failed' };
          log(`${ctx.path} error: invalid_client - authentication method differs from the registered one`);
          return;
        }
        if (isToken && form.grant_type === DEVICE_CODE && config.device_slow_down > 0) {
          config.device_slow_down -= 1;
          ctx.status = 400;
          ctx.set('Cache-Control', 'no-store');
          ctx.body = {
            error: 'slow_down',
            error_description: 'you are polling too quickly and should back off at a reasonable rate',
          };
          log(`token endpoint error: slow_down (test control, ${config.device_slow_down} more)`);
          return;
        }
        await next();
        recordIssued(ctx.body);
      } finally {
        if (isToken) {
          stats.in_flight -= 1;
          if (form.grant_type === 'refresh_token') stats.refresh_requests += 1;
          if (form.grant_type === 'client_credentials') stats.client_credentials_requests += 1;
          if (form.grant_type === DEVICE_CODE) stats.device_code_requests += 1;
          if (ctx.status >= 400) stats.failed_requests += 1;
        }
      }
      return;
    }

    await next();
  });

  // oidc-provider never sends RFC 8628's "interval" (clients then wait 5 s between polls).
  provider.on('device_authorization.success', (_ctx, body) => {
    if (config.device_interval > 0) body.interval = config.device_interval;
  });
  provider.on('device_authorization.error', (_ctx, err) => {
    log('device authorization error:', err.error, '-', err.error_detail ?? err.error_description);
  });
  provider.on('authorization.error', (_ctx, err) => {
    log('authorization error:', err.error, '-', err.error_detail ?? err.error_description);
  });
  provider.on('revocation.error', (_ctx, err) => {
    log('revocation error:', err.error, '-', err.error_detail ?? err.error_description);
  });
  provider.on('grant.error', (ctx, err) => {
    log('token endpoint error:', err.error, '-', err.error_detail ?? err.error_description);
  });
  provider.on('server_error', (ctx, err) => {
    log('server error:', err);
  });
}

// ---------------------------------------------------------------------------------------
// Startup and shutdown.

const server = http.createServer();

function shutdown(why) {
  log(`exiting: ${why}`);
  server.closeAllConnections?.();
  server.close();
  process.exit(0);
}

process.on('SIGTERM', () => shutdown('SIGTERM'));
process.on('SIGINT', () => shutdown('SIGINT'));
process.stdin.on('end', () => shutdown('stdin closed'));
process.stdin.on('close', () => shutdown('stdin closed'));
process.stdin.on('error', () => shutdown('stdin error'));
process.stdin.resume();

server.listen(0, '127.0.0.1', () => {
  const { port } = server.address();
  const issuer = `http://127.0.0.1:${port}`;
  const provider = new Provider(issuer, providerConfig);
  installMiddleware(provider);
  server.on('request', provider.callback());
  log(`listening on ${issuer}`);
  process.stdout.write(`${JSON.stringify({ ready: true, issuer })}\n`);
});
