// A server process for bench/guard.ts: one Express app, listening on 127.0.0.1; argv[2] names it,
// argv[3] is the path of the package to guard it with. It sends its port to the runner over IPC and
// serves until killed. The runner runs it as plain CommonJS (transpiled), without the TypeScript
// loader.
import type { AddressInfo } from 'node:net';
import type * as SseGuard from '../src/index';

export type GuardApp = 'json' | 'json + guard()' | 'json + no-op middleware' | 'stream' | 'stream + compression() + guard()';

const EVENT = `data: ${'x'.repeat(50)}\n\n`;

async function main(): Promise<void> {
  const name = process.argv[2] as GuardApp;
  // sse-guard as users get it: the copy of dist/cjs that run.ts makes at the start of a run.
  const builtPackage = process.argv[3]!;
  const { default: express } = await import('express');
  const app = express();
  if (name === 'stream + compression() + guard()') app.use((await import('compression')).default());
  if (name.endsWith('guard()')) app.use(((await import(builtPackage)) as typeof SseGuard).guard());
  // What any middleware costs Express, in guard()'s place: the floor for guard()'s own figure.
  if (name === 'json + no-op middleware') app.use((_req, _res, next) => next());
  // A small JSON response: what most routes of an app are.
  app.get('/json', (_req, res) => void res.json({ id: 42, name: 'widget', tags: ['a', 'b'], ok: true }));
  // A hand-written stream as fast as backpressure allows: `?n=` events of 58 bytes, then the end.
  app.get('/stream', (req, res) => {
    res.writeHead(200, { 'Content-Type': 'text/event-stream', 'Cache-Control': 'no-cache' });
    const total = Number(req.query.n);
    let sent = 0;
    const pump = (): void => {
      while (sent < total) {
        sent++;
        if (!res.write(EVENT)) {
          res.once('drain', pump);
          return;
        }
      }
      res.end();
    };
    pump();
  });
  const server = app.listen(0, '127.0.0.1', () => process.send?.((server.address() as AddressInfo).port));
  // The runner reads this process's CPU time around each measurement; under callgrind it asks the
  // process to exit, which is when callgrind writes its counts.
  process.on('message', (message) => {
    if (message === 'exit') process.exit(0);
    const { user, system } = process.cpuUsage();
    process.send?.(user + system);
  });
}

void main();
