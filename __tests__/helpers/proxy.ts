// Real proxies in front of a test server: each binary runs in the foreground as a child of the test,
// with its config, pid, logs and temp files in a temp folder, on free ports of 127.0.0.1.
import { execFileSync, spawn } from 'node:child_process';
import { createParser } from 'eventsource-parser';
import fs from 'node:fs';
import http from 'node:http';
import net from 'node:net';
import os from 'node:os';
import path from 'node:path';
import { performance } from 'node:perf_hooks';
import { listen, sleep } from './server';

const DOCS = path.join(__dirname, '..', '..', 'docs');

export interface ProxyProcess {
  ports: number[];
  /** The temp folder with the config; removed by stop(). */
  dir: string;
  stop(): Promise<void>;
}

export interface ProxySpec {
  /** For error messages and the temp folder's name. */
  name: string;
  binary: string;
  /** How many ports to reserve; the proxy must listen on all of them. */
  ports: number;
  /** Writes the config files into `dir` and returns the arguments to run the binary with. */
  setup(dir: string, ports: number[]): string[];
  /** The signal that stops the proxy at once, without waiting for open streams. Default SIGTERM. */
  stopSignal?: NodeJS.Signals;
  /** Extra environment; HOME and the XDG folders always point into the temp folder. */
  env?: Record<string, string>;
}

/** Free ports on 127.0.0.1, for a child process that cannot report which port it bound. */
export async function freePorts(count: number): Promise<number[]> {
  const servers = await Promise.all(Array.from({ length: count }, () => listen(() => {})));
  await Promise.all(servers.map((s) => s.close()));
  return servers.map((s) => s.port);
}

function canConnect(port: number): Promise<boolean> {
  return new Promise((resolve) => {
    const socket = net.connect({ host: '127.0.0.1', port }, () => {
      socket.destroy();
      resolve(true);
    });
    socket.on('error', () => resolve(false));
  });
}

/** Starts the proxy and resolves once every port accepts connections (within 10 s), or throws with its output. */
export async function startProxy(spec: ProxySpec): Promise<ProxyProcess> {
  const dir = fs.mkdtempSync(path.join(os.tmpdir(), `sse-guard-${spec.name}-`));
  // Run as root, varnishd and squid drop to their own user, which must still read the config.
  fs.chmodSync(dir, 0o755);
  const ports = await freePorts(spec.ports);
  const args = spec.setup(dir, ports);
  let output = '';
  // Some proxies (Caddy) save state under HOME or XDG folders: keep it in the temp folder too.
  const env = { ...process.env, HOME: dir, XDG_CONFIG_HOME: dir, XDG_DATA_HOME: dir, ...spec.env };
  const child = spawn(spec.binary, args, { cwd: dir, env, stdio: ['ignore', 'pipe', 'pipe'] });
  const collect = (chunk: Buffer): void => {
    // Bounded: a chatty proxy must not grow the test's memory.
    if (output.length < 20_000) output += chunk.toString();
  };
  child.stdout.on('data', collect);
  child.stderr.on('data', collect);
  const exited = new Promise<void>((resolve) => child.once('exit', () => resolve()));
  const stop = async (): Promise<void> => {
    if (child.exitCode === null && child.signalCode === null) {
      child.kill(spec.stopSignal ?? 'SIGTERM');
      const killer = setTimeout(() => child.kill('SIGKILL'), 3000);
      await exited;
      clearTimeout(killer);
    }
    fs.rmSync(dir, { recursive: true, force: true });
  };
  for (let attempt = 0; attempt < 100; attempt++) {
    if (child.exitCode !== null) break;
    if ((await Promise.all(ports.map(canConnect))).every(Boolean)) return { ports, dir, stop };
    await sleep(100);
  }
  const logs = fs
    .readdirSync(dir)
    .filter((f) => f.endsWith('.log'))
    .map((f) => fs.readFileSync(path.join(dir, f), 'utf8'))
    .join('\n');
  await stop();
  throw new Error(`${spec.name} did not start: ${output}${logs}`);
}

/**
 * A recipe from docs/, with the example addresses it uses replaced: the README shows the file as
 * users copy it, and the test runs that same file.
 */
export function recipe(file: string, replacements: Record<string, string | number>): string {
  let text = fs.readFileSync(path.join(DOCS, file), 'utf8');
  for (const [from, to] of Object.entries(replacements)) {
    if (!text.includes(from)) throw new Error(`docs/${file} no longer contains "${from}"`);
    text = text.split(from).join(String(to));
  }
  return text;
}

export const docsPath = (file: string): string => path.join(DOCS, file);

/** A self-signed certificate for 127.0.0.1 made with openssl in `dir`; returns the key and cert paths. */
export function selfSignedCert(dir: string): { key: string; cert: string } {
  const key = path.join(dir, 'key.pem');
  const cert = path.join(dir, 'cert.pem');
  execFileSync('openssl', ['req', '-x509', '-newkey', 'rsa:2048', '-nodes', '-keyout', key, '-out', cert, '-days', '2', '-subj', '/CN=127.0.0.1', '-addext', 'subjectAltName=IP:127.0.0.1'], {
    stdio: 'ignore',
  });
  return { key, cert };
}

/** nginx in the foreground as one process; `servers` gives the server blocks for the reserved ports. */
export function startNginx(binary: string, count: number, servers: (ports: number[], dir: string) => string): Promise<ProxyProcess> {
  return startProxy({
    name: 'nginx',
    binary,
    ports: count,
    setup(dir, ports) {
      const conf = path.join(dir, 'nginx.conf');
      const temp = (name: string): string => `${name}_temp_path "${path.join(dir, name)}";`;
      fs.writeFileSync(
        conf,
        `master_process off;
         pid "${path.join(dir, 'nginx.pid')}";
         error_log "${path.join(dir, 'error.log')}" warn;
         events { worker_connections 64; }
         http {
           access_log off;
           ${['client_body', 'proxy', 'fastcgi', 'uwsgi', 'scgi'].map(temp).join('\n')}
           ${servers(ports, dir)}
         }\n`,
      );
      return ['-p', dir, '-e', path.join(dir, 'error.log'), '-c', conf, '-g', 'daemon off;'];
    },
  });
}

/** Time to the first event of a GET that offers gzip, or undefined when none came within `timeoutMs`. */
export function firstEvent(target: string, timeoutMs: number): Promise<{ firstEventMs?: number; headers: http.IncomingHttpHeaders }> {
  return new Promise((resolve, reject) => {
    const start = performance.now();
    let headers: http.IncomingHttpHeaders = {};
    const done = (firstEventMs?: number): void => {
      clearTimeout(timer);
      req.destroy();
      resolve({ firstEventMs, headers });
    };
    const timer = setTimeout(done, timeoutMs);
    const parser = createParser({ onEvent: () => done(performance.now() - start) });
    const req = http.get(target, { headers: { accept: 'text/event-stream', 'accept-encoding': 'gzip' }, agent: false }, (res) => {
      headers = res.headers;
      res.setEncoding('utf8');
      res.on('data', (chunk: string) => parser.feed(chunk));
      res.on('error', () => {});
    });
    req.on('error', (error) => {
      clearTimeout(timer);
      reject(error);
    });
  });
}
