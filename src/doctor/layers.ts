// `sse-guard doctor`: which proxies, CDNs and load balancers a response went through, by the headers
// they leave, each with what that product needs for an event stream.
import type { Sample } from './doctor.js';

export type Product = 'nginx' | 'Apache' | 'Caddy' | 'HAProxy' | 'Varnish' | 'Squid' | 'Envoy' | 'Cloudflare' | 'CloudFront' | 'AWS ALB';

export interface Layer {
  product: Product;
  /** The header that gave it away, as `name: value`. */
  evidence: string;
}

interface Fingerprint {
  product: Product;
  header: string;
  /** Matched against the header's value; any value when absent. */
  value?: RegExp;
}

// Order matters only for the report: the layer nearest the client (a CDN) first.
const FINGERPRINTS: Fingerprint[] = [
  { product: 'Cloudflare', header: 'cf-ray' },
  { product: 'Cloudflare', header: 'server', value: /^cloudflare/i },
  { product: 'CloudFront', header: 'x-amz-cf-id' },
  { product: 'CloudFront', header: 'via', value: /cloudfront/i },
  { product: 'AWS ALB', header: 'server', value: /^awselb/i },
  { product: 'Envoy', header: 'x-envoy-upstream-service-time' },
  { product: 'Envoy', header: 'server', value: /^envoy/i },
  { product: 'Varnish', header: 'x-varnish' },
  { product: 'Varnish', header: 'via', value: /varnish/i },
  { product: 'Squid', header: 'via', value: /squid/i },
  { product: 'Squid', header: 'x-cache', value: /from /i },
  { product: 'HAProxy', header: 'server', value: /haproxy/i },
  { product: 'Caddy', header: 'server', value: /^caddy/i },
  { product: 'Caddy', header: 'via', value: /caddy/i },
  { product: 'nginx', header: 'server', value: /nginx|openresty/i },
  { product: 'nginx', header: 'via', value: /nginx/i },
  { product: 'Apache', header: 'server', value: /^apache/i },
];

/** Every product whose fingerprint shows in the samples' headers, once each. */
export function layersOf(...samples: Array<Sample | undefined>): Layer[] {
  const found: Layer[] = [];
  for (const { product, header, value } of FINGERPRINTS) {
    if (found.some((l) => l.product === product)) continue;
    for (const s of samples) {
      const actual = s?.headers[header];
      if (actual !== undefined && (value === undefined || value.test(actual))) {
        found.push({ product, evidence: `${header}: ${actual}` });
        break;
      }
    }
  }
  return found;
}

/** Each product's idle limit (a stream quiet for longer is cut), as its documentation states the default. */
export const IDLE_LIMITS: Partial<Record<Product, { ms: number; what: string }>> = {
  nginx: { ms: 60_000, what: 'proxy_read_timeout (60 s)' },
  Apache: { ms: 60_000, what: 'ProxyTimeout (Timeout, 60 s)' },
  Varnish: { ms: 60_000, what: 'between_bytes_timeout (60 s)' },
  Cloudflare: { ms: 100_000, what: 'its proxy read timeout (100 s)' },
  CloudFront: { ms: 30_000, what: 'the origin response timeout (30 s)' },
  'AWS ALB': { ms: 60_000, what: 'the idle timeout (60 s)' },
  Envoy: { ms: 300_000, what: 'stream_idle_timeout (5 min)' },
};

/** What a product does to an event stream, and its fix, by the kind of trouble seen. */
export const ADVICE: Record<Product, { buffering?: string; compression?: string; headHeld?: string; cut?: string }> = {
  nginx: {
    buffering: 'nginx holds a proxied stream with its default proxy_http_version 1.0, or with gzip on: send `X-Accel-Buffering: no` (sse() does) or include docs/nginx.conf in the location.',
    compression: "nginx's gzip holds the stream: send `X-Accel-Buffering: no` from the upstream, or set `gzip off` in the stream's location.",
    headHeld: 'nginx over HTTP/2 sends the head only with the first body byte: write a line at connect (sse() writes ":" at once).',
    cut: 'nginx cuts a stream quiet for proxy_read_timeout (60 s by default): keep the heartbeat below it, or raise it (docs/nginx.conf).',
  },
  Apache: {
    compression:
      'Apache\'s mod_deflate compresses event streams despite Cache-Control: no-transform: exempt them with `SetEnvIfNoCase Accept "text/event-stream" no-gzip` (docs/apache.conf).',
    cut: 'mod_proxy cuts a backend quiet for ProxyTimeout (Timeout, 60 s by default): keep the heartbeat below it.',
  },
  Caddy: {
    compression: "Caddy's `encode` compresses the stream: route event-stream requests past it (docs/Caddyfile).",
    headHeld: "Caddy's `encode` holds the head until the first body byte: write a line at connect (sse() does), or route event-stream requests past `encode` (docs/Caddyfile).",
  },
  HAProxy: {
    buffering: 'HAProxy waits to fill packets unless `option http-no-delay` is set in the backend (docs/haproxy.cfg): the head comes ~200 ms late and events clump.',
    cut: 'HAProxy cuts a connection quiet for `timeout client` / `timeout server`: keep both above the heartbeat (docs/haproxy.cfg).',
  },
  Varnish: {
    cut: 'Varnish ends every delivery after send_timeout (600 s by default) even while events flow: `set sess.send_timeout` high for event streams in vcl_deliver (docs/varnish.vcl).',
  },
  Squid: { cut: 'Squid cuts a connection quiet for read_timeout (15 min by default).' },
  Envoy: {
    cut: "Envoy's route timeout (15 s by default) ends every response, events flowing or not: set `timeout: 0s` on the stream's route; stream_idle_timeout (5 min) cuts quiet streams.",
  },
  Cloudflare: { cut: 'Cloudflare cuts an origin quiet for 100 s (a 524): keep the heartbeat well below it.' },
  CloudFront: {
    cut: 'CloudFront cuts an origin quiet for its origin response timeout (30 s by default): keep the heartbeat below it (sse-guard: 15 s).',
  },
  'AWS ALB': { cut: 'An AWS load balancer cuts a connection idle for its idle timeout (60 s by default): keep the heartbeat below it.' },
};
