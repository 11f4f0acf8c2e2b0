// A bench child process (a server or the client) answering one message at a time over IPC.
import { spawn, type ChildProcess } from 'node:child_process';
import path from 'node:path';
import type { ClientTask, Reply, ServerCommand } from './protocol';

const ROOT = path.join(__dirname, '..');

/** A child process answering one message at a time; every wait has a deadline. */
export class Child {
  readonly #process: ChildProcess;
  readonly #exited: Promise<never>;

  /**
   * Thousands of sockets per process: the soft fd limit is lifted in a shell first, to the hard
   * limit, or to `fileLimit` (soft and hard; raising the hard limit needs the right to) when given.
   * A limit that cannot be set fails the start rather than the run half-way.
   */
  constructor(script: string, args: string[], execArgv: string[], fileLimit?: number) {
    const limit = fileLimit === undefined ? 'ulimit -n "$(ulimit -Hn)" 2>/dev/null' : `ulimit -n ${fileLimit} || exit 97`;
    this.#process = spawn('/bin/sh', ['-c', `${limit}; exec "$@"`, 'sh', process.execPath, ...process.execArgv, ...execArgv, script, ...args], {
      cwd: ROOT,
      stdio: ['ignore', 'inherit', 'inherit', 'ipc'],
    });
    this.#exited = new Promise((_, reject) => {
      this.#process.once('exit', (code, signal) => {
        const why =
          code === 97
            ? `could not raise the open-file limit to ${fileLimit} (ulimit -n): raising the hard limit (ulimit -Hn) needs CAP_SYS_RESOURCE; ask for fewer sockets`
            : `exited (${signal ?? code})`;
        reject(new Error(`${path.basename(script)} ${why}`));
      });
    });
    this.#exited.catch(() => undefined);
    // A message sent after the child died is reported by #exited; without a listener it would crash the runner.
    this.#process.on('error', () => undefined);
  }

  /** The next reply, optionally after sending `message`. */
  request<T>(message: ServerCommand | ClientTask | undefined, timeoutMs: number): Promise<T> {
    const reply = new Promise<T>((resolve, reject) => {
      this.#process.once('message', (answer: Reply<T>) => (answer.ok ? resolve(answer.value) : reject(new Error(answer.error))));
    });
    if (message !== undefined) this.#process.send(message);
    let timer: NodeJS.Timeout | undefined;
    const deadline = new Promise<never>((_, reject) => {
      timer = setTimeout(() => reject(new Error(`no answer to ${JSON.stringify(message)} within ${timeoutMs} ms`)), timeoutMs);
    });
    return Promise.race([reply, deadline, this.#exited]).finally(() => clearTimeout(timer));
  }

  async stop(): Promise<void> {
    if (this.#process.exitCode !== null || this.#process.signalCode !== null) return;
    const exited = new Promise((resolve) => this.#process.once('exit', resolve));
    this.#process.kill();
    await exited;
  }
}
