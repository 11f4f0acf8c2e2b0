// `npm run soak [-- --short] [part ...]`: proves with numbers that sse-guard holds under load, churn,
// faults and hostile input. Each part drives real servers on 127.0.0.1, prints its figures and
// checks its bounds; the last line counts the parts, and the exit code is 1 when one missed a bound.
import { spawnSync } from 'node:child_process';
import { streamCount } from './concurrency';
import { countUnhandled, fileLimit, Part, unhandled, type Mode } from './harness';
import { parts, type PartName } from './parts';

const args = process.argv.slice(2);
const mode: Mode = { short: args.includes('--short') };
const chosen = args.filter((arg) => !arg.startsWith('--'));
for (const name of chosen) if (!(name in parts)) throw new Error(`unknown part ${name}; parts: ${Object.keys(parts).join(', ')}`);
const names = (chosen.length > 0 ? chosen : Object.keys(parts)) as PartName[];

// The concurrency part holds one socket per stream in the client process and one in the server
// child. Node raises the soft limit to the hard one at startup; past that only a shell running with
// the right to raise the hard limit can help, so try once through bash and carry on either way.
function ensureFileLimit(needed: number): void {
  if (process.env.SSE_SOAK_LIMIT_RAISED !== undefined) return;
  const limit = fileLimit();
  if (limit >= needed) return;
  console.log(`open-file limit ${limit}, below the ${needed} needed: running again under a raised one`);
  const script = `ulimit -n ${needed} 2>/dev/null || ulimit -n "$(ulimit -Hn)"; exec "$0" "$@"`;
  const child = spawnSync('bash', ['-c', script, process.execPath, ...process.execArgv, ...process.argv.slice(1)], {
    stdio: 'inherit',
    env: { ...process.env, SSE_SOAK_LIMIT_RAISED: '1' },
  });
  process.exit(child.status ?? 1);
}

async function main(): Promise<void> {
  ensureFileLimit(streamCount(mode) + 1024);
  countUnhandled();
  console.log(`sse-guard soak, ${mode.short ? 'short' : 'full'} mode, node ${process.version}`);
  const started = Date.now();
  let passed = 0;
  let failed = 0;
  for (const name of names) {
    console.log(`\n${name}`);
    const part = new Part(name);
    const seen = unhandled.exceptions + unhandled.rejections;
    const partStarted = Date.now();
    // A part that hangs (a socket that never answers) must fail the run, not stall CI.
    const limitMs = (mode.short ? 60 : 600) * 1000;
    let watchdog: NodeJS.Timeout | undefined;
    const timedOut = new Promise<never>((_, reject) => {
      watchdog = setTimeout(() => reject(new Error(`still running after ${limitMs / 1000} s`)), limitMs);
    });
    try {
      const { run } = await parts[name]();
      await Promise.race([run(mode, part), timedOut]);
    } catch (error) {
      part.check('ran to the end', false, String(error instanceof Error ? error.stack : error));
    } finally {
      clearTimeout(watchdog);
    }
    if (unhandled.exceptions + unhandled.rejections > seen) part.check('no unhandled error in the clients', false, unhandled.last);
    const ok = part.failures.length === 0;
    if (ok) passed++;
    else failed++;
    console.log(`${ok ? 'PASS' : 'FAIL'} ${name} in ${((Date.now() - partStarted) / 1000).toFixed(1)} s`);
  }
  console.log(`\nwall time ${((Date.now() - started) / 1000).toFixed(1)} s`);
  console.log(`${passed} passed, ${failed} failed`);
  // Sockets a failed part left open must not keep the runner alive; the output goes out first.
  process.stdout.write('', () => process.exit(failed === 0 ? 0 : 1));
}

void main();
