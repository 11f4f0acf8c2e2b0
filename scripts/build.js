// Builds dist/cjs and dist/esm with declarations; each folder says which module format its .js files are.
// The doctor command runs from the CommonJS build only (package.json "bin"), so dist/esm leaves it out.
const { execFileSync } = require('node:child_process');
const fs = require('node:fs');
const path = require('node:path');

const root = path.join(__dirname, '..');
const tsc = require.resolve('typescript/bin/tsc');
fs.rmSync(path.join(root, 'dist'), { recursive: true, force: true });
for (const [config, type] of [['tsconfig.build.json', 'commonjs'], ['tsconfig.esm.json', 'module']]) {
  execFileSync(process.execPath, [tsc, '-p', config], { cwd: root, stdio: 'inherit' });
  const out = path.join(root, 'dist', type === 'module' ? 'esm' : 'cjs');
  fs.writeFileSync(path.join(out, 'package.json'), JSON.stringify({ type }) + '\n');
}
