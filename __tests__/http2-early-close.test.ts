// An HTTP/2 client that resets its stream while middleware before sse() or guard() is still at work:
// the response's 'close' has fired before the stream exists, and an HTTP/2 compat response has no
// `destroyed` of its own, so the stream must learn it from the HTTP/2 stream (HTTP/1.1: faults.test.ts).
import http2 from 'node:http2';
import type { AddressInfo } from 'node:net';
import { guard, shutdown, sse, stats, type SseStream } from '../src/index';
import { cleanupAfterEach, sleep, waitFor } from './helpers/server';

const cleanups = cleanupAfterEach();

type Handler = (req: http2.Http2ServerRequest, res: http2.Http2ServerResponse) => void;

/** An h2c server whose handler runs `handler` only once the client reset the request; resolves when it ran. */
async function resetBeforeHandler(handler: Handler): Promise<void> {
  let ran!: () => void;
  const done = new Promise<void>((resolve) => (ran = resolve));
  let arrived = false;
  const server = http2.createServer((req, res) => {
    arrived = true;
    // As an async middleware (a session lookup) would: the handler runs after the client left.
    req.once('close', () => setImmediate(() => {
      handler(req, res);
      ran();
    }));
  });
  await new Promise<void>((resolve) => server.listen(0, '127.0.0.1', resolve));
  const session = http2.connect(`http://127.0.0.1:${(server.address() as AddressInfo).port}`);
  cleanups.push(
    () => new Promise((resolve) => server.close(resolve)),
    () => new Promise<void>((resolve) => session.close(resolve)),
  );
  const request = session.request({ ':path': '/', accept: 'text/event-stream' });
  request.on('error', () => {});
  await waitFor('the request to arrive', () => arrived);
  request.close(http2.constants.NGHTTP2_CANCEL);
  await done;
}

describe('an HTTP/2 client that left before the stream began', () => {
  it("closes the sse() stream with reason 'client', stops pulling its pipe and leaves stats()", async () => {
    const before = stats().open;
    let reason: string | undefined;
    let pulled = 0;
    let sent: Promise<number> | undefined;
    const route = sse({ heartbeat: false });
    await resetBeforeHandler((req, res) =>
      route(req as never, res as never, () => {
        const stream = (res as unknown as { sse: SseStream }).sse;
        stream.on('close', (why) => (reason = why));
        sent = stream.pipe((function* () {
          for (let i = 0; i < 1e6; i++) {
            pulled++;
            yield 'x';
          }
        })());
      }),
    );
    await expect(sent).resolves.toBe(0);
    expect(pulled).toBeLessThanOrEqual(1);
    await waitFor("the 'close' listener", () => reason !== undefined, 1000);
    expect(reason).toBe('client');
    expect(stats().open).toBe(before);
  });

  it('leaves no guarded stream open in stats()', async () => {
    const before = stats().open;
    const middleware = guard({ heartbeat: false });
    await resetBeforeHandler((req, res) =>
      middleware(req as never, res as never, () => {
        res.setHeader('Content-Type', 'text/event-stream');
        res.write('data: a\n\n');
      }),
    );
    await sleep(50);
    expect(stats().open).toBe(before);
  });

  // Last: shutdown() refuses every stream after it.
  it('is not waited for by shutdown()', async () => {
    const route = sse({ heartbeat: false });
    await resetBeforeHandler((req, res) => route(req as never, res as never, () => {}));
    // A stream left open would hold shutdown() for its whole grace period.
    const started = Date.now();
    await shutdown({ graceMs: 4000 });
    expect(Date.now() - started).toBeLessThan(2000);
  });
});
