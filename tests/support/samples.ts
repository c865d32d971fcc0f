// Valid values shared by the tests that build protocol messages (tests/protocol.messages.test.ts,
// tests/support/fuzz.ts): two peer ids, a digest, the run of a welcome, its data file and ICE.

export const P1 = 'p-0123456789abcdef';
export const P2 = 'p-fedcba9876543210';
export const SHA = 'ab'.repeat(32);
export const SAMPLE_RUN = {
  id: 'default', name: 'tiny on Moby Dick', dataset: 'moby-dick', preset: 'tiny',
  model: { vocab: 256, ctx: 64, layers: 2, d: 64, heads: 2 },
  train: {
    batch: 8, seqLen: 64, lr: 0.001, warmupSteps: 10, totalSteps: 1000, minLrFrac: 0.1, weightDecay: 0.1, beta1: 0.9,
    beta2: 0.95, eps: 1e-8, gradClip: 1, H: 50, outerMomentum: 0.9, outerLr: 0.7, consensus: 0.5,
  },
  compression: 'fp16', pairWaitFrac: 0.25, icePolicy: 'all', seed: 1337, status: 'running', createdAt: 1, updatedAt: 2,
};
export const SAMPLE_FILE = { name: 'train-0.bin', url: '/api/runs/default/data/train-0.bin', sha256: SHA, bytes: 1000, dtype: 'u8' };
export const SAMPLE_ICE = { iceServers: [{ urls: ['turn:198.18.0.1:3478'], username: 'u', credential: 'c' }], expiresAt: 5000 };
