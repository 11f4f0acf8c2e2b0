// `sse-guard doctor`, the connecting half: reaches the URL the way a browser would, through the
// proxy the environment names (CONNECT for https), over HTTP/2 when the server offers it by ALPN.
// Only node:http, node:https, node:tls and node:http2: the doctor has no dependency of its own.
import http from 'node:http';
import http2 from 'node:http2';
import type { Socket } from 'node:net';
import tls from 'node:tls';

export interface TransportOptions {
  /** A proxy URL; `false` for none; undefined to take it from HTTPS_PROXY / HTTP_PROXY and NO_PROXY. */
  proxy?: string | false;
  /** Accept a certificate that cannot be verified (self-signed, unknown CA). */
  insecure?: boolean;
  /** Speak HTTP/1.1 even when the server offers HTTP/2. */
  http1?: boolean;
}

/** The proxy to use and where it came from, for the report. */
export interface ProxyChoice {
  url: URL;
  source: string;
}

/** What the sampler needs of a response, whatever the protocol. */
export interface Response {
  status: number;
  statusText?: string;
  protocol: string;
  headers: Record<string, string>;
  body: NodeJS.ReadableStream;
}

export interface Handlers {
  /** A TCP connection was made (to the proxy, when there is one). */
  onConnect(remoteAddress: string | undefined): void;
  /** The protocol TLS negotiated by ALPN, known before any response. */
  onProtocol(protocol: string): void;
  onResponse(response: Response): void;
  onError(message: string, tls: boolean): void;
}

const TLS_ERROR = /CERT|SELF_SIGNED|UNABLE_TO_VERIFY|UNABLE_TO_GET_ISSUER|ERR_TLS|ERR_SSL/;

function env(name: string): string | undefined {
  const value = process.env[name] ?? process.env[name.toLowerCase()];
  return value === undefined || value.trim() === '' ? undefined : value.trim();
}

/** Whether NO_PROXY (curl's reading: `*`, or hosts and domain suffixes, with an optional port) exempts `target`. */
export function bypassesProxy(target: URL, noProxy: string | undefined): boolean {
  if (noProxy === undefined) return false;
  const host = target.hostname.replace(/^\[|\]$/g, '').toLowerCase();
  const port = target.port || (target.protocol === 'https:' ? '443' : '80');
  return noProxy
    .split(/[\s,]+/)
    .filter((entry) => entry !== '')
    .some((entry) => {
      if (entry === '*') return true;
      const match = /^(.*?)(?::(\d+))?$/.exec(entry.toLowerCase())!;
      const name = match[1]!.replace(/^\*?\.?/, '').replace(/^\[|\]$/g, '');
      if (match[2] !== undefined && match[2] !== port) return false;
      return host === name || host.endsWith(`.${name}`);
    });
}

