// What peers must agree on before they exchange weights. The browser volunteer and the headless
// one compute the same fingerprint from the coordinator's RunInfo, so Node and browser peers of
// one run pair with each other (src/ui/pages/engine-wiring.ts uses the same fields).
import { buildLayout, layoutSignature } from '../model/layout.ts';
import { configHash } from '../protocol/hash.ts';
import type { RunInfo } from '../protocol/messages.ts';

/** The run, the model, the layout, the outer rule and the wire compression. */
export function runConfigHash(run: RunInfo): string {
  const { H, outerMomentum, outerLr, consensus } = run.train;
  return configHash({ run: run.id, model: run.model, layout: layoutSignature(buildLayout(run.model)), H, outerMomentum, outerLr, consensus, compression: run.compression });
}

/** Fixed validation batches every replica (and the coordinator) evaluates, so their losses compare. */
export { RUN_VAL_BATCHES as VAL_BATCHES } from '../data/sampler.ts';
