// The published package as a consumer gets it: packed, installed, required, imported and type-checked.
import { execFile } from 'node:child_process';
import fs from 'node:fs';
import os from 'node:os';
import path from 'node:path';

interface Done {
  failed: boolean;
  stdout: string;
  stderr: string;
  message: string;
}

/** Runs a command to its end. Never rejects, so a slow check can start early and be awaited by its test. */
function exec(file: string, args: string[], cwd: string): Promise<Done> {
  return new Promise((resolve) => {
    execFile(file, args, { cwd, timeout: 120_000, maxBuffer: 16 * 1024 * 1024 }, (err, stdout, stderr) => {
      resolve({ failed: err !== null, stdout, stderr, message: err?.message ?? '' });
    });
  });
}

async function run(file: string, args: string[], cwd: string): Promise<string> {
  const done = await exec(file, args, cwd);
  // tsc (run by prepack) writes its diagnostics to stdout.
  if (done.failed) throw new Error(`${[file, ...args].join(' ')} failed:\n${done.stdout}${done.stderr || done.message}`);
  return done.stdout;
}

const root = path.join(__dirname, '..');
const manifest = JSON.parse(fs.readFileSync(path.join(root, 'package.json'), 'utf8')) as {
  name: string;
  version: string;
  main: string;
  module: string;
  types: string;
  bin: Record<string, string>;
  exports: Record<string, unknown>;
  peerDependencies: Record<string, string>;
};
const tsc = require.resolve('typescript/bin/tsc');
const FORMATS = ['cjs', 'esm'] as const;
type Format = (typeof FORMATS)[number];

const entries = ['sse-guard', 'sse-guard/testing', 'sse-guard/redis'];

// Both formats, in one process: `require` takes the "require" condition, `import()` the "import" one.
const CHECK_MJS = `
import { once } from 'node:events';
import { createRequire } from 'node:module';
import path from 'node:path';
import { fileURLToPath } from 'node:url';

const require = createRequire(import.meta.url);
const express = require('express');
const formats = {
  cjs: { load: async (name) => require(name), resolve: (name) => require.resolve(name) },
  esm: { load: (name) => import(name), resolve: (name) => fileURLToPath(import.meta.resolve(name)) },
};
const result = {};
for (const [format, { load, resolve }] of Object.entries(formats)) {
  const modules = {};
  for (const name of JSON.parse(process.argv[2])) {
    const mod = await load(name);
    const exports = Object.fromEntries(Object.keys(mod).sort().map((key) => [key, typeof mod[key]]));
    modules[name] = { file: path.relative(process.cwd(), resolve(name)).split(path.sep).join('/'), exports };
  }
  const { sse } = await load('sse-guard');
  const { collect } = await load('sse-guard/testing');
  const app = express();
  app.get('/events', sse({ heartbeat: false }), (req, res) => {
    res.sse.send({ event: 'hello', id: 1, data: { format } });
  });
  const server = app.listen(0, '127.0.0.1');
  await once(server, 'listening');
  try {
    const got = await collect('http://127.0.0.1:' + server.address().port + '/events', { count: 1, timeout: 5000 });
    const events = got.events.map(({ event, data, id }) => ({ event, data, id }));
    result[format] = { modules, status: got.status, contentType: got.headers['content-type'], events };
  } finally {
    server.closeAllConnections();
    server.close();
  }
}

// Both builds in one process, as when an app imports the package and a dependency requires it:
// one class per name, a stream opened by one build fed by a Channel of the other and ended by its shutdown().
{
  const cjs = require('sse-guard');
  const esm = await import('sse-guard');
  const same = Object.keys(cjs).filter((name) => cjs[name] === esm[name]).sort();
  const caught = (() => { try { esm.sse({ heartbeat: -1 }); } catch (error) { return error; } })();
  const channel = new cjs.Channel({ history: 5 });
  const app = express();
  app.get('/events', esm.sse({ heartbeat: false }), (req, res) => channel.subscribe(res.sse));
  // A second copy of the package, as npm nests one for a dependency that pins another version.
  const copy = require(path.resolve('node_modules/nested/node_modules/sse-guard'));
  app.get('/copy', copy.sse({ heartbeat: false }), () => {});
  // guard() of both copies: one set of header watchers serves both, each copy's stream is guarded once.
  const handWritten = (guard) => express.Router().use(guard({ heartbeat: false })).get('/', (req, res) => {
    res.setHeader('Content-Type', 'text/event-stream');
    res.write('data: g\\n\\n');
  });
  app.use('/guard-main', handWritten(cjs.guard));
  app.use('/guard-copy', handWritten(copy.guard));
  const server = app.listen(0, '127.0.0.1');
  await once(server, 'listening');
  const url = 'http://127.0.0.1:' + server.address().port + '/events';
  const { collect } = await import('sse-guard/testing');
  const got = collect(url, { count: 2, timeout: 5000 });
  const deadline = Date.now() + 5000;
  const until = async (done) => { while (!done() && Date.now() < deadline) await new Promise((r) => setTimeout(r, 5)); };
  await until(() => channel.size === 1);
  await channel.publish({ data: 'one' });
  await channel.publish({ data: 'two' });
  const events = (await got).events.map((e) => e.data);
  await until(() => cjs.stats().open === 0);
  const guardedHeaders = {};
  for (const name of ['guard-main', 'guard-copy']) {
    const { headers } = await collect(url.replace(/events$/, name), { count: 1, timeout: 5000 });
    guardedHeaders[name] = { accel: headers['x-accel-buffering'], cacheControl: headers['cache-control'] };
  }
  await until(() => cjs.stats().open === 0);
  const reconnect = collect(url, { count: 1, timeout: 5000 });
  const fromCopy = collect(url.replace(/events$/, 'copy'), { count: 1, timeout: 5000 });
  const guardedCut = ['guard-main', 'guard-copy'].map((name) => collect(url.replace(/events$/, name), { timeout: 5000 }));
  await until(() => cjs.stats().open === 4);
  const openBefore = cjs.stats().open;
  const started = Date.now();
  await cjs.shutdown({ graceMs: 2000 });
  const closed = new Promise((resolve) => server.close(() => resolve(Date.now() - started)));
  result.mixed = {
    same,
    keys: Object.keys(cjs).length,
    instanceofAcross: caught instanceof cjs.SseGuardError && caught instanceof esm.SseGuardError,
    code: caught.code,
    events,
    openBefore,
    openAfter: esm.stats().open,
    cut: (await reconnect).ended,
    copyDistinct: copy.sse !== cjs.sse,
    copyCut: (await fromCopy).ended,
    guardedHeaders,
    guardedCut: (await Promise.all(guardedCut)).map((got) => got.ended),
    closeMs: await closed,
  };
}
process.stdout.write(JSON.stringify(result));
`;

