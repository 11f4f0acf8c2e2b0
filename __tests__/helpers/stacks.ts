// The mount orders the producer recipes are run in: guard() before or after compression(), and the
// control, compression() alone. Middleware passed as `before` (a timeout handler) is mounted first.
import compression from 'compression';
import type { Express, RequestHandler } from 'express';
import { guard } from '../../src/index';

export type Stack = 'guard() before compression()' | 'guard() after compression()' | 'compression() alone';
export const STACKS: Stack[] = ['guard() before compression()', 'guard() after compression()', 'compression() alone'];

/** Mounts `before`, then guard() and compression() in the order `stack` names, on `app`. */
export function mountStack(app: { use(...handlers: RequestHandler[]): unknown }, stack: Stack, ...before: RequestHandler[]): void {
  if (before.length > 0) app.use(...before);
  if (stack === 'guard() before compression()') app.use(guard());
  app.use(compression());
  if (stack === 'guard() after compression()') app.use(guard());
}

/** A new Express app with `stack` mounted. */
export function stacked(express: () => Express, stack: Stack, ...before: RequestHandler[]): Express {
  const app = express();
  mountStack(app, stack, ...before);
  return app;
}

// A released stream's first piece comes within a few hundred ms even on a loaded machine; a held one
// comes when the response ends (a second or more here), or never.
export const PROMPT_MS = 600;
