// Prints one plain closing line, "tests: N passed, N failed, N skipped", that CI reads
// whatever runner printed above it. Above it, one line per test file that did not pass whole,
// naming the file and what became of its tests: when a file's process dies (a native crash,
// the OOM killer), Vitest reports only "Worker exited unexpectedly" and counts the file's
// unfinished tests nowhere, so this line is the only record of which file it was.
import { relative } from 'node:path';
import type { Reporter, TestModule } from 'vitest/node';

export default class SummaryReporter implements Reporter {
  onTestRunEnd(testModules: ReadonlyArray<TestModule>, errors: ReadonlyArray<unknown>): void {
    let passed = 0, failed = 0, skipped = 0;
    const lines: string[] = [];
    for (const m of testModules) {
      const tests = [...m.children.allTests()];
      const counts = { passed: 0, failed: 0, unfinished: 0 };
      if (m.state() === 'failed' && tests.length === 0) failed++; // a file that failed to load
      for (const t of tests) {
        const s = t.result().state;
        if (s === 'passed') { passed++; counts.passed++; }
        else if (s === 'failed') { failed++; counts.failed++; }
        else {
          skipped++;
          // Skipped or filtered out (-t) is a choice; pending is a test its file never finished.
          if (s === 'pending') counts.unfinished++;
        }
      }
      if (m.state() === 'failed' || counts.failed > 0 || counts.unfinished > 0) {
        const file = relative(process.cwd(), m.moduleId);
        lines.push(`not passed whole: ${file} (${m.state()}; ${counts.passed} passed, ${counts.failed} failed, ${counts.unfinished} not finished of ${tests.length})`);
      }
    }
    failed += errors.length;
    process.stdout.write(`\n${lines.map((l) => `${l}\n`).join('')}tests: ${passed} passed, ${failed} failed, ${skipped} skipped\n`);
  }
}
