// The server child: `server.ts <part> <config as JSON>`, started by spawnServer() with --expose-gc.
import { serveChild, type Serve } from './harness';
import { parts, type PartName } from './parts';

const [part = '', config = '{}'] = process.argv.slice(2);
if (!(part in parts)) throw new Error(`unknown soak part ${part}`);
parts[part as PartName]()
  .then(({ serve }) => serveChild(serve as Serve, JSON.parse(config)))
  .catch((error: unknown) => {
    console.error(error);
    process.exit(1);
  });
