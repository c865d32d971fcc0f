// Crash injection for operator commands run in their own process (`node --import` this file):
// the process SIGKILLs itself at the KILL_NTH-th call of fs.<KILL_FN> whose first argument
// contains KILL_MATCH, before that call runs. What a kill -9, a power cut or a reboot leaves
// at that point is what the next command finds. Unset KILL_FN: no effect.
import { createRequire, syncBuiltinESMExports } from 'node:module';

const require = createRequire(import.meta.url);
const fs = require('node:fs');
const fn = process.env.KILL_FN;
const match = process.env.KILL_MATCH ?? '';
let left = Number(process.env.KILL_NTH ?? '1');
if (fn) {
  const orig = fs[fn];
  fs[fn] = function (...args) {
    if (String(args[0]).includes(match) && --left === 0) {
      process.stderr.write(`[kill-at] SIGKILL at ${fn}(${String(args[0])})\n`);
      process.kill(process.pid, 'SIGKILL');
    }
    return orig.apply(this, args);
  };
  // ESM importers of node:fs (`import { renameSync } from 'node:fs'`) see the wrapper too.
  syncBuiltinESMExports();
}
