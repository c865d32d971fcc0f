import { describe, expect, it } from 'vitest';
import {
  dilocoOuterStep, localDelta, meanInto, nolocoOuterStep, outerMessage, pairStabilityWarnings,
  validateOuterHyper, type OuterHyper,
} from '../src/train/outer.ts';

const f32 = (...x: number[]) => Float32Array.from(x);
const PAPER: OuterHyper = { momentum: 0.5, lr: 0.7, consensus: 0.7 };

function expectClose(a: Float32Array, b: number[], digits = 6) {
  expect(a.length).toBe(b.length);
  for (let i = 0; i < b.length; i++) expect(a[i]).toBeCloseTo(b[i], digits);
}

describe('NoLoCo outer step (hand-computed)', () => {
  it('updates both members of a pair from the same two messages', () => {
    // A: phi=[1,0], theta=[1.5,-1], m=[0.2,0]   B: phi=[3,2], theta=[2.5,2], m=0
    // delta_A=[0.5,-1], delta_B=[-0.5,0]; mean delta=[0,-0.5]; mean phi=[2,1]
    // m_A = 0.5*[0.2,0] + 0.7*[0,-0.5] + 0.7*([2,1]-[1,0]) = [0.8, 0.35]  -> phi_A=[1.8,0.35]
    // m_B = 0 + 0.7*[0,-0.5] + 0.7*([2,1]-[3,2]) = [-0.7,-1.05]          -> phi_B=[2.3,0.95]
    const A = { phi: f32(1, 0), theta: f32(1.5, -1), momentum: f32(0.2, 0) };
    const B = { phi: f32(3, 2), theta: f32(2.5, 2), momentum: f32(0, 0) };
    const msgs = [outerMessage(A.phi, A.theta), outerMessage(B.phi, B.theta)];
    nolocoOuterStep(A, msgs, PAPER);
    nolocoOuterStep(B, msgs.slice().reverse(), PAPER);
    expectClose(A.momentum, [0.8, 0.35]);
    expectClose(A.phi, [1.8, 0.35]);
    expectClose(A.theta, [1.8, 0.35]);
    expectClose(B.momentum, [-0.7, -1.05]);
    expectClose(B.phi, [2.3, 0.95]);
    expectClose(B.theta, [2.3, 0.95]);
  });

  it('a solo step (group of one) is plain outer momentum on its own progress', () => {
    // m = 0.5*1 + 0.7*(2-1) = 1.2 ; phi = 1 + 1.2 = 2.2
    const s = { phi: f32(1), theta: f32(2), momentum: f32(1) };
    nolocoOuterStep(s, [outerMessage(s.phi, s.theta)], PAPER);
    expectClose(s.momentum, [1.2]);
    expectClose(s.phi, [2.2]);
    expectClose(s.theta, [2.2]);
  });

  it('with gamma=1, alpha=0 and no progress a pair lands exactly on its mean', () => {
    const h = { momentum: 0, lr: 0.7, consensus: 1 };
    const A = { phi: f32(1, -4), theta: f32(1, -4), momentum: f32(0, 0) };
    const B = { phi: f32(3, 2), theta: f32(3, 2), momentum: f32(0, 0) };
    const msgs = [outerMessage(A.phi, A.theta), outerMessage(B.phi, B.theta)];
    nolocoOuterStep(A, msgs, h);
    nolocoOuterStep(B, msgs, h);
    expectClose(A.phi, [2, -1]);
    expectClose(B.phi, [2, -1]);
  });

  it('the consensus term moves the pair mean only by beta * mean delta (alpha=0, m=0)', () => {
    const h = { momentum: 0, lr: 0.7, consensus: 0.9 };
    const A = { phi: f32(0.3, 1), theta: f32(0.5, 0.2), momentum: f32(0, 0) };
    const B = { phi: f32(-1, 4), theta: f32(-0.2, 4.4), momentum: f32(0, 0) };
    const before = [A.phi[0] + B.phi[0], A.phi[1] + B.phi[1]];
    const msgs = [outerMessage(A.phi, A.theta), outerMessage(B.phi, B.theta)];
    const dBar = [(0.2 + 0.8) / 2, (-0.8 + 0.4) / 2];
    nolocoOuterStep(A, msgs, h);
    nolocoOuterStep(B, msgs, h);
    expect(A.phi[0] + B.phi[0]).toBeCloseTo(before[0] + 2 * 0.7 * dBar[0], 5);
    expect(A.phi[1] + B.phi[1]).toBeCloseTo(before[1] + 2 * 0.7 * dBar[1], 5);
  });

  it('a group of three uses the three-way means', () => {
    // phi = [0], [3], [6]; deltas = [1], [2], [6] -> mean delta 3, mean phi 3
    // replica 0 (m=0): m = 0.7*3 + 0.7*(3-0) = 4.2 -> phi = 4.2
    const s = { phi: f32(0), theta: f32(1), momentum: f32(0) };
    const group = [outerMessage(s.phi, s.theta), { phi: f32(3), delta: f32(2) }, { phi: f32(6), delta: f32(6) }];
    nolocoOuterStep(s, group, PAPER);
    expectClose(s.phi, [4.2], 5);
  });

  it('messages are copies: the sender keeps training without changing what it sent', () => {
    const phi = f32(1, 2), theta = f32(3, 5);
    const m = outerMessage(phi, theta);
    phi[0] = 100; theta[0] = 100;
    expectClose(m.phi, [1, 2]);
    expectClose(m.delta, [2, 3]);
  });

  it('names the problem on bad input', () => {
    const s = { phi: f32(1, 2), theta: f32(1, 2), momentum: f32(0, 0) };
    expect(() => nolocoOuterStep(s, [], PAPER)).toThrow(/group is empty/);
    expect(() => nolocoOuterStep(s, [{ phi: f32(1), delta: f32(1) }], PAPER)).toThrow(/has 1 floats, expected 2/);
    expect(() => localDelta(f32(0), f32(1, 2), f32(1, 2))).toThrow(/localDelta/);
  });
});

