// Node module hooks so `import src from './x.wgsl?raw'` means the same in Node as in Vite:
// the file's text as the default export. Registered by scripts/node-register.mjs.
import { readFile } from 'node:fs/promises';

export async function resolve(specifier, context, next) {
  if (specifier.endsWith('?raw')) {
    const bare = specifier.slice(0, -'?raw'.length);
    const { url } = await next(bare, context);
    return { url: `${url}?raw`, shortCircuit: true, format: 'module' };
  }
  return next(specifier, context);
}

export async function load(url, context, next) {
  if (url.endsWith('?raw')) {
    const text = await readFile(new URL(url.slice(0, -'?raw'.length)), 'utf8');
    return { format: 'module', source: `export default ${JSON.stringify(text)};`, shortCircuit: true };
  }
  return next(url, context);
}
