// Installs what `npm start` / `npm test` need on a fresh clone, using only Node built-ins:
//   - node_modules (npm ci) when missing or older than package-lock.json;
//   - with --browser or --gpu: Debian's chromium (its SwiftShader Vulkan driver serves Dawn in
//     Node too) and libvulkan1, through apt-get when root; otherwise a clear error.
import { execSync } from 'node:child_process';
import { existsSync, statSync } from 'node:fs';
import { fileURLToPath } from 'node:url';
import { dirname, join } from 'node:path';

const root = join(dirname(fileURLToPath(import.meta.url)), '..');
const args = new Set(process.argv.slice(2));
const run = (cmd) => execSync(cmd, { cwd: root, stdio: 'inherit' });

function ensureNodeModules() {
  const marker = join(root, 'node_modules', '.package-lock.json');
  const lock = join(root, 'package-lock.json');
  const stale = !existsSync(marker) || statSync(marker).mtimeMs < statSync(lock).mtimeMs;
  if (stale) {
    console.log('[murmur] installing dependencies (npm ci)...');
    run('npm ci --no-audit --no-fund');
  }
}

const CHROMIUM = '/usr/bin/chromium';
const ICD = '/usr/lib/chromium/vk_swiftshader_icd.json';
const hasVulkanLoader = () => {
  try { return execSync('ldconfig -p', { encoding: 'utf8' }).includes('libvulkan.so.1'); } catch { return false; }
};

function ensureSystemPackages() {
  const missing = [];
  if (!existsSync(CHROMIUM) || !existsSync(ICD)) missing.push('chromium');
  if (!hasVulkanLoader()) missing.push('libvulkan1');
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
if (args.has('--browser') || args.has('--gpu')) ensureSystemPackages();
