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
// A blocked XREAD ends at close() by destroying its connection; this server-side timeout keeps bytes
// flowing on an idle reader, so that the socket timeout below can tell a silent link from a quiet stream.
const BLOCK_MS = 2000;
const BATCH = 500;
// After Redis refused an XREAD (not a lost connection: those wait for the reconnect), e.g. WRONGTYPE.
const REFUSED_PAUSE_MS = 1000;
// Health checks on every connection the adapter opens. A link that stops answering without closing
// raises no error: only silence shows it. A socket that neither sends nor receives a byte for
// SOCKET_TIMEOUT_MS is destroyed and node-redis reconnects. It must outlast an idle XREAD (BLOCK_MS);
// PINGs keep an idle writer's healthy link from reaching it, and a PING left unanswered lets it trip.
// Writes count as activity too, and node-redis retries (its own command timeouts, the next PING)
// keep writing: so the adapter also replaces a reader whose XREAD gets no reply for as long.
const SOCKET_TIMEOUT_MS = BLOCK_MS + 3000;
const PING_INTERVAL_MS = 1000;
// How long XADD, XRANGE and the start-up lookups may take before their caller gets ERR_SSE_ADAPTER.
const COMMAND_TIMEOUT_MS = 2000;
// close() lets commands in flight finish for this long, then cuts its connections.
const CLOSE_GRACE_MS = 500;
// The largest sequence number of a stream id: `<ms>-${MAX_SEQ}` is the last id of a millisecond.
const MAX_SEQ = '18446744073709551615';
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

// node-redis's own strategy gives up for good after a socket timeout, and an app's may give up after
// any loss: either would leave the adapter without a connection, its subscribers waiting for events
// that never come. Its own connections retry until close(), with node-redis's default back-off
// (50 ms doubling up to 2 s, plus up to 200 ms of jitter).
function reconnect(retries: number): number {
  return Math.min(2 ** retries * 50, 2000) + Math.floor(Math.random() * 200);
}

/** The client options that make node-redis notice a silent link (see SOCKET_TIMEOUT_MS), and come back. */
function healthChecks(socket: object | undefined): { pingInterval: number; socket: object } {
  return { pingInterval: PING_INTERVAL_MS, socket: { ...socket, socketTimeout: SOCKET_TIMEOUT_MS, reconnectStrategy: reconnect } };
}

/** Settles like `work`, or rejects with `expired()` after `ms`, whichever comes first. */
function within<T>(work: Promise<T>, ms: number, expired: () => Error): Promise<T> {
  let timer: NodeJS.Timeout | undefined;
  const late = new Promise<never>((_, reject) => {
    timer = setTimeout(() => reject(expired()), ms);
  });
  return Promise.race([work, late]).finally(() => clearTimeout(timer));
}

