// A Channel shared by many processes: events live in a Redis stream, so ids are global and any
// instance can replay what a reconnecting client missed.
import { setTimeout as delay } from 'node:timers/promises';
import { createClient, type RedisClientType } from 'redis';
import type { ChannelAdapter, StoredEvent } from './adapter.js';
import { SseGuardError } from '../core/errors.js';

/** Any node-redis v5 or v6 client, whatever its modules, scripts or RESP version. */
export type RedisClient = RedisClientType<any, any, any, any, any>;

export interface RedisAdapterOptions {
  /** Where the adapter connects when no `client` is given. Default `redis://127.0.0.1:6379`. */
  url?: string;
  /**
   * A client you own: the adapter writes through it and reads through a duplicate of it. Connect it
   * and listen to its `'error'` events yourself; `close()` leaves it open.
   */
  client?: RedisClient;
  /** The stream's key; give each channel its own. Default `'sse-guard:events'`. */
  key?: string;
}

// The reply shapes node-redis 5 (RESP2) and 6 (RESP3, compat transform) share under the default type mapping.
interface Entry {
  id: string;
  message: Record<string, string>;
}
type Commands = RedisClientType;

const FIELD = 'body';
// Entries kept (MAXLEN ~) even when the channel asks for less history: a reader that is reconnecting,
// or busy with its previous batch, resumes from its last id and must still find every entry after it.
// With more history, history + 1 are kept: the id a client last saw, and the `history` events after it.
const MIN_RETAINED = 1000;
// A blocked XREAD ends at close() by destroying its connection; the timeout only bounds how long a
// silently dead connection can hold the reader.
const BLOCK_MS = 5000;
const BATCH = 500;
// After Redis refused an XREAD (not a lost connection: those wait for the reconnect), e.g. WRONGTYPE.
const REFUSED_PAUSE_MS = 1000;
const MAX_ID_PART = 0xffff_ffff_ffff_ffffn;

function isStreamId(id: string): boolean {
  const match = /^(\d{1,20})-(\d{1,20})$/.exec(id);
  return match !== null && BigInt(match[1]!) <= MAX_ID_PART && BigInt(match[2]!) <= MAX_ID_PART;
}

function toStored(entry: Entry): StoredEvent | undefined {
  const body = entry.message[FIELD];
  // Written to this key by something else: there is no frame to send.
  return typeof body === 'string' ? { id: entry.id, body } : undefined;
}

// Error messages name the server but never its password.
function describeUrl(url: string | undefined): string {
  if (url === undefined) return 'the server of the client given to redisAdapter()';
  try {
    const parsed = new URL(url);
    if (parsed.password !== '') parsed.password = '***';
    return parsed.href;
  } catch {
    return url;
  }
}

// node-redis completes a connection attempt that destroy() interrupted, and the client turns ready
// again, holding a socket open: destroy it once more when that happens.
function shut(client: Commands): void {
  client.once('ready', () => client.destroy());
  client.destroy();
}

function messageOf(err: unknown): string {
  return err instanceof Error ? err.message || err.name : String(err);
}

/**
 * A ChannelAdapter on a Redis stream (node-redis 5 or 6, Redis >= 5): every instance appends with
 * XADD and follows the stream with a blocking XREAD, so all of them deliver the same events in the
 * same order, with the stream's ids (`<ms>-<seq>`) as event ids. An instance delivers what is
 * appended after it first reached Redis. Use one adapter, and one key, per channel.
 */
