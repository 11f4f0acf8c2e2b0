// Run as its own process (`node --import tsx own-keys.ts <express module>`): the own keys of a JSON
// route's request, headers, raw headers and response, answered by an app without guard() before
// any guard() was made in the process, then by one with guard(). Printed as JSON: [without, with],
// each for an ordinary request and one that asks for an event stream.
import { once } from 'node:events';
import type { AddressInfo } from 'node:net';
import type express5 from 'express';
import { guard } from '../../src/index';

// eslint-disable-next-line @typescript-eslint/no-require-imports
const express = require(process.argv[2] ?? 'express') as typeof express5;
const keysOf = (value: object): string[] => Reflect.ownKeys(value).map(String).sort();

function keysApp(guarded: boolean): express5.Express {
  const app = express();
  if (guarded) app.use(guard());
  app.get('/keys', (req, res) => {
    void req.headers; // Node builds it on first read, which guard() makes.
    // Read once the head is out, every wrapper having seen a header set both ways.
    res.setHeader('Content-Type', 'application/json');
    res.writeHead(200, { 'X-Head': 'given' });
    res.end(JSON.stringify({ req: keysOf(req), headers: keysOf(req.headers), raw: keysOf(req.rawHeaders), res: keysOf(res) }));
  });
  return app;
}

async function keysFrom(app: express5.Express): Promise<unknown[]> {
  const server = app.listen(0, '127.0.0.1');
  await once(server, 'listening');
  try {
    const url = `http://127.0.0.1:${(server.address() as AddressInfo).port}/keys`;
    const answers: unknown[] = [];
    for (const headers of [{}, { accept: 'text/event-stream' }] as Array<Record<string, string>>) answers.push(await (await fetch(url, { headers })).json());
    return answers;
  } finally {
    server.close();
    server.closeAllConnections();
  }
}

void (async () => {
  const without = await keysFrom(keysApp(false));
  console.log(JSON.stringify([without, await keysFrom(keysApp(true))]));
})();
