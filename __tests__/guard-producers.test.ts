// guard() with real producers and their own clients, behind compression() in both mount orders, each
// against a control without guard() that shows the failure: the AI SDK 6 UI message stream (a mock
// model from ai/test), http-proxy-middleware relaying a real upstream event stream, and the MCP SDK's
// streamable HTTP transport, which protects itself and must work exactly as before.
import { Client } from '@modelcontextprotocol/sdk/client/index.js';
import { StreamableHTTPClientTransport } from '@modelcontextprotocol/sdk/client/streamableHttp.js';
import { McpServer } from '@modelcontextprotocol/sdk/server/mcp.js';
import { StreamableHTTPServerTransport } from '@modelcontextprotocol/sdk/server/streamableHttp.js';
import { DefaultChatTransport, simulateReadableStream, streamText, type UIMessageChunk } from 'ai';
import { MockLanguageModelV3 } from 'ai/test';
import timeout from 'connect-timeout';
import { EventSource } from 'eventsource';
import type { RequestHandler } from 'express';
import { createProxyMiddleware } from 'http-proxy-middleware';
import { performance } from 'node:perf_hooks';
import * as z from 'zod';
import { expressVersions } from './helpers/express';
import { listen, type TestServer } from './helpers/server';
import { PROMPT_MS, STACKS, stacked, type Stack } from './helpers/stacks';
import { naiveSse } from './helpers/streams';

// ---- The AI SDK 6: streamText on a mock model, piped with pipeUIMessageStreamToResponse ----------
const TOKENS = ['Once ', 'upon ', 'a ', 'time ', 'there ', 'was ', 'a ', 'stream.'];
const TOKEN_DELAY = 150; // between the model's stream parts

function mockModel(): MockLanguageModelV3 {
  return new MockLanguageModelV3({
    doStream: async () => ({
      stream: simulateReadableStream({
        chunkDelayInMs: TOKEN_DELAY,
        chunks: [
          { type: 'stream-start', warnings: [] },
          { type: 'text-start', id: 't' },
          ...TOKENS.map((delta) => ({ type: 'text-delta' as const, id: 't', delta })),
          { type: 'text-end', id: 't' },
          {
            type: 'finish',
            finishReason: { unified: 'stop', raw: 'stop' },
            usage: {
              inputTokens: { total: 3, noCache: 3, cacheRead: undefined, cacheWrite: undefined },
              outputTokens: { total: 8, text: 8, reasoning: undefined },
            },
          },
        ],
      }),
    }),
  });
}

const chatRoute: RequestHandler = (_req, res) => {
  streamText({ model: mockModel(), prompt: 'Tell me a story' }).pipeUIMessageStreamToResponse(res);
};

/** Sends one message with the SDK's own client transport; returns the text and when its first delta came. */
async function chat(url: string): Promise<{ text: string; firstDeltaMs: number | undefined; totalMs: number }> {
  const started = performance.now();
  const transport = new DefaultChatTransport({ api: url });
  const stream = await transport.sendMessages({
    trigger: 'submit-message',
    chatId: 'chat-1',
    messageId: undefined,
    messages: [{ id: 'm1', role: 'user', parts: [{ type: 'text', text: 'Tell me a story' }] }],
    abortSignal: undefined,
  });
  let text = '';
  let firstDeltaMs: number | undefined;
  const reader = stream.getReader();
  for (;;) {
    const { done, value }: { done: boolean; value?: UIMessageChunk } = await reader.read();
    if (done) break;
    if (value?.type === 'text-delta') {
      firstDeltaMs ??= performance.now() - started;
      text += value.delta;
    }
  }
  return { text, firstDeltaMs, totalMs: performance.now() - started };
}

describe.each(expressVersions)('the AI SDK 6 UI message stream (%s)', (_name, express) => {
  describe.each(STACKS)('%s', (stack) => {
    let srv: TestServer;
    beforeAll(async () => {
      const app = stacked(express, stack);
      app.post('/chat', chatRoute);
      srv = await listen(app);
    });
    afterAll(() => srv.close());

    it(stack === 'compression() alone' ? 'control: the first token arrives only with the whole answer' : 'delivers each token as it is generated', async () => {
      const result = await chat(`${srv.url}/chat`);
      expect(result.text).toBe(TOKENS.join(''));
      // The model emits 11 parts 150 ms apart: the first token is ready after about 450 ms, the whole
      // answer after about 1650 ms. Held, the first token cannot arrive before the answer is complete.
      if (stack === 'compression() alone') expect(result.firstDeltaMs).toBeGreaterThan(TOKEN_DELAY * 9);
      else expect(result.firstDeltaMs).toBeLessThan(TOKEN_DELAY * 6);
    });
  });
});

