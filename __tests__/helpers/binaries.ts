// Suites that need a system binary (redis-server, nginx, chromium): skipped with a printed reason
// when it is absent, and failed instead under SSE_GUARD_REQUIRE_ALL=1 (which CI sets).
import fs from 'node:fs';
import path from 'node:path';

const EXTRA_DIRS = ['/usr/sbin', '/usr/local/sbin', '/sbin'];

/** Absolute path of an executable on PATH (or in the sbin folders), or undefined. */
export function findBinary(name: string): string | undefined {
  const dirs = [...(process.env.PATH ?? '').split(path.delimiter), ...EXTRA_DIRS];
  for (const dir of dirs) {
    if (dir === '') continue;
    const candidate = path.join(dir, name);
    try {
      fs.accessSync(candidate, fs.constants.X_OK);
      return candidate;
    } catch {
      // not in this folder
    }
  }
  return undefined;
}

/** `describe` that hands the binary's path to its body, or skips (or fails) when it is missing. */
export function describeWithBinary(name: string, title: string, body: (binary: string) => void): void {
  const binary = findBinary(name);
  if (binary !== undefined) {
    describe(title, () => body(binary));
    return;
  }
  const reason = `${name} is not installed (Debian: apt-get install ${name === 'nginx' ? 'nginx' : name === 'chromium' ? 'chromium' : 'redis-server'})`;
  if (process.env.SSE_GUARD_REQUIRE_ALL === '1') {
    describe(title, () => {
      it(`requires ${name}`, () => {
        throw new Error(`${reason}; SSE_GUARD_REQUIRE_ALL=1 forbids skipping.`);
      });
    });
    return;
  }
  console.warn(`Skipping "${title}": ${reason}.`);
  const skip = describe.skip;
  skip(title, () => body(''));
}