export function redisAdapter(urlOrOptions: string | RedisAdapterOptions = {}): ChannelAdapter {
  const options = typeof urlOrOptions === 'string' ? { url: urlOrOptions } : urlOrOptions;
  const key = options.key ?? 'sse-guard:events';
  const given = options.client;
  const url = given === undefined ? (options.url ?? 'redis://127.0.0.1:6379') : (given.options?.url as string | undefined);
  const where = describeUrl(url);

  let writer: Commands | undefined;
  let reader: Commands | undefined;
  let own: Commands | undefined;
  let follower: Commands | undefined;
  let history = 0;
  // The newest entry this instance delivered: the stream position its XREAD resumes from.
  let position: string | undefined;
  let lastError: unknown;
  let started: Promise<void> | undefined;
  let attached = false;
  let following: Promise<void> = Promise.resolve();
  const stop = new AbortController();
  const remember = (err: unknown): void => {
    lastError = err;
  };

  const unreachable = (): SseGuardError => {
    if (given !== undefined && !given.isOpen) {
      return new SseGuardError(
        'ERR_SSE_ADAPTER',
        'the client given to redisAdapter() is not connected: call its connect() first, and close it only after the channel.',
      );
    }
    const cause = lastError === undefined ? '' : ` (${messageOf(lastError)})`;
    return new SseGuardError(
      'ERR_SSE_ADAPTER',
      `Redis at ${where} is unreachable${cause}. Start Redis there, or give redisAdapter() the URL of a reachable ` +
        'server (REDIS_URL in the demo); the channel recovers by itself once Redis answers.',
      { cause: lastError },
    );
  };
  const refused = (err: unknown, hint = ''): SseGuardError =>
    new SseGuardError('ERR_SSE_ADAPTER', `Redis at ${where} refused a command on stream "${key}": ${messageOf(err)}.${hint}`, {
      cause: err,
    });

  // Where this instance starts following: after the newest entry, so that a client that saw it is not
  // sent a resync by a fresh instance. The first answer stands: a later one could skip entries.
  const locate = async (conn: Commands): Promise<string> => {
    const [newest] = (await conn.xRevRange(key, '+', '-', { COUNT: 1 })) as Entry[];
    position ??= newest?.id ?? '0-0';
    return position;
  };

  const follow = async (conn: Commands, deliver: (event: StoredEvent) => void): Promise<void> => {
    while (!stop.signal.aborted) {
      try {
        const from = position ?? (await locate(conn));
        const reply = (await conn.xRead({ key, id: from }, { BLOCK: BLOCK_MS, COUNT: BATCH })) as
          | Array<{ messages: Entry[] }>
          | null;
        for (const entry of reply?.[0]?.messages ?? []) {
          position = entry.id;
          const event = toStored(entry);
          if (event !== undefined) deliver(event);
        }
      } catch (err) {
        // Closed by close(), or by a reconnect strategy (the given client's) that gave up.
        if (stop.signal.aborted || !conn.isOpen) return;
        lastError = err;
        // A lost connection needs no wait: the next XREAD sits in the offline queue until the reconnect.
        if (conn.isReady) await delay(REFUSED_PAUSE_MS, undefined, { signal: stop.signal }).catch(() => {});
      }
    }
  };

  const start = async (deliver: (event: StoredEvent) => void): Promise<void> => {
    if (own !== undefined) {
      // The first attempt's outcome, whichever it is (it keeps retrying on its own after a failure).
      const client = own;
      await new Promise<void>((resolve) => {
        for (const event of ['ready', 'error', 'end']) client.once(event, () => resolve());
      });
    }
    if (writer?.isReady === true) await locate(writer).catch(remember);
    if (!stop.signal.aborted && reader !== undefined) following = follow(reader, deliver);
    attached = true;
  };

  const replay = (lastEventId: string, upto: string | undefined): Promise<StoredEvent[] | undefined> => {
    const conn = writer;
    if (upto === undefined || conn === undefined) return Promise.reject(unreachable());
    // The id itself comes back first: found, it proves nothing between it and the replay was trimmed
    // away. Like the memory adapter, a client may have missed up to `history` events. An id this
    // instance has not delivered yet (the client saw it on a faster one) is not found either: that
    // client gets a resync, where replaying and then delivering live would send some events twice.
    return (conn.xRange(key, lastEventId, upto, { COUNT: history + 2 }) as Promise<Entry[]>).then(
      (entries) => {
        if (entries[0]?.id !== lastEventId || entries.length > history + 1) return undefined;
        return entries.slice(1).flatMap((entry) => toStored(entry) ?? []);
      },
      (err: unknown) => {
        throw conn.isReady ? refused(err) : unreachable();
      },
    );
  };

  return {
    attach(deliver, size) {
      if (started !== undefined) {
        throw new SseGuardError('ERR_SSE_INVALID_OPTION', 'a redisAdapter() serves one Channel; create one per channel, each with its own key.');
      }
      history = size;
      if (given === undefined) {
        // Publishing while Redis is down must fail now, not sit in a queue and go out minutes later.
        own = createClient({ url, disableOfflineQueue: true }) as Commands;
        writer = own;
      } else {
        writer = given.withTypeMapping({}) as Commands;
      }
      // The reader, unlike the writer, wants its commands kept across a reconnect: that is how it resumes.
      follower = (given ?? writer).duplicate({ disableOfflineQueue: false }) as Commands;
      for (const client of own === undefined ? [follower] : [own, follower]) {
        client.on('error', remember);
        // Retries by itself until ready or closed.
        client.connect().catch(remember);
      }
      reader = follower.withTypeMapping({}) as Commands;
      started = start(deliver);
      return started;
    },

    async append(body, id) {
      if (writer?.isReady !== true) throw unreachable();
      try {
        // Redis was down when this instance started: its reader must start before this event, to deliver it.
        if (position === undefined) await locate(writer);
        return await writer.xAdd(
          key,
          id ?? '*',
          { [FIELD]: body },
          { TRIM: { strategy: 'MAXLEN', strategyModifier: '~', threshold: Math.max(history + 1, MIN_RETAINED) } },
        );
      } catch (err) {
        if (!writer.isReady) {
          lastError = err;
          // The command may have reached Redis before the connection dropped: stored or not, unknown.
          throw unreachable();
        }
        throw refused(err, id === undefined ? '' : ` An explicit id must be a stream id (<ms>-<seq>) greater than the newest in "${key}".`);
      }
    },

    since(lastEventId) {
      // Only ids this adapter handed out can be in the stream; anything else asks for a resync.
      if (!isStreamId(lastEventId)) return undefined;
      // Taken at the call: what was delivered before it is replayed, what comes after reaches the subscriber live.
      if (attached) return replay(lastEventId, position);
      return (started ?? Promise.resolve()).then(() => replay(lastEventId, position));
    },

    async close() {
      if (stop.signal.aborted) return;
      stop.abort();
      // Ends the blocked XREAD at once instead of waiting out its timeout.
      if (follower !== undefined) shut(follower);
      // close() lets publishes in flight finish; a client still connecting has nothing to finish.
      if (own?.isReady === true) await own.close();
      else if (own !== undefined) shut(own);
      await started;
      await following;
    },
  };
}
