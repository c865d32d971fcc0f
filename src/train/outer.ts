// Outer optimisers as pure functions over flat Float32Arrays (docs/design.md section 1): NoLoCo's pair
// step, DiLoCo's all-replica step (the same rule with gamma = 0) and the all-reduce mean that
// data-parallel AdamW applies to gradients every step. The GPU outer kernel and the simulator
// both implement exactly this math; tests compare them element by element.
//
// Every array is one kind of state laid out by the same Layout (layout.total floats): slow
// weights phi, outer momentum m, fast weights theta, local progress delta = theta - phi.
// Arithmetic is done in f64 and rounded once per stored value, so results do not depend on the
// order in which replicas of a group are listed for a pair (a + b == b + a exactly).

/** Outer hyper-parameters: m <- alpha*m + beta*mean(delta) + gamma*(mean(phi) - phi); phi += m. */
export interface OuterHyper {
  /** Outer momentum alpha in [0, 1). */
  momentum: number;
  /** Outer learning rate beta > 0. */
  lr: number;
  /** Consensus pull gamma >= 0 towards the group's mean slow weights (0 for DiLoCo). */
  consensus: number;
}

/** What each member of a group sends the others: its slow weights and its local progress. */
export interface OuterMessage {
  /** (P) slow weights phi_j at the member's last outer step. */
  phi: Float32Array;
  /** (P) local progress delta_j = theta_j - phi_j over the inner loop just finished. */
  delta: Float32Array;
}

/** The state one replica updates in an outer step. */
export interface OuterState {
  /** (P) slow weights phi_i; updated in place. */
  phi: Float32Array;
  /** (P) outer momentum m_i; updated in place. */
  momentum: Float32Array;
  /** (P) fast weights theta_i; reset to the new phi_i. */
  theta: Float32Array;
}

/** delta = theta - phi (local progress of an inner loop), written into `out`. */
export function localDelta(out: Float32Array, theta: Float32Array, phi: Float32Array): Float32Array {
  sameLength('localDelta', out, theta, phi);
  for (let k = 0; k < out.length; k++) out[k] = theta[k] - phi[k];
  return out;
}

/** The message a replica sends: copies of phi and theta - phi, safe to hold while it keeps training. */
export function outerMessage(phi: Float32Array, theta: Float32Array): OuterMessage {
  return { phi: phi.slice(), delta: localDelta(new Float32Array(phi.length), theta, phi) };
}

/**
 * One NoLoCo outer step for replica i with group G (docs/design.md section 1):
 *   delta_bar = mean_j delta_j,  phi_bar = mean_j phi_j          (j in G, i included)
 *   m_i   <- alpha*m_i + beta*delta_bar + gamma*(phi_bar - phi_i)
 *   phi_i <- phi_i + m_i;  theta_i <- phi_i
 * A group of one (no partner in time) is a solo step: phi_bar = phi_i, delta_bar = delta_i.
 * `group` must hold replica i's own message; messages are copies, so two partners can be
 * updated one after the other from the same pair of messages.
 */
export function nolocoOuterStep(state: OuterState, group: readonly OuterMessage[], h: OuterHyper): void {
  const { phi, momentum: m, theta } = state;
  const g = group.length;
  if (g === 0) throw new Error('nolocoOuterStep: the group is empty; it must contain at least the replica itself');
  sameLength('nolocoOuterStep', phi, m, theta, ...group.flatMap((x) => [x.phi, x.delta]));
  const { momentum: alpha, lr: beta, consensus: gamma } = h;
  const inv = 1 / g;
  if (g === 2) {
    // The common case, unrolled: a pair.
    const [a, b] = group;
    for (let k = 0; k < phi.length; k++) {
      const dBar = (a.delta[k] + b.delta[k]) * 0.5;
      const pBar = (a.phi[k] + b.phi[k]) * 0.5;
      const mk = alpha * m[k] + beta * dBar + gamma * (pBar - phi[k]);
      m[k] = mk;
      phi[k] = phi[k] + m[k];
      theta[k] = phi[k];
    }
    return;
  }
  for (let k = 0; k < phi.length; k++) {
    let dSum = 0, pSum = 0;
    for (let j = 0; j < g; j++) { dSum += group[j].delta[k]; pSum += group[j].phi[k]; }
    const mk = alpha * m[k] + beta * dSum * inv + gamma * (pSum * inv - phi[k]);
    m[k] = mk;
    phi[k] = phi[k] + m[k];
    theta[k] = phi[k];
  }
}

