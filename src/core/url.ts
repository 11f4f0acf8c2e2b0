// The request's URL as the logger reports it, for every reason, whichever part of the library logs.
import type { IncomingMessage } from 'node:http';

/** The URL the app was asked for: Express's originalUrl (a router strips its mount path from url). */
export function urlOf(req: IncomingMessage): string | undefined {
  return (req as { originalUrl?: string }).originalUrl ?? req.url;
}
