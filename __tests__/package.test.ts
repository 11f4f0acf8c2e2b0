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
const EXTENSION: Record<Format, string> = { esm: 'mts', cjs: 'cts' };

// sse-guard/redis is built from src/redis.ts; until that module exists there is nothing to check.
const hasRedis = fs.existsSync(path.join(root, 'src', 'redis.ts'));
const entries = ['sse-guard', 'sse-guard/testing', ...(hasRedis ? ['sse-guard/redis'] : [])];

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
${hasRedis ? "import { redisAdapter } from 'sse-guard/redis';" : ''}

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
export const adapter: ChannelAdapter | undefined = ${hasRedis ? "redisAdapter('redis://127.0.0.1:6379')" : 'undefined'};
export const open: number = stats().open;
export const stopped: Promise<void> = shutdown({ graceMs: 10 });
export const code: string = new SseGuardError('ERR_SSE_INVALID_FIELD', 'x').code;
export const collected: Promise<Collected> = collect('http://127.0.0.1:1/events', { count: 1 });
`;

// One program per format, as each kind of consumer compiles. (A single program holding both formats
// sees two Express augmentations of res.sse, with different SseStream classes, and fails with TS2717.)
function tsconfig(format: Format): object {
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
    files: [`consumer.${EXTENSION[format]}`],
  };
}

let tmp: string;
let consumer: string;
let packed: string[];
// Started as soon as the package is installed, so they run side by side.
let runtime: Promise<Done>;
let typecheck: Record<Format, Promise<Done>>;

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
}

beforeAll(async () => {
  // Real path, so that the paths tsc lists compare with it.
  tmp = fs.realpathSync(fs.mkdtempSync(path.join(os.tmpdir(), 'sse-guard-package-')));
  consumer = path.join(tmp, 'consumer');
  const tarball = await pack();
  packed = (await run('tar', ['-tzf', tarball], tmp)).split('\n').filter(Boolean);
  await install(tarball);

  fs.writeFileSync(path.join(consumer, 'check.mjs'), CHECK_MJS);
  runtime = exec(process.execPath, ['check.mjs', JSON.stringify(entries)], consumer);
  const start = (format: Format): Promise<Done> => {
    fs.writeFileSync(path.join(consumer, `consumer.${EXTENSION[format]}`), CONSUMER_TS);
    fs.writeFileSync(path.join(consumer, `tsconfig.${format}.json`), JSON.stringify(tsconfig(format)));
    return exec(process.execPath, [tsc, '-p', `tsconfig.${format}.json`, '--listFiles', '--pretty', 'false'], consumer);
  };
  typecheck = { cjs: start('cjs'), esm: start('esm') };
}, 180_000);

afterAll(async () => {
  await Promise.all([runtime, typecheck?.esm, typecheck?.cjs]);
  if (tmp !== undefined) fs.rmSync(tmp, { recursive: true, force: true });
});

describe('the packed file list', () => {
  it('holds only the manifest, docs and the built dist/cjs and dist/esm', () => {
    const junk = packed.filter(
      (file) =>
        !/^package\/(package\.json|README\.md|LICENSE(\.md)?|dist\/(cjs|esm)\/[\w.-]+\.(js|d\.ts|json))$/.test(file) ||
        /\.(test|spec)\.|\.map$|tsbuildinfo/.test(file),
    );
    expect(junk).toEqual([]);
  });

  it('holds every file package.json points at (for modules whose source exists)', () => {
    const targets = new Set<string>([manifest.main, manifest.module, manifest.types, ...Object.values(manifest.bin)]);
    const walk = (node: unknown): void => {
      if (typeof node === 'string') targets.add(node);
      else if (node !== null && typeof node === 'object') Object.values(node).forEach(walk);
    };
    walk(manifest.exports);
    const expected = [...targets].filter((target) => {
      const built = /^\.\/dist\/(?:cjs|esm)\/(.+?)(?:\.d\.ts|\.js)$/.exec(target);
      return built === null || fs.existsSync(path.join(root, 'src', `${built[1]}.ts`));
    });
    expect(expected).toEqual(expect.arrayContaining(['./dist/cjs/index.js', './dist/esm/index.d.ts']));
    const missing = expected.filter((target) => !packed.includes(`package/${target.slice(2)}`));
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
      const entry = name === manifest.name ? 'index' : name.slice(manifest.name.length + 1);
      expect(result[format].modules[name].file).toBe(`node_modules/sse-guard/dist/${format}/${entry}.js`);
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

  (hasRedis ? it : it.skip)('gives redisAdapter from sse-guard/redis in both formats', () => {
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
    const other = format === 'esm' ? 'cjs' : 'esm';
    expect(files).toContain(`node_modules/sse-guard/dist/${format}/index.d.ts`);
    expect(files).not.toContain(`node_modules/sse-guard/dist/${other}/index.d.ts`);
  }, 120_000);
});
