// What a GPU could do: vendors' dense fp32 peaks (no tensor cores), so that a measured rate can
// be read as a share of it. The autotuner's rates (Tuning.rates) and the kernel lab
// (bench/kernels/matmul.ts) are both reported against this table.
import type { AdapterSummary } from './device.ts';

/** Vendor fp32 peaks (dense, non-tensor-core) in GFLOPS, matched against the adapter's words. */
export const FP32_PEAKS: [RegExp, number, string][] = [
  [/H200/i, 66900, 'NVIDIA H200 SXM'],
  [/H100.*PCIe/i, 51200, 'NVIDIA H100 PCIe'],
  [/H100/i, 66900, 'NVIDIA H100 SXM'],
  [/A100/i, 19500, 'NVIDIA A100'],
  [/L40S/i, 91600, 'NVIDIA L40S'],
  [/RTX 4090/i, 82600, 'NVIDIA RTX 4090'],
  [/RTX 3080/i, 29800, 'NVIDIA RTX 3080'],
];

export interface Peak { gflops: number; name: string }

/** The peak of the first GPU the text names, or null when the table has none. */
export function fp32Peak(adapterText: string): Peak | null {
  const hit = FP32_PEAKS.find(([re]) => re.test(adapterText));
  return hit ? { gflops: hit[1], name: hit[2] } : null;
}

/** The adapter's peak, from every word it gives about itself (Dawn names an H200 "nvidia-h200" in `device`). */
export function adapterPeak(info: AdapterSummary): Peak | null {
  return fp32Peak([info.vendor, info.architecture, info.device ?? '', info.description].join(' '));
}