/**
 * The probe's two candidate states (docs/design.md section 6.1): the φ_i replica i would hold
 * after a solo step and after the pair step with `partner`, each from the same φ_i and m_i.
 * Nothing passed in is changed; the two results are fresh arrays.
 */
export function probeCandidates(
  phi: Float32Array, momentum: Float32Array, own: OuterMessage, partner: OuterMessage, h: OuterHyper,
): { solo: Float32Array; paired: Float32Array } {
  const one = (group: OuterMessage[]) => {
    const out = { phi: phi.slice(), momentum: momentum.slice(), theta: new Float32Array(phi.length) };
    nolocoOuterStep(out, group, h);
    return out.phi;
  };
  return { solo: one([own]), paired: one([own, partner]) };
}

/**
 * How the consensus treats a partner whose payload is `behind` outer rounds behind ours (its
 * round's claim; docs/design.md section 6, "Rounds behind"):
 * - none: every partner alike (the live rule);
 * - weight K: γ·w(k), w(k) = 1 for k <= K and K/k beyond (a stale φ pulls less);
 * - solo K: a partner more than K rounds behind is not taken (a solo step).
 * A partner at or ahead of our round, or one whose round is unknown, always gets the full γ.
 */
export type StaleRule = { kind: 'none' } | { kind: 'weight'; from: number } | { kind: 'solo'; beyond: number };

export const STALE_NONE: StaleRule = { kind: 'none' };

/** "none", "weight:K" or "solo:K" (K a whole number of rounds >= 0), as a bench or the CLI names it. */
export function parseStaleRule(s: string): StaleRule {
  if (s === 'none') return STALE_NONE;
  const m = /^(weight|solo):(\d+)$/.exec(s);
  if (!m) throw new Error(`stale rule "${s}": use none, weight:K or solo:K with K a whole number of rounds`);
  const k = Number(m[2]);
  if (m[1] === 'weight' && k === 0) throw new Error(`stale rule "${s}": weight:K needs K >= 1 (K = 0 removes the consensus for every partner behind)`);
  return m[1] === 'weight' ? { kind: 'weight', from: k } : { kind: 'solo', beyond: k };
}

export function staleRuleName(r: StaleRule): string {
  return r.kind === 'none' ? 'none' : r.kind === 'weight' ? `weight:${r.from}` : `solo:${r.beyond}`;
}

/**
 * The outer hyper-parameters for a pair step with a partner `behind` rounds behind us under
 * `rule`, or null when the rule takes a solo step instead.
 */
export function staleOuter(h: OuterHyper, behind: number | undefined, rule: StaleRule): OuterHyper | null {
  if (rule.kind === 'none' || behind === undefined || !Number.isFinite(behind)) return h;
  if (rule.kind === 'solo') return behind > rule.beyond ? null : h;
  return behind > rule.from ? { ...h, consensus: (h.consensus * rule.from) / behind } : h;
}

/** DiLoCo's outer momentum: heavy-ball (the NoLoCo authors' baseline code) or Nesterov (Douillard et al.). */
export const DILOCO_MOMENTA = ['heavy-ball', 'nesterov'] as const;
export type DilocoMomentum = (typeof DILOCO_MOMENTA)[number];

