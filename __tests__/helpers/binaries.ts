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

/** The Debian package of each binary a suite may need, for the install hint. */
export const DEBIAN_PACKAGES: Readonly<Record<string, string>> = {
  'redis-server': 'redis-server',
  nginx: 'nginx',
  chromium: 'chromium',
  haproxy: 'haproxy',
  apache2: 'apache2',
  varnishd: 'varnish',
  caddy: 'caddy',
  squid: 'squid',
  openssl: 'openssl',
};

/** Why a suite needing `name` is skipped, with the command that installs it. */
export function skipReason(name: string): string {
  return `${name} is not installed (Debian: apt-get install ${DEBIAN_PACKAGES[name] ?? name})`;
}

// jest's default output hides what a skipped suite prints: the reason travels as the title of a
// skipped test instead, which scripts/summary-reporter.js finds and prints at the end of the run.
export const SKIP_TITLE_PREFIX = 'skipped because ';

/** `describe` that hands the binary's path to its body, or skips (or fails) when it is missing. */
export function describeWithBinary(name: string, title: string, body: (binary: string) => void): void {
  const binary = findBinary(name);
  if (binary !== undefined) {
    describe(title, () => body(binary));
    return;
  }
  const reason = skipReason(name);
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
  skip(title, () => {
    it(`${SKIP_TITLE_PREFIX}${reason}`, () => {});
    body('');
  });
}