// One source, checked twice: as an ES module (.mts) and as CommonJS (.cts), each against its own types.
const CONSUMER_TS = `
import express from 'express';
import {
  Channel,
  SseGuardError,
  shutdown,
  sse,
  stats,
  type ChannelAdapter,
  type ChannelOptions,
  type SseEvent,
  type SseOptions,
  type SseStream,
} from 'sse-guard';
import { collect, type Collected } from 'sse-guard/testing';
import { redisAdapter } from 'sse-guard/redis';

type Ticks = { tick: { n: number } };

const options: SseOptions = { heartbeat: 10_000, compression: 'bypass', timeoutHandler: 'refuse' };
const app = express();
app.get('/events', sse(options), (_req, res) => {
  const accepted: boolean = res.sse.send({ event: 'greeting', data: { hello: 'world' }, id: 1 });
  res.sse.comment(String(accepted));
});
app.get('/ticks', sse<Ticks>((stream) => tick(stream)));

export function tick(stream: SseStream<Ticks>): boolean {
  // @ts-expect-error the event map says n is a number
  stream.send({ event: 'tick', data: { n: 'x' } });
  return stream.send({ event: 'tick', data: { n: 1 } });
}

const channelOptions: ChannelOptions = { history: 10 };
export const channel = new Channel(channelOptions);
export const published: Promise<string> = channel.publish({ data: 0 } satisfies SseEvent);
export const adapter: ChannelAdapter = redisAdapter('redis://127.0.0.1:6379');
export const open: number = stats().open;
export const stopped: Promise<void> = shutdown({ graceMs: 10 });
export const code: string = new SseGuardError('ERR_SSE_INVALID_FIELD', 'x').code;
export const collected: Promise<Collected> = collect('http://127.0.0.1:1/events', { count: 1 });
`;