/**
 * One DiLoCo outer step on the all-reduced mean delta (compute it once with meanInto and apply
 * it on every replica); theta <- phi afterwards.
 * - heavy-ball: the NoLoCo rule with G = all replicas and gamma = 0, as the NoLoCo authors'
 *   baseline runs it: m <- alpha*m + beta*mean(delta); phi <- phi + m.
 * - nesterov: SGD with Nesterov momentum on the outer gradient -mean(delta), as DiLoCo
 *   (Douillard et al.) publishes it: m <- alpha*m + beta*mean(delta); phi <- phi + beta*mean(delta)
 *   + alpha*m (torch.optim.SGD(nesterov=True) with the learning rate folded into m).
 */
export function dilocoOuterStep(state: OuterState, meanDelta: Float32Array, h: Pick<OuterHyper, 'momentum' | 'lr'>, kind: DilocoMomentum = 'heavy-ball'): void {
  const { phi, momentum: m, theta } = state;
  sameLength('dilocoOuterStep', phi, m, theta, meanDelta);
  const { momentum: alpha, lr: beta } = h;
  const nesterov = kind === 'nesterov';
  for (let k = 0; k < phi.length; k++) {
    const g = beta * meanDelta[k];
    m[k] = alpha * m[k] + g;
    phi[k] = phi[k] + (nesterov ? g + alpha * m[k] : m[k]);
    theta[k] = phi[k];
  }
}

/**
 * out = mean of `arrays`, summed in list order (an all-reduce's result). Data-parallel AdamW
 * averages every replica's gradients with this and applies one identical AdamW update on each.
 */
export function meanInto(out: Float32Array, arrays: readonly Float32Array[]): Float32Array {
  const n = arrays.length;
  if (n === 0) throw new Error('meanInto: nothing to average (no arrays given)');
  sameLength('meanInto', out, ...arrays);
  const inv = 1 / n;
  for (let k = 0; k < out.length; k++) {
    let s = 0;
    for (let j = 0; j < n; j++) s += arrays[j][k];
    out[k] = s * inv;
  }
  return out;
}

/** Throws on hyper-parameters that make no sense for any method (not finite, out of range). */
export function validateOuterHyper(h: OuterHyper): void {
  const bad = (name: string, v: number, want: string) => {
    throw new Error(`outer optimiser: ${name} must be ${want}, got ${v}`);
  };
  if (!Number.isFinite(h.momentum) || h.momentum < 0 || h.momentum >= 1) bad('momentum alpha', h.momentum, 'in [0, 1)');
  if (!Number.isFinite(h.lr) || h.lr <= 0) bad('outer lr beta', h.lr, 'a positive number');
  if (!Number.isFinite(h.consensus) || h.consensus < 0) bad('consensus gamma', h.consensus, '>= 0');
}

/**
 * Warnings (empty when fine) for NoLoCo's pair stability condition alpha < gamma < sqrt(2 + alpha^2)
 * (NoLoCo paper, bounded-variance theorem for groups of two): outside it the spread between
 * replicas' slow weights is not guaranteed to stay bounded. Only meaningful for pair gossip, so
 * DiLoCo (gamma = 0 by design) should not call this.
 */
export function pairStabilityWarnings(h: OuterHyper): string[] {
  const { momentum: a, consensus: g } = h;
  const upper = Math.sqrt(2 + a * a);
  const out: string[] = [];
  if (!(a < g)) out.push(`consensus gamma=${g} is not above outer momentum alpha=${a}: the pair stability condition alpha < gamma < sqrt(2 + alpha^2) fails, replicas may drift apart`);
  if (!(g < upper)) out.push(`consensus gamma=${g} is not below sqrt(2 + alpha^2)=${upper.toFixed(4)}: the pair stability condition fails, the consensus pull overshoots`);
  return out;
}

function sameLength(fn: string, ...arrays: Float32Array[]): void {
  const n = arrays[0].length;
  for (let i = 1; i < arrays.length; i++) {
    if (arrays[i].length !== n) throw new Error(`${fn}: array ${i} has ${arrays[i].length} floats, expected ${n} (all state must share one layout)`);
  }
}
