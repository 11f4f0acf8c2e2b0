// A TCP proxy on 127.0.0.1 that can stop forwarding without closing anything: the link that goes
// silent in production (a dead NAT entry, a peer frozen mid-failover), which no error or FIN reveals.
import net from 'node:net';

export interface BlackholeOptions {
  /**
   * `'hold'` (default): connections opened from now on are accepted and held silent as well, as when
   * the whole path is down. `'forward'`: only the connections open now freeze, and new ones pass, as
   * when one connection dies but the server is still there for a client that reconnects.
   */
  newConnections?: 'hold' | 'forward';
}

export interface TcpProxy {
  port: number;
  /** Connections currently open through the proxy. */
  readonly open: number;
  /** Connections that reached the proxy since it started. */
  readonly accepted: number;
  /** Stops forwarding, both ways, on every open connection (and, by default, new ones); closes nothing. */
  blackhole(options?: BlackholeOptions): void;
  /** Forwards again on every connection, held bytes first, and lets new connections through. */
  resume(): void;
  close(): Promise<void>;
}

interface Link {
  client: net.Socket;
  upstream: net.Socket;
  frozen: boolean;
}

/** A proxy to `targetPort` on 127.0.0.1. */
export async function tcpProxy(targetPort: number): Promise<TcpProxy> {
  const links = new Set<Link>();
  let holdNew = false;
  let accepted = 0;

  // Reads stop while frozen, so bytes wait in the kernel and arrive after resume(), as TCP would retransmit them.
  const freeze = (link: Link): void => {
    link.frozen = true;
    link.client.pause();
    link.upstream.pause();
  };
  const thaw = (link: Link): void => {
    link.frozen = false;
    link.client.resume();
    link.upstream.resume();
  };
  const pipe = (link: Link, from: net.Socket, to: net.Socket): void => {
    from.on('data', (chunk: Buffer) => {
      if (!to.write(chunk)) from.pause();
    });
    to.on('drain', () => {
      if (!link.frozen) from.resume();
    });
  };

  const server = net.createServer((client) => {
    accepted++;
    const upstream = net.connect(targetPort, '127.0.0.1');
    const link: Link = { client, upstream, frozen: false };
    links.add(link);
    pipe(link, client, upstream);
    pipe(link, upstream, client);
    if (holdNew) freeze(link);
    // The client leaving is passed on; the server's end is not while frozen: a silent link shows nothing.
    const end = (): void => {
      links.delete(link);
      client.destroy();
      upstream.destroy();
    };
    client.on('error', () => {}).on('close', end);
    upstream.on('error', () => {}).on('close', () => {
      if (!link.frozen) end();
    });
  });
  await new Promise<void>((resolve) => server.listen(0, '127.0.0.1', resolve));
  const { port } = server.address() as net.AddressInfo;

  return {
    port,
    get open() {
      return links.size;
    },
    get accepted() {
      return accepted;
    },
    blackhole(options = {}) {
      holdNew = (options.newConnections ?? 'hold') === 'hold';
      for (const link of links) freeze(link);
    },
    resume() {
      holdNew = false;
      for (const link of links) {
        thaw(link);
        // Its server went away while it was frozen: the client learns it now.
        if (link.upstream.destroyed) link.client.destroy();
      }
    },
    close() {
      for (const link of links) {
        link.client.destroy();
        link.upstream.destroy();
      }
      links.clear();
      return new Promise<void>((resolve) => server.close(() => resolve()));
    },
  };
}