// A program with an ES module and a CommonJS module that meet: the app (.mts) hands res.sse to a
// Channel made in a .cts file. With two copies of the declarations this fails to compile
// (TS2717 on the Express augmentation, and '#private' refers to a different member).
const MIXED_APP_MTS = `
import express from 'express';
import { sse, SseGuardError } from 'sse-guard';
import { channel, isGuardError } from './channel.cjs';

const app = express();
app.get('/news', sse(), (_req, res) => channel.subscribe(res.sse));
export const same: boolean = isGuardError(new SseGuardError('ERR_SSE_INVALID_FIELD', 'x'));
export default app;
`;
const MIXED_CHANNEL_CTS = `
import { Channel, SseGuardError } from 'sse-guard';

export const channel = new Channel({ history: 10 });
export const isGuardError = (error: unknown): error is SseGuardError => error instanceof SseGuardError;
`;

function tsconfig(files: string[]): object {
  return {
    compilerOptions: {
      module: 'node16',
      moduleResolution: 'node16',
      target: 'ES2022',
      strict: true,
      esModuleInterop: true,
      noEmit: true,
      // The packed declarations are checked too: a broken .d.ts must fail here, not in a user's build.
      skipLibCheck: false,
      types: ['node'],
    },
    files,
  };
}

let tmp: string;
let consumer: string;
let packed: string[];
// Started as soon as the package is installed, so they run side by side.
let runtime: Promise<Done>;
let jestRun: Promise<Done>;
let typecheck: Record<Format | 'mixed', Promise<Done>>;

// Packs a copy, not the working tree: prepack rebuilds dist/, which other suites may be reading.
async function pack(): Promise<string> {
  const staging = path.join(tmp, 'staging');
  const skip = new Set(['node_modules', 'dist', '.git', 'coverage', path.join('__tests__', 'artifacts'), path.join('bench', 'results')]);
  fs.cpSync(root, staging, { recursive: true, filter: (src) => !skip.has(path.relative(root, src)) });
  fs.symlinkSync(path.join(root, 'node_modules'), path.join(staging, 'node_modules'), 'dir');
  await run('npm', ['pack', '--pack-destination', tmp, '--silent'], staging);
  return path.join(tmp, `${manifest.name}-${manifest.version}.tgz`);
}

// Installs the tarball the way npm lays it out; the peers and the consumer's @types come from this repo.
async function install(tarball: string): Promise<void> {
  const modules = path.join(consumer, 'node_modules');
  const target = path.join(modules, manifest.name);
  fs.mkdirSync(target, { recursive: true });
  await run('tar', ['-xzf', tarball, '-C', target, '--strip-components=1'], tmp);
  for (const name of [...Object.keys(manifest.peerDependencies), '@types/node', '@types/express']) {
    fs.mkdirSync(path.dirname(path.join(modules, name)), { recursive: true });
    fs.symlinkSync(path.join(root, 'node_modules', name), path.join(modules, name), 'dir');
  }
  fs.writeFileSync(path.join(consumer, 'package.json'), JSON.stringify({ name: 'consumer', private: true }));
  fs.cpSync(target, path.join(modules, 'nested', 'node_modules', manifest.name), { recursive: true });
}

// A test file of a consumer's own Jest suite. Jest runs each file in a realm of its own (its own
// global object) within one process, where Node's modules, and their prototypes, are shared.
const REALM_TEST_JS = `const http = require('node:http');
const express = require('express');
const { guard } = require('sse-guard');

test('guard() guards a hand-written stream of this test file', async () => {
  const app = express();
  app.use(guard());
  app.get('/events', (_req, res) => {
    res.writeHead(200, { 'Content-Type': 'text/event-stream' });
    res.end('data: one\\n\\n');
  });
  const server = app.listen(0, '127.0.0.1');
  await new Promise((resolve) => server.once('listening', resolve));
  try {
    const headers = await new Promise((resolve, reject) => {
      http.get({ host: '127.0.0.1', port: server.address().port, path: '/events' }, (res) => {
        res.resume();
        resolve(res.headers);
      }).on('error', reject);
    });
    expect(headers['x-accel-buffering']).toBe('no');
    expect(headers['cache-control']).toBe('no-transform');
  } finally {
    await new Promise((resolve) => server.close(resolve));
  }
});
`;

