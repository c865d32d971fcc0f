// Installs what `npm start` / `npm test` need on a fresh clone, using only Node built-ins:
//   - node_modules (npm ci) when it does not match package-lock.json (never into a symlinked,
//     shared node_modules: that only gets an error);
//   - with --browser or --gpu: Debian's chromium (its SwiftShader Vulkan driver serves Dawn in
//     Node too) and libvulkan1, through apt-get when root; otherwise a clear error;
//   - with --test: also Debian's python3 with numpy and torch (the independent safetensors
//     reader and the PyTorch checks of the export run on /usr/bin/python3).
import { execSync } from 'node:child_process';
import { existsSync, lstatSync, readFileSync } from 'node:fs';
import { fileURLToPath } from 'node:url';
import { dirname, join } from 'node:path';

const root = join(dirname(fileURLToPath(import.meta.url)), '..');
const args = new Set(process.argv.slice(2));
const run = (cmd) => execSync(cmd, { cwd: root, stdio: 'inherit' });

// Stale = some package the lockfile pins is missing from node_modules or at another version.
// Compared by content (npm's hidden lockfile), not mtimes: a git checkout touches
// package-lock.json and would otherwise look newer than a perfectly good install.
function staleNodeModules() {
  const hidden = join(root, 'node_modules', '.package-lock.json');
  if (!existsSync(hidden)) return 'node_modules is missing';
  const want = JSON.parse(readFileSync(join(root, 'package-lock.json'), 'utf8')).packages ?? {};
  const have = JSON.parse(readFileSync(hidden, 'utf8')).packages ?? {};
  for (const [path, pkg] of Object.entries(want)) {
    // '' is the project itself; optional entries are other platforms' binaries (never installed here).
    if (path === '' || pkg.optional || pkg.link) continue;
    if (have[path]?.version !== pkg.version) return `${path} is ${have[path]?.version ?? 'missing'}, lockfile wants ${pkg.version}`;
  }
  return null;
}

function ensureNodeModules() {
  const why = staleNodeModules();
  if (!why) return;
  // A symlinked node_modules is an install shared with other checkouts: `npm ci` would first
  // empty the directory it points to, under everyone using it. Never do that from here.
  if (lstatSync(join(root, 'node_modules'), { throwIfNoEntry: false })?.isSymbolicLink()) {
    console.error(`[murmur] node_modules is a shared (symlinked) install and out of date: ${why}. ` +
      'Update it where it lives (npm ci in that checkout), not from here.');
    process.exit(1);
  }
  console.log(`[murmur] installing dependencies (npm ci): ${why}`);
  run('npm ci --no-audit --no-fund');
}

const CHROMIUM = '/usr/bin/chromium';
const ICD = '/usr/lib/chromium/vk_swiftshader_icd.json';
// Dawn (Node) and Chromium both load the Vulkan loader libvulkan.so.1 (Debian: libvulkan1).
// ldconfig lives in /sbin, which is not on a normal user's PATH; fall back to the usual paths.
const hasVulkanLoader = () => {
  for (const ldconfig of ['ldconfig', '/sbin/ldconfig', '/usr/sbin/ldconfig']) {
    try {
      return execSync(`${ldconfig} -p`, { encoding: 'utf8', stdio: ['ignore', 'pipe', 'ignore'] }).includes('libvulkan.so.1');
    } catch { /* try the next */ }
  }
  return ['/usr/lib/x86_64-linux-gnu', '/usr/lib/aarch64-linux-gnu', '/usr/lib64', '/usr/lib', '/lib/x86_64-linux-gnu']
    .some((dir) => existsSync(join(dir, 'libvulkan.so.1')));
};

// Debian's python3-torch imports only from /usr/bin/python3 (not whichever python3 is on PATH).
const PYTHON = '/usr/bin/python3';
const hasPythonModule = (m) => {
  try {
    execSync(`${PYTHON} -c "import ${m}"`, { stdio: 'ignore' });
    return true;
  } catch {
    return false;
  }
};

// Binaries in /usr/sbin are not on a normal user's PATH; look there too.
const hasBinary = (name) => ['/usr/bin', '/usr/sbin', '/bin', '/sbin'].some((dir) => existsSync(join(dir, name)));

function ensureSystemPackages() {
  const missing = [];
  if (!existsSync(CHROMIUM) || !existsSync(ICD)) missing.push('chromium');
  if (!hasVulkanLoader()) missing.push('libvulkan1');
  if (args.has('--test')) {
    if (!existsSync(PYTHON)) missing.push('python3');
    if (!hasPythonModule('numpy')) missing.push('python3-numpy');
    if (!hasPythonModule('torch')) missing.push('python3-torch');
    // The NAT tests (tests/nat.*) build homes, routers and an "internet" from network
    // namespaces: coturn is the TURN server, nftables the NATs, conntrack clears their state.
    if (!hasBinary('turnserver')) missing.push('coturn');
    if (!hasBinary('nft')) missing.push('nftables');
    if (!hasBinary('conntrack')) missing.push('conntrack');
    if (!hasBinary('ip')) missing.push('iproute2');
    // The browser NAT test serves the coordinator over https with a self-signed certificate.
    if (!hasBinary('openssl')) missing.push('openssl');
  }
  if (missing.length === 0) return;
  const isRoot = typeof process.getuid === 'function' && process.getuid() === 0;
  if (!isRoot) {
    console.error(`[murmur] missing system packages: ${missing.join(' ')}. ` +
      `Install them (Debian/Ubuntu: sudo apt-get install -y ${missing.join(' ')}) and run again.`);
    process.exit(1);
  }
  console.log(`[murmur] installing ${missing.join(' ')} with apt-get...`);
  run('apt-get update -q');
  run(`DEBIAN_FRONTEND=noninteractive apt-get install -y -q --no-install-recommends ${missing.join(' ')}`);
}

ensureNodeModules();
if (args.has('--browser') || args.has('--gpu') || args.has('--test')) ensureSystemPackages();
