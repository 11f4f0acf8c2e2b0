// GraphQL over SSE through a real nginx with its defaults (HTTP/1.0 upstream, proxy_buffering on):
// graphql-sse 2 (its Express handler) and GraphQL Yoga 5, each read with graphql-sse's own client
// (Yoga speaks its distinct-connections mode). nginx holds the whole subscription until it ends,
// because neither sends X-Accel-Buffering; guard() adds it, in either mount order against compression().
import compression from 'compression';
import type { Express, RequestHandler } from 'express';
import type { GraphQLSchema } from 'graphql';
import { createClient } from 'graphql-sse';
import { createHandler } from 'graphql-sse/lib/use/express';
import { performance } from 'node:perf_hooks';
import { guard } from '../src/index';
import { describeWithBinary } from './helpers/binaries';
import { expressVersions } from './helpers/express';
import { schema, TICK_MS, TICKS } from './helpers/graphql';
import { startNginx, type ProxyProcess } from './helpers/proxy';
import { listen, type TestServer } from './helpers/server';

// Required, not imported: graphql-yoga's declarations bring in the DOM's types, whose ReadableStream
// would replace Node's for the whole type-check.
// eslint-disable-next-line @typescript-eslint/no-require-imports
const { createYoga } = require('graphql-yoga') as {
  createYoga(options: { schema: GraphQLSchema; graphqlEndpoint: string; logging: boolean }): RequestHandler & { graphqlEndpoint: string };
};

type Stack = 'guard() before compression()' | 'guard() after compression()' | 'compression() alone';
const STACKS: Stack[] = ['guard() before compression()', 'guard() after compression()', 'compression() alone'];

/** Subscribes with graphql-sse's own client; returns the ticks and when the first one arrived. */
async function subscribe(url: string): Promise<{ ticks: number[]; firstMs: number | undefined }> {
  const client = createClient({ url, retryAttempts: 0 });
  const started = performance.now();
  const ticks: number[] = [];
  let firstMs: number | undefined;
  try {
    for await (const result of client.iterate<{ tick: number }>({ query: 'subscription { tick }' })) {
      firstMs ??= performance.now() - started;
      ticks.push(result.data!.tick);
    }
  } finally {
    client.dispose();
  }
  return { ticks, firstMs };
}

interface Producer {
  path: string;
  mount(app: Express): void;
}
const PRODUCERS: Array<[string, Producer]> = [
  ['graphql-sse 2', { path: '/graphql/stream', mount: (app) => app.use('/graphql/stream', createHandler({ schema })) }],
  [
    'GraphQL Yoga 5',
    {
      path: '/graphql',
      mount: (app) => {
        const yoga = createYoga({ schema, graphqlEndpoint: '/graphql', logging: false });
        app.use(yoga.graphqlEndpoint, yoga);
      },
    },
  ],
];

describeWithBinary('nginx', 'GraphQL over SSE through nginx with its defaults', (binary) => {
  describe.each(PRODUCERS)('%s', (_producer, producer) => {
    describe.each(expressVersions)('%s', (_name, express) => {
      const upstreams = new Map<Stack, TestServer>();
      let nginx: ProxyProcess;

      beforeAll(async () => {
        for (const stack of STACKS) {
          const app: Express = express();
          if (stack === 'guard() before compression()') app.use(guard());
          app.use(compression());
          if (stack === 'guard() after compression()') app.use(guard());
          producer.mount(app);
          upstreams.set(stack, await listen(app));
        }
        // One nginx port per stack, each proxying to its app with nginx's defaults.
        nginx = await startNginx(binary, STACKS.length, (ports) =>
          STACKS.map((stack, i) => `server { listen 127.0.0.1:${ports[i]}; location / { proxy_pass http://127.0.0.1:${upstreams.get(stack)!.port}; } }`).join('\n'),
        );
      });
      afterAll(async () => {
        await nginx?.stop();
        await Promise.all([...upstreams.values()].map((s) => s.close()));
      });

      const urlOf = (stack: Stack): string => `http://127.0.0.1:${nginx.ports[STACKS.indexOf(stack)]}${producer.path}`;

      it.each(STACKS.slice(0, 2))('with %s, each tick arrives as it happens', async (stack) => {
        const result = await subscribe(urlOf(stack));
        expect(result.ticks).toEqual([1, 2, 3, 4, 5]);
        expect(result.firstMs).toBeLessThan(TICK_MS + 500);
      });

      it('control: without guard(), nginx holds every tick until the subscription ends', async () => {
        const result = await subscribe(urlOf('compression() alone'));
        expect(result.ticks).toEqual([1, 2, 3, 4, 5]);
        expect(result.firstMs).toBeGreaterThan(TICK_MS * (TICKS - 1));
      });
    });
  });
});
