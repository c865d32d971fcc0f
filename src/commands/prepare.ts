// `murmur prepare <files...> --out <dir>`: UTF-8 text files -> a dataset directory a run can
// train on (see src/data/dataset.ts for the format).
import { type Command, InvalidArgumentError } from 'commander';
import { prepareDataset } from '../data/dataset.ts';

export function register(program: Command): void {
  program
    .command('prepare')
    .description('Tokenise UTF-8 text files into a dataset directory (train.bin, val.bin, manifest.json)')
    .argument('<files...>', 'UTF-8 text files, concatenated in the order given')
    .requiredOption('-o, --out <dir>', 'directory to create for the dataset')
    .option('--val-fraction <f>', 'share of the text, from the end, held out for validation', parseFraction, 0.05)
    .option('--ctx <n>', 'context length to check the splits against (each needs ctx+1 tokens)', parsePositiveInt)
    .option('--force', 'replace --out if it already holds a dataset', false)
    .action(async (files: string[], opts: { out: string; valFraction: number; ctx?: number; force: boolean }) => {
      const m = await prepareDataset(files, opts.out, { valFraction: opts.valFraction, ctx: opts.ctx, force: opts.force });
      const bytes = m.sources.reduce((a, s) => a + s.bytes, 0);
      const lines = [
        `prepared ${opts.out} from ${m.sources.length} file${m.sources.length === 1 ? '' : 's'} (${bytes} bytes)`,
        `  train  ${m.train.file}  ${m.train.tokens} tokens  sha256 ${m.train.sha256.slice(0, 12)}`,
        `  val    ${m.val.file}    ${m.val.tokens} tokens  sha256 ${m.val.sha256.slice(0, 12)}`,
        `  vocab ${m.vocab} (bytes), val fraction ${m.valFraction}${m.ctx ? `, checked for ctx ${m.ctx}` : ''}`,
      ];
      console.log(lines.join('\n'));
    });
}

function parseFraction(v: string): number {
  const f = Number(v);
  if (v.trim() === '' || !(f > 0 && f < 1)) throw new InvalidArgumentError(`expected a number between 0 and 1 (exclusive), got "${v}"`);
  return f;
}

function parsePositiveInt(v: string): number {
  const n = Number(v);
  if (!/^\d+$/.test(v.trim()) || !Number.isSafeInteger(n) || n < 1) throw new InvalidArgumentError(`expected a positive integer, got "${v}"`);
  return n;
}
