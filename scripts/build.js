// Builds one implementation, CommonJS with declarations, in dist/cjs; dist/esm holds thin ES-module
// entries that re-export it (Node's "ESM wrapper" pattern). A process that loads the package through
// both `import` and `require` then has one copy of every class, symbol and registry, and TypeScript
// sees one declaration of every type: instanceof, shutdown() and Channel work across the two.
const { execFileSync } = require('node:child_process');
const fs = require('node:fs');
const path = require('node:path');

const root = path.join(__dirname, '..');
const dist = path.join(root, 'dist');
// Entry point name in dist/esm -> module in dist/cjs. package.json's "exports" names the same files.
const ENTRIES = { index: 'index', redis: 'fanout/redis', testing: 'testing/index' };

fs.rmSync(dist, { recursive: true, force: true });
execFileSync(process.execPath, [require.resolve('typescript/bin/tsc'), '-p', 'tsconfig.build.json'], { cwd: root, stdio: 'inherit' });
fs.writeFileSync(path.join(dist, 'cjs', 'package.json'), JSON.stringify({ type: 'commonjs' }) + '\n');

const esm = path.join(dist, 'esm');
fs.mkdirSync(esm);
fs.writeFileSync(path.join(esm, 'package.json'), JSON.stringify({ type: 'module' }) + '\n');
for (const [entry, target] of Object.entries(ENTRIES)) {
  const from = `../cjs/${target}.js`;
  // The names are read from the built module rather than listed by hand, so the two cannot drift.
  const names = Object.keys(require(path.join(dist, 'cjs', target))).filter((name) => name !== '__esModule');
  const js = `// ES-module entry: re-exports the CommonJS build, so both module systems share one copy.\nimport cjs from '${from}';\n\nexport const { ${names.join(', ')} } = cjs;\n`;
  fs.writeFileSync(path.join(esm, `${entry}.js`), js);
  fs.writeFileSync(path.join(esm, `${entry}.d.ts`), `export * from '${from}';\n`);
}
