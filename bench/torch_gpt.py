# The PyTorch side of `npm run bench:torch` (bench/torch.ts): the same GPT-2 as Murmur's
# engine (learned positions, pre-LayerNorm, tanh GELU, tied embeddings, biases everywhere),
# trained by torch.optim.AdamW with the same settings from the same weights on the same
# batches. bench/torch.ts writes a folder with
#   run.json           {model, train, decay:{name: bool}, warmup, timed, modes, threads}
#   model.safetensors  the initial weights under Murmur's (= Hugging Face GPT-2) names
#   batches.bin        (warmup + timed) x 2 x B x T uint32: tokens then targets per step
# and reads one JSON object per mode from stdout:
#   {mode, device, device_name, torch, ms_per_step, losses, attention}  or  {mode, skipped: reason}
# Usage: python3 bench/torch_gpt.py <folder>
import json
import math
import struct
import sys
import time

import numpy as np
import torch
import torch.nn.functional as F


def read_safetensors(path):
    with open(path, 'rb') as f:
        raw = f.read()
    (n,) = struct.unpack('<Q', raw[:8])
    header = json.loads(raw[8:8 + n])
    base = 8 + n
    out = {}
    for name, meta in header.items():
        if name == '__metadata__':
            continue
        if meta['dtype'] != 'F32':
            raise ValueError(f'{name}: expected F32, got {meta["dtype"]}')
        a, b = meta['data_offsets']
        out[name] = torch.from_numpy(np.frombuffer(raw, dtype='<f4', count=(b - a) // 4, offset=base + a).copy()).reshape(meta['shape'])
    return out


class GPT(torch.nn.Module):
    def __init__(self, cfg, weights):
        super().__init__()
        self.cfg = cfg
        # Parameter names with dots are not allowed; keep Murmur's names in a side table.
        self.names = sorted(weights)
        self.params = torch.nn.ParameterList([torch.nn.Parameter(weights[n].clone()) for n in self.names])
        self.by_name = {n: p for n, p in zip(self.names, self.params)}
        self.sdpa = hasattr(F, 'scaled_dot_product_attention')

    def w(self, name):
        return self.by_name[name]

    def forward(self, idx, targets):
        c = self.cfg
        B, T = idx.shape
        C, NH = c['d'], c['heads']
        hs = C // NH
        x = self.w('transformer.wte.weight')[idx] + self.w('transformer.wpe.weight')[:T]
        mask = None
        for l in range(c['layers']):
            p = f'transformer.h.{l}.'
            h = F.layer_norm(x, (C,), self.w(p + 'ln_1.weight'), self.w(p + 'ln_1.bias'), 1e-5)
            qkv = torch.addmm(self.w(p + 'attn.c_attn.bias'), h.view(B * T, C), self.w(p + 'attn.c_attn.weight')).view(B, T, 3, NH, hs)
            q, k, v = (qkv[:, :, i].transpose(1, 2) for i in range(3))  # (B, NH, T, hs)
            if self.sdpa:
                y = F.scaled_dot_product_attention(q, k, v, is_causal=True)
            else:
                if mask is None:
                    mask = torch.ones(T, T, dtype=torch.bool, device=idx.device).triu(1)
                att = (q @ k.transpose(-2, -1)) * (1.0 / math.sqrt(hs))
                y = att.masked_fill(mask, float('-inf')).softmax(-1) @ v
            y = y.transpose(1, 2).reshape(B * T, C)
            x = x + torch.addmm(self.w(p + 'attn.c_proj.bias'), y, self.w(p + 'attn.c_proj.weight')).view(B, T, C)
            h = F.layer_norm(x, (C,), self.w(p + 'ln_2.weight'), self.w(p + 'ln_2.bias'), 1e-5)
            h = F.gelu(torch.addmm(self.w(p + 'mlp.c_fc.bias'), h.view(B * T, C), self.w(p + 'mlp.c_fc.weight')), approximate='tanh')
            x = x + torch.addmm(self.w(p + 'mlp.c_proj.bias'), h, self.w(p + 'mlp.c_proj.weight')).view(B, T, C)
        x = F.layer_norm(x, (C,), self.w('transformer.ln_f.weight'), self.w('transformer.ln_f.bias'), 1e-5)
        logits = x.view(B * T, C) @ self.w('transformer.wte.weight').t()
        return F.cross_entropy(logits, targets.view(B * T))


def run_mode(folder, run, mode, device):
    if mode == 'tf32' and device.type != 'cuda':
        return {'mode': mode, 'skipped': 'TF32 is a CUDA setting; this run is on the CPU'}
    if mode == 'compile' and not hasattr(torch, 'compile'):
        return {'mode': mode, 'skipped': f'torch {torch.__version__} has no torch.compile'}
    if device.type == 'cuda':
        torch.backends.cuda.matmul.allow_tf32 = mode == 'tf32'
        torch.backends.cudnn.allow_tf32 = mode == 'tf32'
    cfg, tc = run['model'], run['train']
    B, T = tc['batch'], tc['seqLen']
    steps = run['warmup'] + run['timed']
    data = np.fromfile(f'{folder}/batches.bin', dtype='<u4').astype(np.int64).reshape(steps, 2, B, T)
    batches = torch.from_numpy(data).to(device)
    model = GPT(cfg, read_safetensors(f'{folder}/model.safetensors')).to(device)
    decay = [p for n, p in model.by_name.items() if run['decay'][n]]
    no_decay = [p for n, p in model.by_name.items() if not run['decay'][n]]
    opt = torch.optim.AdamW([{'params': decay, 'weight_decay': tc['weightDecay']}, {'params': no_decay, 'weight_decay': 0.0}],
                            lr=tc['lr'], betas=(tc['beta1'], tc['beta2']), eps=tc['eps'])
    fwd = torch.compile(model) if mode == 'compile' else model
    sync = torch.cuda.synchronize if device.type == 'cuda' else (lambda: None)

    def step(s):
        loss = fwd(batches[s, 0], batches[s, 1])
        opt.zero_grad(set_to_none=True)
        loss.backward()
        if tc['gradClip'] > 0:
            torch.nn.utils.clip_grad_norm_(model.parameters(), tc['gradClip'])
        opt.step()
        return loss.detach()

    losses = [step(s) for s in range(run['warmup'])]
    sync()
    t0 = time.perf_counter()
    losses += [step(run['warmup'] + s) for s in range(run['timed'])]
    sync()
    ms = (time.perf_counter() - t0) * 1000 / run['timed']
    name = torch.cuda.get_device_name(device) if device.type == 'cuda' else f'CPU ({torch.get_num_threads()} threads)'
    return {'mode': mode, 'device': device.type, 'device_name': name, 'torch': torch.__version__, 'ms_per_step': ms,
            'losses': [float(l) for l in losses], 'attention': 'sdpa' if model.sdpa else 'matmul+softmax'}


def main():
    folder = sys.argv[1]
    with open(f'{folder}/run.json') as f:
        run = json.load(f)
    if run.get('threads'):
        torch.set_num_threads(run['threads'])
    device = torch.device('cuda' if torch.cuda.is_available() else 'cpu')
    for mode in run['modes']:
        try:
            print(json.dumps(run_mode(folder, run, mode, device)), flush=True)
        except Exception as e:  # one mode failing (e.g. compile without a compiler) leaves the others
            print(json.dumps({'mode': mode, 'skipped': f'{type(e).__name__}: {e}'[:500]}), flush=True)


if __name__ == '__main__':
    main()
