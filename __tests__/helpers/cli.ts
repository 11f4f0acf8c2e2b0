// Runs the built `sse-guard` CLI (dist/cjs/doctor/cli.js, after `npm run build`) as a user would.
import { spawn } from 'node:child_process';
import fs from 'node:fs';
import path from 'node:path';

export const CLI = path.join(__dirname, '..', '..', 'dist', 'cjs', 'doctor', 'cli.js');

export interface CliRun {
  code: number | null;
  stdout: string;
  stderr: string;
}

/** Runs the CLI with `args` and extra environment variables (undefined removes one); killed after 20 s. */
export function cli(args: string[], env: Record<string, string | undefined> = {}): Promise<CliRun> {
  if (!fs.existsSync(CLI)) return Promise.reject(new Error(`${CLI} is missing: run npm run build first.`));
  const childEnv: NodeJS.ProcessEnv = { ...process.env };
  // The test machine's own proxy settings must not leak into a run that did not ask for them.
  for (const name of ['HTTP_PROXY', 'HTTPS_PROXY', 'NO_PROXY', 'http_proxy', 'https_proxy', 'no_proxy']) delete childEnv[name];
  for (const [name, value] of Object.entries(env)) {
    if (value === undefined) delete childEnv[name];
    else childEnv[name] = value;
  }
  return new Promise((resolve, reject) => {
    const child = spawn(process.execPath, [CLI, ...args], { stdio: ['ignore', 'pipe', 'pipe'], env: childEnv });
    let stdout = '';
    let stderr = '';
    child.stdout.on('data', (chunk: Buffer) => (stdout += chunk.toString()));
    child.stderr.on('data', (chunk: Buffer) => (stderr += chunk.toString()));
    const killer = setTimeout(() => child.kill('SIGKILL'), 20_000);
    child.on('error', reject);
    child.on('close', (code) => {
      clearTimeout(killer);
      resolve({ code, stdout, stderr });
    });
  });
}
