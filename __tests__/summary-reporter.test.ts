// The summary at the end of `npm test` names every suite skipped for a missing binary, with the install command.
import { DEBIAN_PACKAGES, SKIP_TITLE_PREFIX, skipReason } from './helpers/binaries';

// eslint-disable-next-line @typescript-eslint/no-require-imports
const SummaryReporter = require('../scripts/summary-reporter.js') as new () => { onRunComplete(contexts: unknown, results: unknown): void };

type Assertion = { status: string; title: string; ancestorTitles: string[] };

/** What the reporter prints for a run of these files (the fields of jest's AggregatedResult it reads). */
function summary(files: Array<{ path: string; tests: Assertion[] }>): string[] {
  const tests = files.flatMap((file) => file.tests);
  const results = {
    numPassedTests: tests.filter((t) => t.status === 'passed').length,
    numFailedTests: tests.filter((t) => t.status === 'failed').length,
    numPendingTests: tests.filter((t) => t.status === 'pending').length,
    numTodoTests: 0,
    testResults: files.map((file) => ({ testFilePath: file.path, testResults: file.tests })),
  };
  const out: string[] = [];
  const spy = jest.spyOn(process.stdout, 'write').mockImplementation((chunk: string | Uint8Array) => {
    out.push(String(chunk));
    return true;
  });
  try {
    new SummaryReporter().onRunComplete(new Set(), results);
  } finally {
    spy.mockRestore();
  }
  return out.join('').split('\n').filter((line) => line !== '');
}

/** The tests describeWithBinary leaves behind when `binary` is missing: its marker and the suite's own, all pending. */
function skippedSuite(binary: string, suite: string): Assertion[] {
  return [
    { status: 'pending', title: `${SKIP_TITLE_PREFIX}${skipReason(binary)}`, ancestorTitles: [suite] },
    { status: 'pending', title: 'does something', ancestorTitles: [suite] },
  ];
}

it('prints one line per skipped suite with its reason and install command, then the counts', () => {
  const lines = summary([
    { path: 'a.test.ts', tests: [{ status: 'passed', title: 'works', ancestorTitles: ['a'] }, ...skippedSuite('nginx', 'behind nginx')] },
    { path: 'b.test.ts', tests: [...skippedSuite('varnishd', 'behind Varnish'), { status: 'pending', title: 'an it.skip of its own', ancestorTitles: ['b'] }] },
  ]);
  expect(lines).toEqual([
    'jest: skipped "behind nginx": nginx is not installed (Debian: apt-get install nginx)',
    'jest: skipped "behind Varnish": varnishd is not installed (Debian: apt-get install varnish)',
    'jest: 1 passed, 0 failed, 5 skipped',
  ]);
});

it('prints only the counts when nothing was skipped for a binary', () => {
  expect(summary([{ path: 'a.test.ts', tests: [{ status: 'passed', title: 'works', ancestorTitles: ['a'] }] }])).toEqual(['jest: 1 passed, 0 failed, 0 skipped']);
});

it('knows the package of every binary the suites use, including those whose package name differs', () => {
  expect(DEBIAN_PACKAGES).toMatchObject({ 'redis-server': 'redis-server', nginx: 'nginx', chromium: 'chromium', haproxy: 'haproxy', apache2: 'apache2', varnishd: 'varnish', caddy: 'caddy', squid: 'squid' });
});
