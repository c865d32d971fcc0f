// Bundles two benchmarks as plain JavaScript, for a machine that has Node (or a carried node
// binary) but not this checkout's node_modules, e.g. a many-core or GPU box lent for a short run:
//   dist/kernels/{sim,sim-worker}.mjs
//                                   bench/sim.ts with the corpus and the WGSL inside:
//                                   node dist/kernels/sim.mjs --workers N [bench:sim options]
//                                   (--learner webgpu: the replicas on this machine's GPU)
//   dist/kernels/matmul.mjs          the matmul kernel lab on Dawn (dawn.node copied beside it;
//                                   reads src/shaders and writes dist/results/):
//                                   VK_ICD_FILENAMES=<icd.json> node dist/kernels/matmul.mjs
//   dist/kernels/profile.mjs         bench/profile.ts (the engine's step, per kernel and whole),
//                                   finding the GPU as the Node volunteer does
//   dist/kernels/gpu-check.mjs       bench/gpu-check.ts (the GPU's step against the CPU reference)
//   dist/kernels/torch.mjs           bench/torch.ts (Murmur vs PyTorch on this GPU; torch_gpt.py
//                                   beside it, run by the machine's python3 with its torch)
// It also measures what the browser downloads: the training worker (what a volunteer's browser
// loads before the first step) and embed.js (what a site that embeds the widget loads), minified
// as a production build ships them, raw and gzipped, with TypeBox's share of each; a table, and
// bench/results/bundle-size.json.
// Run: node scripts/bundle-bench.mjs [--device] [--against REV]...
//   --device also packs what scripts/device-run.sh needs on a machine without Node or a Vulkan
//   loader: dist/node.xz (this Node, xz-compressed) and dist/vk (libvulkan.so.1 and an ICD file
//   for the NVIDIA driver's headless EGL entry point).
//   --against REV (repeatable, newest first) measures the same browser bundles from the src/ of
//   older commits beside this tree's, e.g. the commit before TypeBox entered the worker: 54aae15^.
import { build } from 'esbuild';
import { execFileSync } from 'node:child_process';
import { copyFileSync, cpSync, existsSync, mkdirSync, mkdtempSync, readFileSync, renameSync, rmSync, statSync, writeFileSync } from 'node:fs';
import { cpus, loadavg, tmpdir } from 'node:os';
import { fileURLToPath } from 'node:url';
import { dirname, join } from 'node:path';
import { gzipSync } from 'node:zlib';

const root = join(dirname(fileURLToPath(import.meta.url)), '..');
// CommonJS dependencies call require(); give each ESM bundle a real one.
const banner = { js: "import { createRequire as __murmurCreateRequire } from 'node:module'; const require = __murmurCreateRequire(import.meta.url);" };
const common = { bundle: true, platform: 'node', format: 'esm', target: 'node20', outExtension: { '.js': '.mjs' }, banner, logLevel: 'warning' };

// `webgpu` becomes the dawn.node copied beside the bundle.
const dawnPlugin = {
  name: 'dawn-beside-bundle',
  setup(b) {
    b.onResolve({ filter: /^webgpu$/ }, () => ({ path: 'webgpu', namespace: 'dawn' }));
    b.onLoad({ filter: /.*/, namespace: 'dawn' }, () => ({
      // A computed name, so esbuild leaves the load to run time (relative to the bundle).
      contents: "const name = './dawn.node'; const { create, globals } = require(name); export { create, globals };",
      loader: 'js',
    }));
  },
};

// WGSL sources imported with `?raw` become strings inside the bundle.
const rawPlugin = {
  name: 'raw-text',
  setup(b) {
    b.onResolve({ filter: /\?raw$/ }, (a) => ({ path: join(a.resolveDir, a.path.replace(/\?raw$/, '')), namespace: 'raw' }));
    b.onLoad({ filter: /.*/, namespace: 'raw' }, (a) => ({ contents: readFileSync(a.path, 'utf8'), loader: 'text' }));
  },
};

// The kernel lab sits two folders below the root, as bench/kernels does, so its relative paths
// (../../src/shaders/, ./matmul/, ../results/) resolve the same way.
const kernels = join(root, 'dist/kernels');
mkdirSync(join(root, 'dist/results'), { recursive: true });
await build({
  ...common,
  entryPoints: { matmul: join(root, 'bench/kernels/matmul.ts') },
  outdir: kernels,
  plugins: [dawnPlugin],
});
copyFileSync(join(root, `node_modules/webgpu/dist/linux-x64/dawn.node`), join(kernels, 'dawn.node'));
// src/gpu/node-gpu.ts finds the NVIDIA headless manifest beside itself, i.e. beside the bundle.
copyFileSync(join(root, 'src/gpu/nvidia-egl-icd.json'), join(kernels, 'nvidia-egl-icd.json'));

// The engine profile (bench/profile.ts) with its WGSL inside; it finds the GPU as the Node
// volunteer does (src/gpu/node-gpu.ts) and writes dist/kernels/results/profile.json.
await build({
  ...common,
  entryPoints: {
    profile: join(root, 'bench/profile.ts'), 'gpu-check': join(root, 'bench/gpu-check.ts'), torch: join(root, 'bench/torch.ts'), variants: join(root, 'bench/variants.ts'),
    sim: join(root, 'bench/sim.ts'), 'sim-worker': join(root, 'bench/sim-worker.ts'),
  },
  outdir: kernels,
  // The corpus package reads its text files from disk under "main"; its "browser" entry imports
  // them, so the bundle carries the book.
  mainFields: ['browser', 'module', 'main'],
  plugins: [dawnPlugin, rawPlugin],
});
cpSync(join(root, 'bench/kernels/matmul'), join(kernels, 'matmul'), { recursive: true });
copyFileSync(join(root, 'bench/torch_gpt.py'), join(kernels, 'torch_gpt.py'));
console.log('wrote dist/kernels/{sim,sim-worker,matmul,profile,gpu-check,torch,variants}.mjs, torch_gpt.py, dawn.node, matmul/');

