// The same GPT-2 block stack as Murmur's engine, written with TF.js ops for the step benchmark:
// learned positions, pre-LayerNorm, causal multi-head attention, GELU (tanh) MLP, tied LM head,
// mean cross-entropy, trained by tf.train.adam. Weights start from the same flat init as
// Murmur's (initParams over the shared layout). Benchmark code only.
import * as tf from '@tensorflow/tfjs';
import type { ModelConfig } from '../src/model/config.ts';
import { buildLayout, layerTensor, tensor, view, type LayerTensor } from '../src/model/layout.ts';

export class TfjsGPT {
  private readonly vars = new Map<string, tf.Variable>();
  private readonly mask: tf.Tensor; // (T, T) 0 on and below the diagonal, -1e9 above
  private readonly opt: tf.Optimizer;
  private readonly layout: ReturnType<typeof buildLayout>;

  constructor(private readonly cfg: ModelConfig, params: Float32Array, private readonly T: number, lr: number) {
    const layout = (this.layout = buildLayout(cfg));
    for (const t of layout.tensors) this.vars.set(t.name, tf.variable(tf.tensor(view(params, t).slice(), t.shape), true, t.name));
    this.mask = tf.tidy(() => tf.linalg.bandPart(tf.ones([T, T]), -1, 0).sub(1).mul(1e9));
    this.opt = tf.train.adam(lr, 0.9, 0.95, 1e-8);
  }

  private v(name: string): tf.Variable {
    return this.vars.get(tensor(this.layout, name).name)!;
  }

  private lv(l: number, name: LayerTensor): tf.Variable {
    return this.vars.get(layerTensor(this.layout, l, name).name)!;
  }

  private layernorm(x: tf.Tensor, w: tf.Tensor, b: tf.Tensor): tf.Tensor {
    const { mean, variance } = tf.moments(x, -1, true);
    return x.sub(mean).mul(tf.rsqrt(variance.add(1e-5))).mul(w).add(b);
  }

  private gelu(x: tf.Tensor): tf.Tensor {
    const inner = x.add(x.pow(3).mul(0.044715)).mul(Math.sqrt(2 / Math.PI));
    return x.mul(0.5).mul(tf.tanh(inner).add(1));
  }

  /** Mean cross-entropy of the next-token predictions; tokens, targets (B, T) int32. */
  loss(tokens: tf.Tensor2D, targets: tf.Tensor2D): tf.Scalar {
    const { d: C, heads: NH, vocab: V, layers: L } = this.cfg;
    const [B, T] = tokens.shape;
    const N = B * T, hs = C / NH;
    const wte = this.v('transformer.wte.weight');
    let x = tf.gather(wte, tokens.reshape([N])).reshape([B, T, C]).add(this.v('transformer.wpe.weight').slice([0, 0], [T, C]));
    for (let l = 0; l < L; l++) {
      const h = this.layernorm(x, this.lv(l, 'ln_1.weight'), this.lv(l, 'ln_1.bias')).reshape([N, C]);
      const qkv = tf.matMul(h, this.lv(l, 'attn.c_attn.weight')).add(this.lv(l, 'attn.c_attn.bias'))
        .reshape([B, T, 3, NH, hs]).transpose([2, 0, 3, 1, 4]); // (3, B, NH, T, hs)
      const [q, k, v] = tf.unstack(qkv, 0);
      const att = tf.softmax(tf.matMul(q, k, false, true).mul(1 / Math.sqrt(hs)).add(this.mask), -1); // (B, NH, T, T)
      const y = tf.matMul(att, v).transpose([0, 2, 1, 3]).reshape([N, C]);
      x = x.add(tf.matMul(y, this.lv(l, 'attn.c_proj.weight')).add(this.lv(l, 'attn.c_proj.bias')).reshape([B, T, C]));
      const h2 = this.layernorm(x, this.lv(l, 'ln_2.weight'), this.lv(l, 'ln_2.bias')).reshape([N, C]);
      const f = this.gelu(tf.matMul(h2, this.lv(l, 'mlp.c_fc.weight')).add(this.lv(l, 'mlp.c_fc.bias')));
      x = x.add(tf.matMul(f, this.lv(l, 'mlp.c_proj.weight')).add(this.lv(l, 'mlp.c_proj.bias')).reshape([B, T, C]));
    }
    const lnf = this.layernorm(x, this.v('transformer.ln_f.weight'), this.v('transformer.ln_f.bias')).reshape([N, C]);
    const logits = tf.matMul(lnf, wte, false, true); // (N, V), tied head
    return tf.losses.softmaxCrossEntropy(tf.oneHot(targets.reshape([N]), V), logits) as tf.Scalar;
  }

  /** One training step (forward, backward, Adam); resolves with the loss once the GPU is done. */
  async step(tokens: Int32Array, targets: Int32Array, B: number): Promise<number> {
    const tok = tf.tensor2d(tokens, [B, this.T], 'int32'), tgt = tf.tensor2d(targets, [B, this.T], 'int32');
    const cost = this.opt.minimize(() => this.loss(tok, tgt), true)!;
    const [loss] = await cost.data();
    tf.dispose([cost, tok, tgt]);
    return loss;
  }

  dispose(): void {
    tf.dispose([...this.vars.values(), this.mask]);
    this.opt.dispose();
  }
}