beforeAll(async () => {
  // Real path, so that the paths tsc lists compare with it.
  tmp = fs.realpathSync(fs.mkdtempSync(path.join(os.tmpdir(), 'sse-guard-package-')));
  consumer = path.join(tmp, 'consumer');
  const tarball = await pack();
  packed = (await run('tar', ['-tzf', tarball], tmp)).split('\n').filter(Boolean);
  await install(tarball);

  fs.writeFileSync(path.join(consumer, 'check.mjs'), CHECK_MJS);
  runtime = exec(process.execPath, ['check.mjs', JSON.stringify(entries)], consumer);
  const start = (name: string, files: Record<string, string>): Promise<Done> => {
    for (const [file, text] of Object.entries(files)) fs.writeFileSync(path.join(consumer, file), text);
    fs.writeFileSync(path.join(consumer, `tsconfig.${name}.json`), JSON.stringify(tsconfig(Object.keys(files))));
    return exec(process.execPath, [tsc, '-p', `tsconfig.${name}.json`, '--listFiles', '--pretty', 'false'], consumer);
  };
  const realms = path.join(consumer, 'realms');
  fs.mkdirSync(realms);
  for (const name of ['first', 'second']) fs.writeFileSync(path.join(realms, `${name}.realm.test.js`), REALM_TEST_JS);
  const jestConfig = { rootDir: realms, cacheDirectory: path.join(tmp, 'jest-cache'), testEnvironment: 'node', testMatch: ['**/*.realm.test.js'], transform: {} };
  jestRun = exec(process.execPath, [path.join(root, 'node_modules', 'jest', 'bin', 'jest.js'), '--runInBand', '--ci', `--config=${JSON.stringify(jestConfig)}`], consumer);
  typecheck = {
    cjs: start('cjs', { 'consumer.cts': CONSUMER_TS }),
    esm: start('esm', { 'consumer.mts': CONSUMER_TS }),
    mixed: start('mixed', { 'app.mts': MIXED_APP_MTS, 'channel.cts': MIXED_CHANNEL_CTS }),
  };
}, 180_000);

afterAll(async () => {
  await Promise.all([runtime, jestRun, typecheck?.esm, typecheck?.cjs, typecheck?.mixed]);
  if (tmp !== undefined) fs.rmSync(tmp, { recursive: true, force: true });
});

