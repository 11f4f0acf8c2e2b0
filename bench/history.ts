// Scenario H: what one publish() costs on a Channel whose in-memory history is full, at history
// 1e3, 1e5 and 1e6, as a ratio against the smallest (measured in the same process, right before).
// The history is a ring: the target is the same cost at every size.
// Runs inside `npm run bench`, or alone: `tsx bench/history.ts [path to a build, default dist/cjs]`.
import path from 'node:path';
import { performance } from 'node:perf_hooks';

type ChannelClass = new (options: { history: number }) => { publish(event: { data: string }): Promise<string>; close(): Promise<void> };

export const HISTORY_SIZES = [1e3, 1e5, 1e6];
/** The ratio to the smallest history that one publish may cost at any size. */
export const HISTORY_TARGET = 1.5;

// µs per publish once the history is full: the best of `repeats` runs of `publishes` calls.
async function perPublish(Channel: ChannelClass, history: number, publishes: number, repeats: number): Promise<number> {
  const channel = new Channel({ history });
  const event = { data: 'x'.repeat(64) };
  try {
    for (let i = 0; i <= history; i++) await channel.publish(event);
    let best = Infinity;
    for (let r = 0; r < repeats; r++) {
      const started = performance.now();
      for (let i = 0; i < publishes; i++) await channel.publish(event);
      best = Math.min(best, ((performance.now() - started) * 1000) / publishes);
    }
    return best;
  } finally {
    await channel.close();
  }
}

/** A Markdown table: µs per publish and the ratio to the smallest history, per history size. */
export async function historyBench(build: string, quick: boolean): Promise<string> {
  // eslint-disable-next-line @typescript-eslint/no-require-imports
  const { Channel } = require(path.resolve(build, 'index.js')) as { Channel: ChannelClass };
  const publishes = quick ? 2000 : 10_000;
  const repeats = quick ? 3 : 5;
  // A first round to warm the JIT: otherwise the baseline, measured first, pays for it.
  await perPublish(Channel, HISTORY_SIZES[0]!, publishes, repeats);
  const rows = [`| history | µs per publish | vs history ${HISTORY_SIZES[0]!.toExponential(0).replace('e+', 'e')} (target ≤ ${HISTORY_TARGET}×) |`, '|---|---|---|'];
  let base = 0;
  for (const size of HISTORY_SIZES) {
    const micros = await perPublish(Channel, size, publishes, repeats);
    base ||= micros;
    const ratio = micros / base;
    rows.push(`| ${size.toExponential(0).replace('e+', 'e')} | ${micros.toFixed(2)} | ${ratio.toFixed(2)}× ${ratio <= HISTORY_TARGET ? '' : '**missed**'} |`);
  }
  return rows.join('\n');
}

if (require.main === module) {
  historyBench(process.argv[2] ?? path.join(__dirname, '..', 'dist', 'cjs'), process.argv.includes('--quick'))
    .then((table) => console.log(table))
    .catch((error: unknown) => {
      console.error(error);
      process.exitCode = 1;
    });
}