/**
 * A ChannelAdapter on a Redis stream (node-redis 5 or 6, Redis >= 5): every instance appends with
 * XADD and follows the stream with a blocking XREAD, so all of them deliver the same events in the
 * same order, with the stream's ids (`<ms>-<seq>`) as event ids. An instance delivers every entry
 * appended after it was created (by Redis's clock), also when Redis answered only later; when
 * entries it had not read yet were trimmed away, it reports the gap to the channel, which resyncs
 * its subscribers. Use one adapter, and one key, per channel.
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
  // What the reader is duplicated from: the given client, or the adapter's first writer.
  let readerBase: RedisClient | undefined;
  let history = 0;
  // When the channel attached, on this machine's clock: the instance delivers what was appended after it.
  let attachedAt = 0;
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

  const openOwn = (): Commands => {
    // Publishing while Redis is down must fail now, not sit in a queue and go out minutes later.
    const client = createClient({ url, disableOfflineQueue: true, ...healthChecks(undefined) }) as Commands;
    client.on('error', remember);
    // Retries by itself until ready or closed.
    client.connect().catch(remember);
    return client;
  };

  // A command on the writer that Redis never answers. The socket timeout cannot catch that link while
  // the app keeps publishing (every write counts as activity), so the adapter's own connection is
  // replaced at once; a client the app gave is the app's to check (see README).
  const silent = (conn: Commands, command: string, outcome: string): SseGuardError => {
    if (conn === own && !stop.signal.aborted) {
      own = writer = openOwn();
      shut(conn);
    }
    return new SseGuardError(
      'ERR_SSE_ADAPTER',
      `Redis at ${where} did not answer ${command} on stream "${key}" within ${COMMAND_TIMEOUT_MS} ms (the adapter's bound): ` +
        `the link is down or stopped answering${outcome}. The adapter reconnects by itself.`,
    );
  };
  const bounded = <T>(conn: Commands, command: string, work: Promise<T>, outcome = ''): Promise<T> =>
    within(work, COMMAND_TIMEOUT_MS, () => silent(conn, command, outcome));

  // Where this instance starts following: after the last entry appended before it attached, by
  // Redis's clock, so that a subscriber that connected while Redis was still out of reach misses
  // nothing appended meanwhile. The first answer stands: a later one could skip entries.
  const locate = async (conn: Commands): Promise<string> => {
    const [seconds, micros] = (await conn.time()) as unknown as [string, string];
    // Redis's clock minus ours when the reply arrived: at most the true difference (the reply took
    // time to come), so the start is never after the attach, only up to a round trip before it.
    const offset = Number(seconds) * 1000 + Math.floor(Number(micros) / 1000) - Date.now();
    const start = attachedAt + offset;
    const [before] = start < 1 ? [] : ((await conn.xRevRange(key, `${start - 1}-${MAX_SEQ}`, '-', { COUNT: 1 })) as Entry[]);
    position ??= before?.id ?? '0-0';
    return position;
  };

  // The reader, unlike the writer, wants its commands kept across a reconnect: that is how it resumes.
  // It is always the adapter's own connection, so it always gets the health checks, and reconnects
  // even when the strategy of the client it was duplicated from would give up.
  const openReader = (): void => {
    const base = readerBase!;
    follower = base.duplicate({ disableOfflineQueue: false, ...healthChecks(base.options?.socket) }) as Commands;
    follower.on('error', remember);
    follower.connect().catch(remember);
    reader = follower.withTypeMapping({}) as Commands;
  };

  const follow = async (deliver: (event: StoredEvent) => void, lost: ((after: string) => void) | undefined): Promise<void> => {
    const silence = new Error(`no reply to XREAD within ${SOCKET_TIMEOUT_MS} ms`);
    while (!stop.signal.aborted) {
      const conn = reader!;
      try {
        const from = position ?? (await within(locate(conn), SOCKET_TIMEOUT_MS, () => silence));
        // Pipelined, so Redis runs the XRANGE right after the XREAD returns. The entry read last still
        // there proves nothing after it was trimmed (MAXLEN trims the oldest first, and ids only grow);
        // gone, the batch may not follow on from it. '0-0' (nothing before this instance) proves nothing.
        const [reply, kept] = await within(
          Promise.all([
            conn.xRead({ key, id: from }, { BLOCK: BLOCK_MS, COUNT: BATCH }) as Promise<Array<{ messages: Entry[] }> | null>,
            from === '0-0' ? [] : (conn.xRange(key, from, from) as Promise<Entry[]>),
          ]),
          SOCKET_TIMEOUT_MS,
          () => silence,
        );
        const entries = reply?.[0]?.messages ?? [];
        if (entries.length > 0 && from !== '0-0' && kept.length === 0) lost?.(from);
        for (const entry of entries) {
          position = entry.id;
          const event = toStored(entry);
          if (event !== undefined) deliver(event);
        }
      } catch (err) {
        if (stop.signal.aborted) return;
        if (err === silence) {
          // A frozen link: a new connection resumes from `position`; the old one is cut.
          const stale = follower!;
          openReader();
          shut(stale);
          continue;
        }
        if (!conn.isOpen) {
          // Only the adapter closes its reader (close(), or a replacement above); should anything
          // else, a new one resumes from `position` rather than leave the subscribers waiting.
          if (conn === reader) openReader();
          continue;
        }
        lastError = err;
        // A lost connection needs no wait: the next XREAD sits in the offline queue until the reconnect.
        if (conn.isReady) await delay(REFUSED_PAUSE_MS, undefined, { signal: stop.signal }).catch(() => {});
      }
    }
  };

  const start = async (deliver: (event: StoredEvent) => void, lost: ((after: string) => void) | undefined): Promise<void> => {
    if (own !== undefined) {
      // The first attempt's outcome, whichever it is (it keeps retrying on its own after a failure).
      const client = own;
      await new Promise<void>((resolve) => {
        for (const event of ['ready', 'error', 'end']) client.once(event, () => resolve());
      });
    }
    const conn = writer;
    if (conn?.isReady === true) await bounded(conn, 'its start-up lookups', locate(conn)).catch(remember);
    if (!stop.signal.aborted) following = follow(deliver, lost);
    attached = true;
  };

  const replay = (lastEventId: string, upto: string | undefined): Promise<StoredEvent[] | undefined> => {
    const conn = writer;
    if (upto === undefined || conn === undefined) return Promise.reject(unreachable());
    // The id itself comes back first: found, it proves nothing between it and the replay was trimmed
    // away. Like the memory adapter, a client may have missed up to `history` events. An id this
    // instance has not delivered yet (the client saw it on a faster one) is not found either: that
    // client gets a resync, where replaying and then delivering live would send some events twice.
    return bounded(conn, 'XRANGE', conn.xRange(key, lastEventId, upto, { COUNT: history + 2 }) as Promise<Entry[]>).then(
      (entries) => {
        if (entries[0]?.id !== lastEventId || entries.length > history + 1) return undefined;
        return entries.slice(1).flatMap((entry) => toStored(entry) ?? []);
      },
      (err: unknown) => {
        if (err instanceof SseGuardError) throw err;
        throw conn.isReady ? refused(err) : unreachable();
      },
    );
  };

  return {
    attach(deliver, size, lost) {
      if (started !== undefined) {
        throw new SseGuardError('ERR_SSE_INVALID_OPTION', 'a redisAdapter() serves one Channel; create one per channel, each with its own key.');
      }
      history = size;
      attachedAt = Date.now();
      if (given === undefined) {
        own = openOwn();
        writer = own;
      } else {
        writer = given.withTypeMapping({}) as Commands;
      }
      readerBase = given ?? writer;
      openReader();
      started = start(deliver, lost);
      return started;
    },

    async append(body, id) {
      const conn = writer;
      if (conn?.isReady !== true) throw unreachable();
      try {
        // Redis was down when this instance started: its reader must start before this event, to deliver it.
        if (position === undefined) await bounded(conn, 'its start-up lookups', locate(conn), '; the event was not stored');
        return await bounded(
          conn,
          'XADD',
          conn.xAdd(
            key,
            id ?? '*',
            { [FIELD]: body },
            { TRIM: { strategy: 'MAXLEN', strategyModifier: '~', threshold: Math.max(history + 1, MIN_RETAINED) } },
          ),
          '; the event may or may not be stored',
        );
      } catch (err) {
        if (err instanceof SseGuardError) throw err;
        if (!conn.isReady) {
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
      const client = own;
      // Publishes in flight may finish, within a bound: on a silent link they would wait for ever.
      if (client?.isReady === true) await within(client.close(), CLOSE_GRACE_MS, () => new Error('grace over')).catch(() => {});
      // Then cuts what is left: a client still connecting, or a close() that outlived the grace.
      if (client !== undefined) shut(client);
      await started;
      await following;
    },
  };
}
