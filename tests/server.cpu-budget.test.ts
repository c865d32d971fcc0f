// The CPUs the coordinator may keep busy (server/cpu-budget.ts): a container's CPU quota counts,
// which Node 20's availableParallelism does not read, so a coordinator given 2 CPUs on a 64-core
// host starts one evaluation thread, not 8. Each case is a folder laid out like /proc and /sys.
import { afterAll, describe, expect, it } from 'vitest';
import { mkdirSync, mkdtempSync, rmSync, writeFileSync } from 'node:fs';
import { availableParallelism, tmpdir } from 'node:os';
import { dirname, join } from 'node:path';
import { cgroupCpuLimit, cpuBudget } from '../server/cpu-budget.ts';
import { defaultEvalThreads } from '../server/checkpoint-validate.ts';

const roots: string[] = [];
afterAll(() => { for (const r of roots) rmSync(r, { recursive: true, force: true }); });

/** A fake root holding `files` (path relative to / -> content). */
function tree(files: Record<string, string>): string {
  const root = mkdtempSync(join(tmpdir(), 'murmur-cgroup-'));
  roots.push(root);
  for (const [path, text] of Object.entries(files)) {
    mkdirSync(dirname(join(root, path)), { recursive: true });
    writeFileSync(join(root, path), text);
  }
  return root;
}

describe('a container\'s CPU quota', () => {
  it('cgroup v2: the smallest cpu.max from the process\'s cgroup up, in whole CPUs', () => {
    const root = tree({
      'proc/self/cgroup': '0::/system.slice/murmur.service\n',
      'sys/fs/cgroup/cgroup.controllers': 'cpu memory\n',
      'sys/fs/cgroup/system.slice/murmur.service/cpu.max': '250000 100000\n',
      'sys/fs/cgroup/system.slice/cpu.max': '400000 100000\n',
      'sys/fs/cgroup/cpu.max': 'max 100000\n',
    });
    expect(cgroupCpuLimit(root)).toBe(2);
    // A parent's smaller quota wins; half a CPU still counts as one.
    writeFileSync(join(root, 'sys/fs/cgroup/system.slice/cpu.max'), '50000 100000\n');
    expect(cgroupCpuLimit(root)).toBe(1);
  });

  it('cgroup v2 with no quota anywhere ("max"), and inside a cgroup namespace (path /)', () => {
    expect(cgroupCpuLimit(tree({
      'proc/self/cgroup': '0::/a\n', 'sys/fs/cgroup/cgroup.controllers': 'cpu\n', 'sys/fs/cgroup/a/cpu.max': 'max 100000\n',
    }))).toBeNull();
    expect(cgroupCpuLimit(tree({
      'proc/self/cgroup': '0::/\n', 'sys/fs/cgroup/cgroup.controllers': 'cpu\n', 'sys/fs/cgroup/cpu.max': '300000 100000\n',
    }))).toBe(3);
  });

  it('cgroup v1: cpu.cfs_quota_us over cpu.cfs_period_us of the cpu controller (-1: none)', () => {
    const root = tree({
      'proc/self/cgroup': '12:memory:/docker/abc\n4:cpu,cpuacct:/docker/abc\n1:name=systemd:/docker/abc\n',
      'sys/fs/cgroup/cpu,cpuacct/docker/abc/cpu.cfs_quota_us': '400000\n',
      'sys/fs/cgroup/cpu,cpuacct/docker/abc/cpu.cfs_period_us': '100000\n',
      'sys/fs/cgroup/cpu,cpuacct/cpu.cfs_quota_us': '-1\n',
      'sys/fs/cgroup/cpu,cpuacct/cpu.cfs_period_us': '100000\n',
    });
    expect(cgroupCpuLimit(root)).toBe(4);
    writeFileSync(join(root, 'sys/fs/cgroup/cpu,cpuacct/docker/abc/cpu.cfs_quota_us'), '-1\n');
    expect(cgroupCpuLimit(root)).toBeNull();
  });

  it('nothing readable, or lines it does not know: no quota', () => {
    expect(cgroupCpuLimit(tree({}))).toBeNull();
    expect(cgroupCpuLimit(tree({ 'proc/self/cgroup': 'garbage\n0::/x\n' }))).toBeNull();
    expect(cgroupCpuLimit(tree({ 'proc/self/cgroup': '0::/\n', 'sys/fs/cgroup/cgroup.controllers': '', 'sys/fs/cgroup/cpu.max': 'nonsense\n' }))).toBeNull();
  });

  it('the evaluation threads: every CPU of the budget but one, at most 8, at least 1', () => {
    expect(cpuBudget(null)).toBe(availableParallelism());
    expect(cpuBudget(1)).toBe(1);
    expect(cpuBudget(10_000)).toBe(availableParallelism());
    expect([1, 2, 3, 9, 64].map((n) => defaultEvalThreads(n))).toEqual([1, 1, 2, 8, 8]);
    // A 2-CPU quota on any host: one thread, as on this 2-core machine.
    expect(defaultEvalThreads(cpuBudget(2))).toBe(1);
  });
});
