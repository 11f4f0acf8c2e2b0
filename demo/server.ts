// `npm start`: the demo on http://127.0.0.1:3000/ (PORT and HOST change it; REDIS_URL moves the chat to Redis).
import type { AddressInfo } from 'node:net';
import { shutdown } from '../src/index.js';
import { createDemoApp } from './app.js';

async function main(): Promise<void> {
  const port = Number(process.env.PORT || 3000);
  const host = process.env.HOST || '127.0.0.1';
  const redisUrl = process.env.REDIS_URL || undefined;
  const demo = await createDemoApp({ redisUrl, log: (line) => console.log(line) });

  const server = demo.app.listen(port, host, (error?: Error) => {
    if (error !== undefined) {
      console.error(`Cannot listen on ${host}:${port}: ${error.message}. Set PORT (and HOST) to use another address.`);
      process.exitCode = 1;
      void demo.close();
      return;
    }
    const shown = host.includes(':') ? `[${host}]` : host;
    const { port: listening } = server.address() as AddressInfo;
    console.log(`sse-guard demo: http://${shown}:${listening}/${redisUrl === undefined ? '' : ' (chat on Redis)'}`);
    console.log('Press Ctrl+C to stop.');
  });

  // Streams never end by themselves, so server.close() alone would wait forever: shutdown() closes
  // them first (and tells browsers to come back in 2 s). A second signal stops at once.
  const stop = (signal: NodeJS.Signals): void => {
    console.log(`${signal}: closing streams…`);
    shutdown({ retry: 2000, graceMs: 3000 })
      .then(() => demo.close())
      .then(() => server.close())
      .catch((error: unknown) => {
        console.error(error);
        process.exit(1);
      });
  };
  process.once('SIGINT', stop);
  process.once('SIGTERM', stop);
}

main().catch((error: unknown) => {
  console.error(error);
  process.exitCode = 1;
});
