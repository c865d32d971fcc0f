#!/usr/bin/env node
// The `murmur` command. Runs the TypeScript CLI directly (no build step for Node users).
import '../scripts/node-register.mjs';

const { main } = await import('../src/cli.ts');
await main(process.argv);
