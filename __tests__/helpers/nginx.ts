// A real nginx as a foreground process with its own config in a temp folder, and a client that times
// the first event through it.
import { spawn } from 'node:child_process';
import { createParser } from 'eventsource-parser';
import fs from 'node:fs';
import http from 'node:http';
import net from 'node:net';
import os from 'node:os';
import path from 'node:path';
import { performance } from 'node:perf_hooks';
import { listen, sleep } from './server';

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

export interface Nginx {
  ports: number[];
  stop(): Promise<void>;
}

/** Free ports on 127.0.0.1, for a child process that cannot report which port it bound. */
async function freePorts(count: number): Promise<number[]> {
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

/** nginx in the foreground as one process, with its config, pid, logs and temp files in a temp folder. */
export async function startNginx(binary: string, servers: (ports: number[]) => string, portCount = 2): Promise<Nginx> {
  const dir = fs.mkdtempSync(path.join(os.tmpdir(), 'sse-guard-nginx-'));
  const ports = await freePorts(portCount);
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
       ${servers(ports)}
     }\n`,
  );
  let stderr = '';
  const child = spawn(binary, ['-p', dir, '-e', path.join(dir, 'error.log'), '-c', conf, '-g', 'daemon off;'], { stdio: ['ignore', 'ignore', 'pipe'] });
  child.stderr.on('data', (chunk: Buffer) => (stderr += chunk.toString()));
  const exited = new Promise<void>((resolve) => child.once('exit', () => resolve()));
  const stop = async (): Promise<void> => {
    if (child.exitCode === null && child.signalCode === null) {
      // SIGTERM is nginx's fast shutdown; SIGQUIT would wait for the open streams to end.
      child.kill('SIGTERM');
      const killer = setTimeout(() => child.kill('SIGKILL'), 3000);
      await exited;
      clearTimeout(killer);
    }
    fs.rmSync(dir, { recursive: true, force: true });
  };
  for (let attempt = 0; attempt < 50; attempt++) {
    if (child.exitCode !== null) break;
    if ((await Promise.all(ports.map(canConnect))).every(Boolean)) return { ports, stop };
    await sleep(100);
  }
  const log = fs.existsSync(path.join(dir, 'error.log')) ? fs.readFileSync(path.join(dir, 'error.log'), 'utf8') : '';
  await stop();
  throw new Error(`nginx did not start: ${stderr}${log}`);
}