// ---- http-proxy-middleware 3 relaying an upstream event stream -------------------------------------
/** Opens an EventSource (the eventsource package, over fetch) and reports the first message and any error status. */
function firstMessage(url: string, waitMs: number): Promise<{ ms?: number; data?: string; status?: number }> {
  return new Promise((resolve) => {
    const started = performance.now();
    const source = new EventSource(url);
    const done = (result: { ms?: number; data?: string; status?: number }): void => {
      clearTimeout(timer);
      source.close();
      resolve(result);
    };
    const timer = setTimeout(() => done({}), waitMs);
    source.onmessage = (event) => done({ ms: performance.now() - started, data: event.data });
    source.onerror = (event) => done({ status: (event as unknown as { code?: number }).code });
  });
}

describe.each(expressVersions)('http-proxy-middleware relaying an upstream event stream (%s)', (_name, express) => {
  let upstream: TestServer;
  const servers = new Map<Stack, TestServer>();

  beforeAll(async () => {
    const up = express();
    up.get('/events', naiveSse({ interval: 100 }));
    // An upstream whose first byte (and so the proxy's response head) comes after 600 ms.
    up.get('/slow', naiveSse({ interval: 100, delay: 600 }));
    upstream = await listen(up);
    for (const stack of STACKS) {
      // A request-timeout middleware at 250 ms, mounted first, as apps do.
      const app = stacked(express, stack, timeout('250ms'));
      app.use('/api', createProxyMiddleware({ target: upstream.url, changeOrigin: true }));
      servers.set(stack, await listen(app));
    }
  });
  afterAll(async () => {
    await Promise.all([...servers.values()].map((s) => s.close()));
    await upstream.close();
  });

  it.each(STACKS.slice(0, 2))('with %s, relays the first event at once', async (stack) => {
    const result = await firstMessage(`${servers.get(stack)!.url}/api/events`, 3000);
    expect(result.data).toBe('0');
    expect(result.ms).toBeLessThan(PROMPT_MS);
  });

  it('control: compression() alone holds the relayed stream', async () => {
    const result = await firstMessage(`${servers.get('compression() alone')!.url}/api/events`, 1500);
    expect(result.data).toBeUndefined();
  });

  it.each(STACKS.slice(0, 2))('with %s, an upstream slower than the timeout still gets through', async (stack) => {
    const result = await firstMessage(`${servers.get(stack)!.url}/api/slow`, 3000);
    expect(result.data).toBe('0');
  });

  it('control: without guard() the timeout answers 503 before the upstream does', async () => {
    const result = await firstMessage(`${servers.get('compression() alone')!.url}/api/slow`, 3000);
    expect(result.status).toBe(503);
  });
});

// ---- The MCP SDK's streamable HTTP transport: protects itself, must work exactly as before ------------
function mcpRoute(): RequestHandler {
  return async (req, res) => {
    // Stateless: one server and transport per request, closed with the response.
    const server = new McpServer({ name: 'ticks', version: '1.0.0' });
    server.registerTool('count', { inputSchema: { to: z.number() } }, async ({ to }, extra) => {
      const token = extra._meta?.progressToken;
      for (let n = 1; n <= to; n++) {
        await new Promise((resolve) => setTimeout(resolve, 150));
        if (token !== undefined) await extra.sendNotification({ method: 'notifications/progress', params: { progressToken: token, progress: n, total: to } });
      }
      return { content: [{ type: 'text', text: `counted to ${to}` }] };
    });
    const transport = new StreamableHTTPServerTransport({ sessionIdGenerator: undefined });
    res.on('close', () => {
      void transport.close();
      void server.close();
    });
    await server.connect(transport);
    await transport.handleRequest(req, res, req.body);
  };
}

describe.each(expressVersions)('the MCP SDK streamable HTTP transport (%s)', (_name, express) => {
  describe.each(STACKS)('%s', (stack) => {
    let srv: TestServer;
    beforeAll(async () => {
      const app = stacked(express, stack);
      app.post('/mcp', express.json(), mcpRoute());
      srv = await listen(app);
    });
    afterAll(() => srv.close());

    it('streams progress as it happens and returns the result, as without guard()', async () => {
      const client = new Client({ name: 'test', version: '1.0.0' });
      await client.connect(new StreamableHTTPClientTransport(new URL(`${srv.url}/mcp`)));
      try {
        const started = performance.now();
        const progress: number[] = [];
        const result = await client.callTool({ name: 'count', arguments: { to: 3 } }, undefined, {
          onprogress: () => progress.push(performance.now() - started),
        });
        const resultAt = performance.now() - started;
        expect(result.content).toEqual([{ type: 'text', text: 'counted to 3' }]);
        expect(progress).toHaveLength(3);
        // The first notification comes at 150 ms, 300 ms before the result; a stream held until its
        // end would bring all three with the result.
        expect(resultAt - progress[0]!).toBeGreaterThan(150);
      } finally {
        await client.close();
      }
    });
  });
});
