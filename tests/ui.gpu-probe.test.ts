// What the volunteer page says when it cannot use the GPU, for the case a deployment causes:
// the page served over plain http from a public address, where browsers hide navigator.gpu.
import { describe, expect, it } from 'vitest';
import { probeGpu } from '../src/ui/browser/gpu-probe.ts';

describe('GPU probe outside a secure context', () => {
  it('says WebGPU needs https and what the operator must do', async () => {
    const r = await probeGpu({ isSecureContext: false, origin: 'http://198.18.0.1:8787', gpu: undefined }, {});
    expect(r.ok).toBe(false);
    if (r.ok) return;
    expect(r.code).toBe('insecure-context');
    expect(r.title).toBe('WebGPU needs https');
    expect(r.explanation).toContain('"http://198.18.0.1:8787"');
    expect(r.explanation).toMatch(/https:\/\/ or from http:\/\/localhost/);
    expect(r.advice).toContain('murmur serve --tls-cert FILE --tls-key FILE');
    expect(r.advice).toMatch(/TLS reverse proxy/);
    expect(r.advice).toContain('docs/deploy.md');
  });

  it('never asks for the adapter there: the secure-context check comes first', async () => {
    let asked = false;
    const gpu = { requestAdapter: async () => { asked = true; return null; } } as unknown as GPU;
    const r = await probeGpu({ isSecureContext: false, origin: 'http://example.org', gpu }, {});
    expect(r).toMatchObject({ ok: false, code: 'insecure-context' });
    expect(asked).toBe(false);
  });
});
