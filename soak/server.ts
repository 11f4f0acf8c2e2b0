// The server child: `server.ts <part> <config as JSON>`, started by spawnServer() with --expose-gc.
import { serveChild, type Serve } from './harness';
import { parts, type PartName } from './parts';

const [part = '', config = '{}'] = process.argv.slice(2);
if (!(part in parts)) throw new Error(`unknown soak part ${part}`);
parts[part as PartName]()
  .then((module) => {
    // Some parts (review) run their servers in the runner's own process and export no serve().
    if (!('serve' in module)) throw new Error(`soak part ${part} has no server child`);
    return serveChild(module.serve as Serve, JSON.parse(config));
  })
  .catch((error: unknown) => {
    console.error(error);
    process.exit(1);
  });
