// A compressor written as many apps write their own: res.write returns its gzip stream's write(),
// res.flush() flushes it, and res.on is left alone, so its 'drain' never reaches a listener on the
// response (unlike compression's, which hands res.on('drain') to its zlib stream).
import type { NextFunction, Request, Response } from 'express';
import zlib from 'node:zlib';

export function handGzip(_req: Request, res: Response, next: NextFunction): void {
  const gzip = zlib.createGzip();
  const { writeHead } = res;
  const write = res.write as (chunk: Buffer) => boolean;
  const end = res.end as () => Response;
  const head = (): void => {
    if (!res.headersSent) res.writeHead(res.statusCode);
  };
  res.writeHead = function (this: Response, ...args: unknown[]) {
    this.setHeader('Content-Encoding', 'gzip');
    return (writeHead as (...a: unknown[]) => Response).apply(this, args);
  } as Response['writeHead'];
  gzip.on('data', (chunk: Buffer) => write.call(res, chunk));
  gzip.on('end', () => end.call(res));
  res.on('close', () => gzip.destroy());
  res.write = ((chunk: string | Buffer) => {
    head();
    return gzip.write(chunk);
  }) as Response['write'];
  res.end = ((chunk?: string | Buffer) => {
    head();
    if (chunk !== undefined) gzip.write(chunk);
    gzip.end();
    return res;
  }) as Response['end'];
  (res as Response & { flush: () => void }).flush = () => gzip.flush();
  next();
}