// ---------- browser bundle sizes ----------

/** The browser entries whose download size matters, as the production build bundles them. */
const BROWSER_ENTRIES = { worker: 'src/worker/worker.ts', 'embed.js': 'src/ui/embed/embed.ts' };

/** Each entry of `srcRoot` (a tree holding src/) minified for the browser: bytes, gzip -9 bytes, TypeBox's minified bytes. */
async function browserSizes(srcRoot) {
  const sizes = {};
  for (const [name, entry] of Object.entries(BROWSER_ENTRIES)) {
    const r = await build({
      entryPoints: [join(srcRoot, entry)], bundle: true, write: false, minify: true, format: 'esm', platform: 'browser', target: 'es2022',
      // This checkout's tsconfig and packages for every tree, so only src/ differs between columns.
      metafile: true, tsconfig: join(root, 'tsconfig.json'), nodePaths: [join(root, 'node_modules')], define: { global: 'globalThis' }, plugins: [rawPlugin], logLevel: 'error',
    });
    const code = r.outputFiles[0].contents;
    const inputs = Object.entries(Object.values(r.metafile.outputs)[0].inputs);
    const typebox = inputs.filter(([path]) => path.includes('node_modules/typebox/')).reduce((a, [, v]) => a + v.bytesInOutput, 0);
    sizes[name] = { bytes: code.length, gzipBytes: gzipSync(code, { level: 9 }).length, typeboxBytes: typebox };
  }
  return sizes;
}

const git = (...args) => execFileSync('git', ['-C', root, ...args], { encoding: 'utf8' }).trim();
const here = { rev: 'this tree', commit: git('rev-parse', '--short', 'HEAD'), dirty: git('status', '--porcelain', '--', 'src').length > 0, sizes: await browserSizes(root) };
const columns = [here];
for (const [i, arg] of process.argv.entries()) {
  if (arg !== '--against') continue;
  const rev = process.argv[i + 1];
  if (!rev || rev.startsWith('--')) throw new Error('--against needs a commit, e.g. --against 54aae15^');
  const dir = mkdtempSync(join(tmpdir(), 'murmur-src-'));
  try {
    execFileSync('sh', ['-c', `git -C "${root}" archive "${rev}" src | tar -x -C "${dir}"`]);
    columns.push({ rev, commit: git('rev-parse', '--short', rev), dirty: false, sizes: await browserSizes(dir) });
  } finally {
    rmSync(dir, { recursive: true, force: true });
  }
}
const kb = (n) => (n / 1024).toFixed(1).padStart(7);
console.log(`\nbrowser bundles, minified (KiB; gzip -9; TypeBox's minified share)`);
console.log(['bundle'.padEnd(10), ...columns.map((c) => `${c.rev} (${c.commit}${c.dirty ? '+' : ''})`.padEnd(30))].join(''));
for (const name of Object.keys(BROWSER_ENTRIES)) {
  const cells = columns.map((c) => { const s = c.sizes[name]; return `${kb(s.bytes)} ${kb(s.gzipBytes)} ${kb(s.typeboxBytes)}`.padEnd(30); });
  // Growth over the oldest commit asked for (the last --against).
  const base = columns.at(-1).sizes[name];
  const growth = columns.length > 1 ? `  ${kb(here.sizes[name].gzipBytes - base.gzipBytes).trim()} KiB gzip more than ${columns.at(-1).rev}` : '';
  console.log([name.padEnd(10), ...cells].join('') + growth);
}
const sizesOut = join(root, 'bench/results/bundle-size.json');
writeFileSync(sizesOut, JSON.stringify({
  generated: new Date().toISOString(),
  machine: { cpus: cpus().length, loadavg: loadavg().map((x) => +x.toFixed(2)) },
  method: 'esbuild bundle of each entry (this checkout\'s tsconfig and node_modules for every column), minified, browser, es2022; gzip at level 9; typeboxBytes: minified bytes from node_modules/typebox',
  entries: BROWSER_ENTRIES,
  columns,
}, null, 1) + '\n');
console.log(`wrote ${sizesOut}`);

if (process.argv.includes('--device')) {
  const vk = join(root, 'dist/vk');
  mkdirSync(vk, { recursive: true });
  const loader = ['/usr/lib/x86_64-linux-gnu/libvulkan.so.1', '/usr/lib64/libvulkan.so.1'].find((p) => existsSync(p));
  if (!loader) throw new Error('no libvulkan.so.1 here to carry: install libvulkan1 (apt-get install libvulkan1)');
  copyFileSync(loader, join(vk, 'libvulkan.so.1'));
  writeFileSync(join(vk, 'nvidia_egl_icd.json'), JSON.stringify({ file_format_version: '1.0.1', ICD: { library_path: 'libEGL_nvidia.so.0', api_version: '1.4.312' } }) + '\n');
  const packed = join(root, 'dist/node.xz');
  if (!existsSync(packed) || statSync(packed).mtimeMs < statSync(process.execPath).mtimeMs) {
    console.log(`compressing ${process.execPath} (about a minute)`);
    execFileSync('sh', ['-c', `xz -T0 -6 -c "${process.execPath}" > "${packed}.tmp"`], { stdio: 'inherit' });
    renameSync(packed + '.tmp', packed);
  }
  console.log('wrote dist/vk/{libvulkan.so.1,nvidia_egl_icd.json} and dist/node.xz');
}
