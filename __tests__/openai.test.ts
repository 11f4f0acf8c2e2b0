// The most common event stream: a model's answer. A local OpenAI-compatible server, the real
// `openai` client pointed at it, an sse-guard route piping the completion, and the real
// `eventsource` client in front; a compression layer on the app, as in most Express apps.
import compression from 'compression';
import express from 'express';
import { EventSource } from 'eventsource';
import OpenAI from 'openai';
import { streamText } from 'ai';
import { MockLanguageModelV3 } from 'ai/test';
import { performance } from 'node:perf_hooks';
import { sse } from '../src/index';
import { listen, sleep, waitFor, type TestServer } from './helpers/server';

const TOKENS = 40;
const INTERVAL = 50;

interface Completion {
  generated: number;
  /** When the server saw the request closed before its answer was complete. */
  cutAt?: number;
  finishedAt?: number;
}

/** `POST /v1/chat/completions` with `stream: true`: one chunk every INTERVAL ms, then `data: [DONE]`. */
function mockModel(completions: Completion[]): express.Express {
  const app = express();
  app.post('/v1/chat/completions', express.json(), (req, res) => {
    if (req.body?.stream !== true) return void res.status(400).json({ error: { message: 'stream: true expected' } });
    const completion: Completion = { generated: 0 };
    completions.push(completion);
    res.writeHead(200, { 'Content-Type': 'text/event-stream', 'Cache-Control': 'no-cache' });
    const chunk = (delta: object, finish: string | null) =>
      `data: ${JSON.stringify({ id: 'chatcmpl-1', object: 'chat.completion.chunk', created: 0, model: req.body.model, choices: [{ index: 0, delta, finish_reason: finish }] })}\n\n`;
    res.write(chunk({ role: 'assistant', content: '' }, null));
    const timer = setInterval(() => {
      if (completion.generated === TOKENS) {
        clearInterval(timer);
        completion.finishedAt = performance.now();
        res.end(chunk({}, 'stop') + 'data: [DONE]\n\n');
        return;
      }
      completion.generated++;
      res.write(chunk({ content: `t${completion.generated} ` }, null));
    }, INTERVAL);
    res.on('close', () => {
      clearInterval(timer);
      if (completion.finishedAt === undefined) completion.cutAt = performance.now();
    });
  });
  return app;
}

describe('pipe() of an OpenAI chat completion', () => {
  let model: TestServer;
  let app: TestServer;
  const completions: Completion[] = [];
  let client: EventSource | undefined;

  beforeAll(async () => {
    model = await listen(mockModel(completions));
    const openai = new OpenAI({ baseURL: `${model.url}/v1`, apiKey: 'test', maxRetries: 0 });
    const create = (signal?: AbortSignal) =>
      openai.chat.completions.create({ model: 'mock', messages: [{ role: 'user', content: 'hi' }], stream: true }, { signal });
    const web = express();
    web.use(compression());
    // The README recipe.
    web.get('/chat', sse(async (stream) => {
      const completion = await create(stream.signal);
      await stream.pipe(completion, {
        map: (chunk) => {
          const text = chunk.choices[0]?.delta?.content;
          return text ? { event: 'delta', data: text } : undefined;
        },
      });
      stream.send({ event: 'done', data: '' });
    }));
    // The same without passing the signal: pipe()'s cancellation alone.
    web.get('/chat-no-signal', sse(async (stream) => {
      await stream.pipe(await create(), { map: (chunk) => ({ event: 'delta', data: chunk.choices[0]?.delta?.content ?? '' }) });
    }));
    // Controls: the loop as usually hand-written, with and without sse-guard.
    web.get('/naive', async (_req, res) => {
      res.writeHead(200, { 'Content-Type': 'text/event-stream', 'Cache-Control': 'no-cache' });
      for await (const chunk of await create()) res.write(`event: delta\ndata: ${chunk.choices[0]?.delta?.content ?? ''}\n\n`);
      res.end('event: done\ndata:\n\n');
    });
    web.get('/naive-guarded', sse(async (stream) => {
      for await (const chunk of await create()) stream.send({ event: 'delta', data: chunk.choices[0]?.delta?.content ?? '' });
    }));
    app = await listen(web);
  });
  afterEach(() => {
    client?.close();
    completions.length = 0;
  });
  afterAll(async () => {
    await app.close();
    await model.close();
  });

  /** Opens an EventSource on `path`; resolves the arrival time of each delta as it comes. */
  function open(path: string) {
    const arrivals: number[] = [];
    const texts: string[] = [];
    let done = false;
    client = new EventSource(`${app.url}${path}`);
    client.addEventListener('delta', (event) => {
      arrivals.push(performance.now());
      texts.push(event.data);
    });
    client.addEventListener('done', () => {
      done = true;
      client?.close();
    });
    return { arrivals, texts, isDone: () => done };
  }

  it('delivers every delta as the model generates it', async () => {
    const { arrivals, texts, isDone } = open('/chat');
    await waitFor('the answer', isDone, 10_000);
    expect(texts).toEqual(Array.from({ length: TOKENS }, (_, i) => `t${i + 1} `));
    // Streamed, not held until the end: the first delta came long before the model finished.
    expect(completions[0]!.finishedAt! - arrivals[0]!).toBeGreaterThan((TOKENS * INTERVAL) / 2);
  });

  it('control: the hand-written loop behind compression delivers the answer in one burst at the end', async () => {
    const { arrivals, isDone } = open('/naive');
    await waitFor('the answer', isDone, 10_000);
    expect(arrivals.length).toBeGreaterThanOrEqual(TOKENS);
    expect(arrivals[0]! - completions[0]!.finishedAt!).toBeGreaterThan(-INTERVAL);
  });

  it.each([
    ['/chat', 'with stream.signal passed to the client'],
    ['/chat-no-signal', "with pipe()'s cancellation alone"],
  ])('%s: when the client disconnects mid-answer the model sees its request closed within a second (%s)', async (path) => {
    const { texts } = open(path);
    await waitFor('three deltas', () => texts.length >= 3, 5000);
    const stoppedAt = performance.now();
    client!.close();
    await waitFor('the model request to close', () => completions[0]!.cutAt !== undefined, 1000);
    expect(completions[0]!.cutAt! - stoppedAt).toBeLessThan(1000);
    const generated = completions[0]!.generated;
    await sleep(4 * INTERVAL);
    expect(completions[0]!.generated).toBe(generated);
    expect(generated).toBeLessThan(TOKENS);
  });

  it('control: a hand-written loop keeps the model generating to the end after the client left', async () => {
    const { texts } = open('/naive-guarded');
    await waitFor('three deltas', () => texts.length >= 3, 5000);
    client!.close();
    await waitFor('the model to finish', () => completions[0]!.finishedAt !== undefined || completions[0]!.cutAt !== undefined, 5000);
    expect(completions[0]!.cutAt).toBeUndefined();
    expect(completions[0]!.generated).toBe(TOKENS);
  });
});

