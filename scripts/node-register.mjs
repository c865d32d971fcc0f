// Lets plain Node run the TypeScript sources: tsx for .ts, our hook for Vite-style `?raw`.
import { register } from 'node:module';
import { register as registerTsx } from 'tsx/esm/api';

registerTsx();
register('./raw-hooks.mjs', import.meta.url);
