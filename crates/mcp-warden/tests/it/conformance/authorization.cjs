// Preloaded into the conformance suite (`node --require`) by the authenticated runs of
// tests/it/conformance.rs: adds `Authorization: <WARDEN_CONFORMANCE_AUTHORIZATION>` to every
// HTTP request the suite sends to the gateway (`WARDEN_CONFORMANCE_AUTHORITY`, host:port).
//
// Why a preload: the suite's `server` command has no option or environment variable for
// request headers (0.2.0-alpha.12: --url, --scenario, --suite, --requirements,
// --expected-failures, --spec-version, --force, --timeout, --verbose, -o), and its scenarios
// use three HTTP clients: the SDK's StreamableHTTPClientTransport and plain `fetch` (Node's
// global fetch), `undici.request`, and `http.request` (the DNS-rebinding probe, which needs a
// forged Host). All three are covered here; nothing else about a request is changed, and a
// request that already carries an Authorization header keeps it.
'use strict';

const http = require('node:http');
const path = require('node:path');

const credential = process.env.WARDEN_CONFORMANCE_AUTHORIZATION;
const authority = process.env.WARDEN_CONFORMANCE_AUTHORITY;
if (!credential || !authority) {
  throw new Error('WARDEN_CONFORMANCE_AUTHORIZATION and WARDEN_CONFORMANCE_AUTHORITY must be set');
}
const [host, port] = [authority.slice(0, authority.lastIndexOf(':')), authority.slice(authority.lastIndexOf(':') + 1)];

/// Counts what was decorated, per client, written to WARDEN_CONFORMANCE_AUTH_LOG at exit so
/// the test can prove the preload was in effect.
const counts = { fetch: 0, undici: 0, http: 0 };
if (process.env.WARDEN_CONFORMANCE_AUTH_LOG) {
  const fs = require('node:fs');
  process.on('exit', () => {
    fs.appendFileSync(process.env.WARDEN_CONFORMANCE_AUTH_LOG, JSON.stringify(counts) + '\n');
  });
}

function isGateway(url) {
  try {
    const u = url instanceof URL ? url : new URL(String(url));
    return u.hostname === host && u.port === port;
  } catch {
    return false;
  }
}

// 1. Global fetch (the SDK transport and the suite's own fetch calls).
const originalFetch = globalThis.fetch;
globalThis.fetch = function fetch(input, init) {
  const url = typeof input === 'string' || input instanceof URL ? input : input && input.url;
  if (!isGateway(url)) {
    return originalFetch(input, init);
  }
  const headers = new Headers(
    (init && init.headers) || (input instanceof Request ? input.headers : undefined),
  );
  if (!headers.has('authorization')) {
    headers.set('authorization', credential);
  }
  counts.fetch += 1;
  return originalFetch(input, { ...(init || {}), headers });
};

// 2. undici.request: the suite imports it from the undici package next to it; the ESM import
//    of a CommonJS module reads `module.exports` when first imported, after this preload.
const modules = process.env.WARDEN_NPM_MODULES;
if (modules) {
  const undici = require(path.join(modules, 'undici'));
  const originalRequest = undici.request;
  undici.request = function request(url, options) {
    if (!isGateway(url)) {
      return originalRequest.call(this, url, options);
    }
    const opts = { ...(options || {}) };
    const headers = { ...(opts.headers || {}) };
    if (!Object.keys(headers).some((k) => k.toLowerCase() === 'authorization')) {
      headers.authorization = credential;
    }
    opts.headers = headers;
    counts.undici += 1;
    return originalRequest.call(this, url, opts);
  };
}

// 3. http.request (node:http is a singleton; the suite calls `http.request(options, cb)`).
const originalHttpRequest = http.request;
http.request = function request(...args) {
  const first = args[0];
  if (first && typeof first === 'object' && !(first instanceof URL)) {
    const samePort = String(first.port) === port;
    const sameHost = (first.hostname || first.host) === host;
    if (samePort && sameHost) {
      const headers = { ...(first.headers || {}) };
      if (!Object.keys(headers).some((k) => k.toLowerCase() === 'authorization')) {
        headers.authorization = credential;
      }
      args[0] = { ...first, headers };
      counts.http += 1;
    }
  }
  return originalHttpRequest.apply(this, args);
};