/** An AI SDK model that generates one text delta every INTERVAL ms, and stops on its abort signal as a provider's fetch would. */
function mockSdkModel(completions: Completion[]): MockLanguageModelV3 {
  return new MockLanguageModelV3({
    doStream: async ({ abortSignal }) => {
      const completion: Completion = { generated: 0 };
      completions.push(completion);
      let timer: NodeJS.Timeout | undefined;
      const stop = (): void => {
        clearInterval(timer);
        if (completion.finishedAt === undefined) completion.cutAt = performance.now();
      };
      abortSignal?.addEventListener('abort', stop, { once: true });
      type Part = Awaited<ReturnType<MockLanguageModelV3['doStream']>>['stream'] extends ReadableStream<infer P> ? P : never;
      const stream = new ReadableStream<Part>({
        start(controller) {
          controller.enqueue({ type: 'stream-start', warnings: [] });
          controller.enqueue({ type: 'text-start', id: 't' });
          timer = setInterval(() => {
            if (completion.generated === TOKENS) {
              clearInterval(timer);
              completion.finishedAt = performance.now();
              abortSignal?.removeEventListener('abort', stop);
              controller.enqueue({ type: 'text-end', id: 't' });
              controller.enqueue({
                type: 'finish',
                finishReason: { unified: 'stop', raw: 'stop' },
                usage: { inputTokens: { total: 1, noCache: 1, cacheRead: 0, cacheWrite: 0 }, outputTokens: { total: TOKENS, text: TOKENS, reasoning: 0 } },
              });
              controller.close();
              return;
            }
            completion.generated++;
            controller.enqueue({ type: 'text-delta', id: 't', delta: `t${completion.generated} ` });
          }, INTERVAL);
        },
        cancel: stop,
      });
      return { stream };
    },
  });
}

describe('pipe() of an AI SDK text stream', () => {
  let app: TestServer;
  const completions: Completion[] = [];
  let client: EventSource | undefined;

  beforeAll(async () => {
    const model = mockSdkModel(completions);
    const web = express();
    // The README recipe.
    web.get('/answer', sse(async (stream) => {
      const result = streamText({ model, prompt: 'hi', abortSignal: stream.signal });
      await stream.pipe(result.textStream, { map: (text) => ({ event: 'delta', data: text }) });
      stream.send({ event: 'done', data: '' });
    }));
    web.get('/answer-no-signal', sse(async (stream) => {
      await stream.pipe(streamText({ model, prompt: 'hi' }).textStream, { map: (text) => ({ event: 'delta', data: text }) });
    }));
    app = await listen(web);
  });
  afterEach(() => {
    client?.close();
    completions.length = 0;
  });
  afterAll(() => app.close());

  const open = (path: string) => {
    const texts: string[] = [];
    let done = false;
    client = new EventSource(`${app.url}${path}`);
    client.addEventListener('delta', (event) => texts.push(event.data));
    client.addEventListener('done', () => {
      done = true;
      client?.close();
    });
    return { texts, isDone: () => done };
  };

  it('delivers the whole answer', async () => {
    const { texts, isDone } = open('/answer');
    await waitFor('the answer', isDone, 10_000);
    expect(texts).toEqual(Array.from({ length: TOKENS }, (_, i) => `t${i + 1} `));
  });

  it('stops the model within a second when the client disconnects, with abortSignal: stream.signal', async () => {
    const { texts } = open('/answer');
    await waitFor('three deltas', () => texts.length >= 3, 5000);
    const stoppedAt = performance.now();
    client!.close();
    await waitFor('the model to stop', () => completions[0]!.cutAt !== undefined, 1000);
    expect(completions[0]!.cutAt! - stoppedAt).toBeLessThan(1000);
    expect(completions[0]!.generated).toBeLessThan(TOKENS);
  });

  it("control: without the signal the SDK does not pass pipe()'s cancel on to the model, which generates to the end", async () => {
    const { texts } = open('/answer-no-signal');
    await waitFor('three deltas', () => texts.length >= 3, 5000);
    client!.close();
    await waitFor('the model to finish', () => completions[0]!.finishedAt !== undefined || completions[0]!.cutAt !== undefined, 5000);
    expect(completions[0]!.cutAt).toBeUndefined();
  });
});