describe('DiLoCo outer step and the all-reduce mean', () => {
  it('applies outer momentum to the mean of all deltas', () => {
    // deltas [1,2], [3,-2], [-1,3] -> mean [1,1]; alpha=0.3, beta=0.7, m=[1,0]
    // m = 0.3*[1,0] + 0.7*[1,1] = [1.0, 0.7]; phi = [2,2] + m = [3, 2.7]
    const mean = meanInto(new Float32Array(2), [f32(1, 2), f32(3, -2), f32(-1, 3)]);
    expectClose(mean, [1, 1]);
    const s = { phi: f32(2, 2), theta: f32(9, 9), momentum: f32(1, 0) };
    dilocoOuterStep(s, mean, { momentum: 0.3, lr: 0.7 });
    expectClose(s.momentum, [1.0, 0.7]);
    expectClose(s.phi, [3, 2.7]);
    expectClose(s.theta, [3, 2.7]);
  });

  it('nesterov (Douillard et al.): the same momentum, and phi moves by the step plus alpha times the new momentum', () => {
    // g = 0.7*[1,1]; m = 0.3*[1,0] + g = [1.0, 0.7]; phi = [2,2] + g + 0.3*m = [3.0, 2.91]
    const mean = f32(1, 1);
    const s = { phi: f32(2, 2), theta: f32(9, 9), momentum: f32(1, 0) };
    dilocoOuterStep(s, mean, { momentum: 0.3, lr: 0.7 }, 'nesterov');
    expectClose(s.momentum, [1.0, 0.7]);
    expectClose(s.phi, [3.0, 2.91]);
    expectClose(s.theta, [3.0, 2.91]);
    // With no momentum the two are the same step.
    const a = { phi: f32(2, 2), theta: f32(0, 0), momentum: f32(1, 0) };
    const b = { phi: f32(2, 2), theta: f32(0, 0), momentum: f32(1, 0) };
    dilocoOuterStep(a, mean, { momentum: 0, lr: 0.7 }, 'nesterov');
    dilocoOuterStep(b, mean, { momentum: 0, lr: 0.7 }, 'heavy-ball');
    expectClose(a.phi, Array.from(b.phi));
  });

  it('equals the NoLoCo rule with gamma=0 over the whole group', () => {
    const h = { momentum: 0.3, lr: 0.7, consensus: 0 };
    const phi = f32(0.5, -0.25, 2);
    const thetas = [f32(0.7, -0.2, 1.5), f32(0.1, 0, 2.5), f32(0.5, -1, 2), f32(1, 1, 1)];
    const msgs = thetas.map((t) => outerMessage(phi, t));
    const a = { phi: phi.slice(), theta: thetas[0].slice(), momentum: f32(0.1, 0.2, -0.3) };
    const b = { phi: phi.slice(), theta: thetas[0].slice(), momentum: f32(0.1, 0.2, -0.3) };
    nolocoOuterStep(a, msgs, h);
    dilocoOuterStep(b, meanInto(new Float32Array(3), msgs.map((m) => m.delta)), h);
    for (let k = 0; k < 3; k++) expect(a.phi[k]).toBeCloseTo(b.phi[k], 6);
  });

  it('refuses an empty all-reduce', () => {
    expect(() => meanInto(new Float32Array(1), [])).toThrow(/nothing to average/);
  });
});

describe('outer config validation', () => {
  it('accepts the paper settings without a warning', () => {
    expect(pairStabilityWarnings(PAPER)).toEqual([]);
    expect(() => validateOuterHyper(PAPER)).not.toThrow();
  });

  it('warns below alpha and above sqrt(2 + alpha^2)', () => {
    expect(pairStabilityWarnings({ ...PAPER, consensus: 0.4 })[0]).toMatch(/not above outer momentum/);
    expect(pairStabilityWarnings({ ...PAPER, consensus: 0.5 })).toHaveLength(1); // equality fails too
    expect(pairStabilityWarnings({ ...PAPER, consensus: 1.49 })).toEqual([]);
    expect(pairStabilityWarnings({ ...PAPER, consensus: 1.5 })[0]).toMatch(/sqrt\(2 \+ alpha\^2\)=1\.5000/);
  });

  it('rejects values no method can use', () => {
    expect(() => validateOuterHyper({ ...PAPER, momentum: 1 })).toThrow(/momentum alpha must be in \[0, 1\)/);
    expect(() => validateOuterHyper({ ...PAPER, lr: 0 })).toThrow(/outer lr beta/);
    expect(() => validateOuterHyper({ ...PAPER, consensus: Number.NaN })).toThrow(/consensus gamma/);
  });
});
