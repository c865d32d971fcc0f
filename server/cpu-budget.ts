// How many CPUs the coordinator may keep busy. os.availableParallelism() counts the cores the
// process may run on, but Node 20's libuv (1.46) does not read a container's CPU quota: a
// coordinator given 2 CPUs on a 64-core host counted 64, started 8 evaluation threads for each
// checkpoint and left its event loop (every peer's signalling) a quarter of a CPU while they ran.
// So the quota is read here, cgroup v2 (`cpu.max`) or v1 (`cpu.cfs_quota_us` / `cpu.cfs_period_us`),
// for the process's own cgroup and each one above it, and the smallest counts.
import { existsSync, readFileSync } from 'node:fs';
import { availableParallelism } from 'node:os';
import { join, posix } from 'node:path';

/** A quota as whole CPUs (at least 1), or null for none ("max", -1, or nothing readable). */
function cpus(quota: number, period: number): number | null {
  if (!(quota > 0 && period > 0)) return null;
  return Math.max(1, Math.floor(quota / period));
}

function read(path: string): string | null {
  try {
    return readFileSync(path, 'utf8').trim();
  } catch {
    return null;
  }
}

/** `dir` and each folder above it up to `top`, deepest first. */
function upTo(top: string, path: string): string[] {
  const out: string[] = [];
  for (let p = posix.normalize(`/${path}`); ; p = posix.dirname(p)) {
    out.push(join(top, p));
    if (p === '/') return out;
  }
}

/**
 * The CPU quota of this process's cgroups in whole CPUs, or null when none is set. `root` is the
 * filesystem root (a test gives a folder laid out like /proc and /sys).
 */
export function cgroupCpuLimit(root = '/'): number | null {
  const self = read(join(root, 'proc/self/cgroup'));
  if (self === null) return null;
  const limits: number[] = [];
  for (const line of self.split('\n')) {
    const m = /^(\d+):([^:]*):(.*)$/.exec(line);
    if (!m) continue;
    const [, id, controllers, path] = m as unknown as [string, string, string, string];
    if (id === '0' && controllers === '') {
      // v2: one hierarchy; inside a cgroup namespace the path is relative to the mount.
      const top = join(root, 'sys/fs/cgroup');
      if (!existsSync(join(top, 'cgroup.controllers'))) continue;
      for (const dir of upTo(top, path)) {
        const [quota, period] = (read(join(dir, 'cpu.max')) ?? '').split(/\s+/);
        const n = quota === 'max' ? null : cpus(Number(quota), Number(period));
        if (n !== null) limits.push(n);
      }
    } else if (controllers.split(',').includes('cpu')) {
      // v1: the cpu controller's mount is named after its controllers (cpu, or cpu,cpuacct).
      const top = [join(root, 'sys/fs/cgroup', controllers), join(root, 'sys/fs/cgroup/cpu')].find((d) => existsSync(d));
      if (!top) continue;
      for (const dir of upTo(top, path)) {
        const n = cpus(Number(read(join(dir, 'cpu.cfs_quota_us'))), Number(read(join(dir, 'cpu.cfs_period_us'))));
        if (n !== null) limits.push(n);
      }
    }
  }
  return limits.length > 0 ? Math.min(...limits) : null;
}

/** CPUs this process may keep busy: the cores it may run on, at most its cgroups' quota. */
export function cpuBudget(limit: number | null = cgroupCpuLimit()): number {
  return Math.max(1, Math.min(availableParallelism(), limit ?? Infinity));
}
