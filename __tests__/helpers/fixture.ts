// Runs a TypeScript server fixture from __tests__/fixtures in its own Node process (with tsx), for
// producers jest cannot load (ESM-only packages such as NestJS 12). The fixture prints one JSON line
// when it is listening, closes its servers and exits on SIGTERM, and exits when its stdin closes (so a
// test runner that dies does not leave it behind).
import { spawn, type ChildProcess } from 'node:child_process';
import path from 'node:path';

export interface Fixture<T> {
  /** What the fixture printed once it was listening. */
  ready: T;
  /** Ends the process (SIGTERM, then SIGKILL after 5 s) and resolves when it has exited. */
  stop(): Promise<void>;
}

const ROOT = path.join(__dirname, '..', '..');

/** Starts `__tests__/fixtures/<file>`; rejects if it exits or prints nothing within `startMs`. */
export function startFixture<T>(file: string, startMs = 30_000): Promise<Fixture<T>> {
  const child = spawn(process.execPath, ['--import', 'tsx', path.join(ROOT, '__tests__', 'fixtures', file)], {
    cwd: ROOT,
    stdio: ['pipe', 'pipe', 'pipe'],
  });
  const exited = new Promise<void>((resolve) => child.once('exit', () => resolve()));
  return new Promise((resolve, reject) => {
    let stdout = '';
    let stderr = '';
    let started = false;
    const fail = (why: string): void => {
      if (started) return;
      started = true;
      clearTimeout(timer);
      child.kill('SIGKILL');
      reject(new Error(`${file} ${why}: ${stderr.trim() || '(no output)'}`));
    };
    const timer = setTimeout(() => fail(`printed nothing within ${startMs} ms`), startMs);
    child.stderr!.on('data', (chunk: Buffer) => (stderr += chunk.toString()));
    child.stdout!.on('data', (chunk: Buffer) => {
      stdout += chunk.toString();
      const line = stdout.indexOf('\n');
      if (line < 0 || started) return;
      started = true;
      clearTimeout(timer);
      resolve({ ready: JSON.parse(stdout.slice(0, line)) as T, stop: () => stop(child, exited) });
    });
    child.once('exit', (code) => fail(`exited with code ${code}`));
  });
}

async function stop(child: ChildProcess, exited: Promise<void>): Promise<void> {
  if (child.exitCode !== null || child.signalCode !== null) return;
  child.kill('SIGTERM');
  const killer = setTimeout(() => child.kill('SIGKILL'), 5000);
  await exited;
  clearTimeout(killer);
}