describe('the packed file list', () => {
  it('holds only the manifest, docs and the built dist/cjs and dist/esm', () => {
    const junk = packed.filter(
      (file) =>
        !/^package\/(package\.json|README\.md|LICENSE(\.md)?|dist\/(cjs|esm)\/[\w./-]+\.(js|d\.ts|json))$/.test(file) ||
        /\.(test|spec)\.|\.map$|tsbuildinfo/.test(file),
    );
    expect(junk).toEqual([]);
  });

  it('holds every file package.json points at', () => {
    const targets = new Set<string>([manifest.main, manifest.module, manifest.types, ...Object.values(manifest.bin)]);
    const walk = (node: unknown): void => {
      if (typeof node === 'string') targets.add(node);
      else if (node !== null && typeof node === 'object') Object.values(node).forEach(walk);
    };
    walk(manifest.exports);
    expect([...targets]).toEqual(expect.arrayContaining(['./dist/cjs/index.js', './dist/esm/index.d.ts']));
    const missing = [...targets].filter((target) => !packed.includes(`package/${target.slice(2)}`));
    expect(missing).toEqual([]);
  });

  it('ships each bin as a node script (npx runs it through its shebang)', () => {
    for (const bin of Object.values(manifest.bin)) {
      const file = path.join(consumer, 'node_modules', manifest.name, bin);
      if (fs.existsSync(file)) expect(fs.readFileSync(file, 'utf8')).toMatch(/^#!\/usr\/bin\/env node\n/);
    }
  });
});

describe('the installed package at run time', () => {
  interface FormatResult {
    modules: Record<string, { file: string; exports: Record<string, string> }>;
    status: number;
    contentType: string;
    events: Array<{ event: string; data: string; id: string }>;
  }
  let result: Record<Format, FormatResult>;

  beforeAll(async () => {
    const done = await runtime;
    if (done.failed) throw new Error(`check.mjs failed:\n${done.stderr || done.message}`);
    result = JSON.parse(done.stdout) as typeof result;
  }, 120_000);

  it.each(FORMATS)('loads each entry point from dist/%s', (format) => {
    for (const name of entries) {
      const subpath = name === manifest.name ? '.' : `.${name.slice(manifest.name.length)}`;
      const target = (manifest.exports[subpath] as Record<string, { default: string }>)[format === 'esm' ? 'import' : 'require']!.default;
      expect(target.startsWith(`./dist/${format}/`)).toBe(true);
      expect(result[format].modules[name].file).toBe(`node_modules/sse-guard/${target.slice(2)}`);
    }
  });

  it.each(FORMATS)('gives sse, Channel, SseGuardError, shutdown and stats through %s', (format) => {
    expect(result[format].modules['sse-guard'].exports).toMatchObject({
      sse: 'function',
      Channel: 'function',
      SseGuardError: 'function',
      shutdown: 'function',
      stats: 'function',
    });
    expect(result[format].modules['sse-guard/testing'].exports).toMatchObject({ collect: 'function' });
  });

  it('gives redisAdapter from sse-guard/redis in both formats', () => {
    for (const format of FORMATS) {
      expect(result[format].modules['sse-guard/redis'].exports).toMatchObject({ redisAdapter: 'function' });
    }
  });

  it('exports the same names from CommonJS and ESM', () => {
    for (const name of entries) expect(result.cjs.modules[name].exports).toEqual(result.esm.modules[name].exports);
  });

  it.each(FORMATS)('streams an event through a real server from the %s build', (format) => {
    expect(result[format].status).toBe(200);
    expect(result[format].contentType).toBe('text/event-stream; charset=utf-8');
    expect(result[format].events).toEqual([{ event: 'hello', data: JSON.stringify({ format }), id: '1' }]);
  });
});

describe('both builds in one process', () => {
  let mixed: {
    same: string[];
    keys: number;
    instanceofAcross: boolean;
    code: string;
    events: string[];
    openBefore: number;
    openAfter: number;
    cut: boolean;
    copyDistinct: boolean;
    copyCut: boolean;
    guardedHeaders: Record<string, { accel: string; cacheControl: string }>;
    guardedCut: boolean[];
    closeMs: number;
  };

  beforeAll(async () => {
    const done = await runtime;
    if (done.failed) throw new Error(`check.mjs failed:\n${done.stderr || done.message}`);
    mixed = (JSON.parse(done.stdout) as { mixed: typeof mixed }).mixed;
  }, 120_000);

  it('gives the very same class and function for every export, so instanceof holds across import and require', () => {
    expect(mixed.same).toHaveLength(mixed.keys);
    expect(mixed.instanceofAcross).toBe(true);
    expect(mixed.code).toBe('ERR_SSE_INVALID_OPTION');
  });

  it("lets a Channel of one build publish to a stream of the other", () => {
    expect(mixed.events).toEqual(['one', 'two']);
  });

  it("ends the streams of the other build and of a second copy of the package in shutdown(), so that server.close() finishes", () => {
    expect(mixed.openBefore).toBe(4);
    expect(mixed.openAfter).toBe(0);
    expect(mixed.cut).toBe(true);
    expect(mixed.copyDistinct).toBe(true);
    expect(mixed.copyCut).toBe(true);
    expect(mixed.closeMs).toBeLessThan(2000);
  });

  it('guards the streams of guard() from either copy of the package, ended by either copy’s shutdown()', () => {
    expect(mixed.guardedHeaders).toEqual({
      'guard-main': { accel: 'no', cacheControl: 'no-transform' },
      'guard-copy': { accel: 'no', cacheControl: 'no-transform' },
    });
    expect(mixed.guardedCut).toEqual([true, true]);
  });
});

describe("a consumer's Jest suite", () => {
  it('has guard() guard the streams of every test file, in one process (each file a realm of its own)', async () => {
    const done = await jestRun;
    expect({ failed: done.failed, output: done.stderr }).toEqual({ failed: false, output: expect.stringMatching(/Tests:\s+2 passed, 2 total/) });
  }, 120_000);
});

describe('the packed types', () => {
  it.each([
    ['an ESM (.mts)', 'esm'],
    ['a CommonJS (.cts)', 'cjs'],
  ] as const)('type-checks %s consumer under moduleResolution node16 against dist/%s', async (_kind, format) => {
    const done = await typecheck[format];
    const lines = done.stdout.split('\n');
    expect(lines.filter((line) => / error TS\d+:/.test(line))).toEqual([]);
    if (done.failed) throw new Error(done.stderr || done.message);
    const files = lines.filter((line) => path.isAbsolute(line)).map((file) => path.relative(consumer, file).split(path.sep).join('/'));
    expect(files).toContain(`node_modules/sse-guard/dist/${format}/index.d.ts`);
    // One set of declarations: the ESM entry's types re-export the CommonJS ones.
    expect(files).toContain('node_modules/sse-guard/dist/cjs/index.d.ts');
  }, 120_000);

  it('type-checks a program whose .mts module hands res.sse to a Channel made in a .cts module', async () => {
    const done = await typecheck.mixed;
    expect(done.stdout.split('\n').filter((line) => / error TS\d+:/.test(line))).toEqual([]);
    if (done.failed) throw new Error(done.stderr || done.message);
  }, 120_000);
});