/** The proxy for `target`: the explicit one, or the environment's (HTTPS_PROXY for https, HTTP_PROXY for http). */
export function chooseProxy(target: URL, explicit: string | false | undefined): ProxyChoice | undefined {
  if (explicit === false) return undefined;
  if (explicit !== undefined) return { url: new URL(explicit), source: '--proxy' };
  const name = target.protocol === 'https:' ? 'HTTPS_PROXY' : 'HTTP_PROXY';
  const value = env(name);
  if (value === undefined || bypassesProxy(target, env('NO_PROXY'))) return undefined;
  // curl and most tools accept a bare host:port in these variables.
  return { url: new URL(/^[a-z][a-z0-9+.-]*:\/\//i.test(value) ? value : `http://${value}`), source: name };
}

/** A URL as it may be shown: the password replaced. */
export function maskUrl(url: URL | string): string {
  // A text that does not parse is masked by its shape: anything between "://user:" and "@".
  if (!URL.canParse(String(url))) return String(url).replace(/(\/\/[^/@:]*:)[^/@]*@/, '$1****@');
  const copy = new URL(url);
  if (copy.password !== '') copy.password = '****';
  return copy.href;
}

// A URL keeps its credentials percent-encoded; a stray % (not an escape) is taken as written.
function decoded(part: string): string {
  try {
    return decodeURIComponent(part);
  } catch {
    return part;
  }
}

function proxyAuthorization(proxy: URL): Record<string, string> {
  if (proxy.username === '') return {};
  const credentials = `${decoded(proxy.username)}:${decoded(proxy.password)}`;
  return { 'proxy-authorization': `Basic ${Buffer.from(credentials).toString('base64')}` };
}

function flatten(headers: http.IncomingHttpHeaders | http2.IncomingHttpHeaders | NodeJS.Dict<string[]>): Record<string, string> {
  const flat: Record<string, string> = {};
  for (const [name, value] of Object.entries(headers)) {
    if (value !== undefined && !name.startsWith(':')) flat[name] = Array.isArray(value) ? value.join(', ') : String(value);
  }
  return flat;
}

const errorText = (err: NodeJS.ErrnoException): string => (err.code === undefined || err.message.includes(err.code) ? err.message : `${err.code}: ${err.message}`);

/**
 * Sends one GET for `target` with `headers` and reports through `handlers`; returns the function that
 * closes everything it opened. Never throws: every failure goes to `onError`.
 */
export function request(target: URL, headers: Record<string, string>, proxy: ProxyChoice | undefined, options: TransportOptions, handlers: Handlers): () => void {
  const opened: Array<{ destroy(): void }> = [];
  const close = (): void => opened.forEach((o) => o.destroy());
  const fail = (err: NodeJS.ErrnoException): void => handlers.onError(errorText(err), TLS_ERROR.test(`${err.code ?? ''} ${err.message}`));
  const watchSocket = (socket: Socket): void => {
    if (socket.connecting) socket.once('connect', () => handlers.onConnect(socket.remoteAddress));
    else handlers.onConnect(socket.remoteAddress);
  };

  // HTTP/1.x over `createConnection`'s socket (or a fresh one), the response handed on.
  const overHttp1 = (requestOptions: http.RequestOptions): void => {
    // A fresh connection of its own (agent: false), or the TLS socket given: Node uses createConnection only without an agent.
    const req = http.request({ ...requestOptions, headers, ...(requestOptions.createConnection === undefined ? { agent: false } : {}) });
    opened.push(req);
    req.on('socket', watchSocket);
    req.on('error', fail);
    req.on('response', (res) =>
      // Every value of a header sent more than once: Node's res.headers keeps only the first Content-Type.
      handlers.onResponse({ status: res.statusCode ?? 0, statusText: res.statusMessage, protocol: `HTTP/${res.httpVersion}`, headers: flatten(res.headersDistinct), body: res }),
    );
    req.end();
  };

  const overTls = (socket?: Socket): void => {
    const secure = tls.connect({
      ...(socket === undefined ? { host: target.hostname.replace(/^\[|\]$/g, ''), port: Number(target.port || 443) } : { socket }),
      servername: /^[\d.]+$|:/.test(target.hostname) ? undefined : target.hostname,
      ALPNProtocols: options.http1 ? ['http/1.1'] : ['h2', 'http/1.1'],
      rejectUnauthorized: !options.insecure,
    });
    opened.push(secure);
    if (socket === undefined) watchSocket(secure);
    secure.on('error', fail);
    secure.once('secureConnect', () => {
      secure.removeListener('error', fail);
      handlers.onProtocol(secure.alpnProtocol === 'h2' ? 'HTTP/2' : 'HTTP/1.1');
      if (secure.alpnProtocol !== 'h2') {
        overHttp1({ host: target.hostname, port: target.port || 443, path: `${target.pathname}${target.search}`, createConnection: () => secure });
        return;
      }
      const session = http2.connect(target.origin, { createConnection: () => secure });
      opened.push(session);
      session.on('error', fail);
      // Connection-specific headers are forbidden in HTTP/2; :authority replaces Host.
      const { connection: _connection, host: _host, ...h2headers } = headers;
      const stream = session.request({ ':path': `${target.pathname}${target.search}`, ...h2headers });
      stream.on('error', fail);
      stream.on('response', (head) =>
        handlers.onResponse({ status: Number(head[':status']), protocol: 'HTTP/2', headers: flatten(head), body: stream }),
      );
      stream.end();
    });
  };

  if (proxy !== undefined && proxy.url.protocol !== 'http:') {
    // HTTPS_PROXY may name an https:// proxy; speaking TLS to the proxy itself is not supported.
    // Reported after request() returns, as every other outcome is, so the caller has its close function.
    const message = `the proxy ${maskUrl(proxy.url)} (${proxy.source}) is not an http:// proxy, the only kind the doctor speaks to; set --proxy http://…`;
    queueMicrotask(() => handlers.onError(message, false));
    return close;
  }
  if (target.protocol === 'http:') {
    // Through a proxy, an http URL is asked of the proxy in absolute form.
    if (proxy === undefined) overHttp1({ host: target.hostname, port: target.port || 80, path: `${target.pathname}${target.search}` });
    else {
      Object.assign(headers, proxyAuthorization(proxy.url), { host: target.host });
      overHttp1({ host: proxy.url.hostname, port: proxy.url.port || 80, path: target.href.replace(/\/\/[^@/]*@/, '//') });
    }
    return close;
  }
  if (proxy === undefined) {
    overTls();
    return close;
  }
  // https through a proxy: a CONNECT tunnel, then TLS (and ALPN) end to end inside it.
  const connect = http.request({
    host: proxy.url.hostname,
    port: proxy.url.port || 80,
    method: 'CONNECT',
    path: `${target.hostname}:${target.port || 443}`,
    headers: { host: `${target.hostname}:${target.port || 443}`, ...proxyAuthorization(proxy.url) },
    agent: false,
  });
  opened.push(connect);
  connect.on('socket', watchSocket);
  connect.on('error', fail);
  connect.on('connect', (res, socket) => {
    opened.push(socket);
    if (res.statusCode !== 200) {
      handlers.onError(`the proxy ${maskUrl(proxy.url)} refused the tunnel: ${res.statusCode} ${res.statusMessage ?? ''}`.trimEnd(), false);
      return;
    }
    overTls(socket);
  });
  connect.end();
  return close;
}
