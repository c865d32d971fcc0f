#!/bin/bash
# One prepared run on a lent GPU machine that has no Node and no Vulkan loader (as found on the
# H100 image: CUDA, PyTorch, the NVIDIA driver's Vulkan ICD, no node, no libvulkan.so.1).
# Prepare here: npm run bench:bundle -- --device   (dist/kernels, dist/node.xz, dist/vk)
# Carry those three paths and run from the repository root:
#   OUT=<dir> SIM_ARGS="<bench:sim options>" [SIM_TIMEOUT=s] [SIM_WORKERS=n] [SIM_ONLY=1] bash scripts/device-run.sh
# SIM_ONLY=1 skips the kernel lab, the profile and the GPU check (e.g. a --learner webgpu sweep:
#   SIM_ARGS="--learner webgpu --preset tiny --batch 4 --seq-len 64 --tag tiny-gpu").
# TORCH_ONLY=1 runs only bench:torch (Murmur vs PyTorch on this GPU, nothing else on the CPUs):
#   TORCH_PRESETS (default small,base), TORCH_ARGS (bench/torch.ts options; default --warmup 3
#   --timed 30: one warm-up step left the GPU's first timed steps slow on the H200), TORCH_TIMEOUT.
# PARTS picks parts by name, in this order: lab (matmul kernel lab), torch, profile, check,
#   variants (bench:variants: each kernel family side by side at small's and base's sizes), sim;
#   e.g. PARTS="lab torch" (TORCH_ONLY=1 is PARTS=torch; the default is "lab profile check sim").
#   LAB_ARGS are more bench/kernels/matmul.ts options (variant prefixes, --max-size).
#   A device call may run 600 s, less than all the parts' timeouts together: the H200 ran
#   "torch lab profile check" in one call (2026-12-04); with variants as well, two calls are
#   safer: PARTS="lab torch" LAB_ARGS="src/shaders 10" MATMUL_TIMEOUT=240 TORCH_TIMEOUT=330
#   (the trainer's kernels and the nt kernel's dot and multiply-add forms; the two timeouts fit
#   one call, and the lab's JSON keeps the rows it finished, `complete` false if cut short),
#   then PARTS="profile check variants".
# It prints what the machine has, runs the matmul kernel lab (headless EGL ICD) and the engine
# profile (drivers picked by src/gpu/vulkan-drivers.ts) on the GPU through Dawn while the
# simulator benchmark uses the other cores, and leaves logs and results under $OUT.
set -u
OUT=${OUT:-/tmp/out}; mkdir -p "$OUT"; OUT=$(cd "$OUT" && pwd)
WORKERS=${SIM_WORKERS:-$(( $(nproc) > 1 ? $(nproc) - 1 : 1 ))}
T0=$(date +%s)
echo "== machine"; nproc; lscpu | grep -m1 'Model name'; free -g | sed -n 2p; nvidia-smi -L 2>&1 | head -2
echo "== node on the image"; command -v node && node --version || echo "no node on PATH"
NODE=$(command -v node || true)
if [ -z "$NODE" ] || ! "$NODE" -e 'process.exit(+process.versions.node.split(".")[0] >= 20 ? 0 : 1)' 2>/dev/null; then
  if command -v xz >/dev/null; then xz -dc dist/node.xz > /tmp/node
  else python3 -c "import lzma,shutil;shutil.copyfileobj(lzma.open('dist/node.xz'),open('/tmp/node','wb'))"; fi
  chmod +x /tmp/node; NODE=/tmp/node
fi
echo "using $NODE $($NODE --version)  ($(( $(date +%s) - T0 )) s)"
echo "== vulkan"; ls /usr/share/vulkan/icd.d /etc/vulkan/icd.d 2>&1 | head
ldconfig -p | grep -qE "libvulkan\.so\.1 " && echo "libvulkan.so.1 on the image" || echo "no libvulkan.so.1 on the image: using the carried loader"
if [ -n "${SIM_ONLY:-}" ]; then PARTS=sim; elif [ -n "${TORCH_ONLY:-}" ]; then PARTS=torch; fi
PARTS=" ${PARTS:-lab profile check sim} "
has() { case "$PARTS" in *" $1 "*) return 0;; esac; return 1; }
if has lab; then
mkdir -p dist/results
( export LD_LIBRARY_PATH=$PWD/dist/vk:/usr/local/nvidia/lib64:${LD_LIBRARY_PATH:-} VK_ICD_FILENAMES=$PWD/dist/vk/nvidia_egl_icd.json
  timeout ${MATMUL_TIMEOUT:-300} $NODE dist/kernels/matmul.mjs ${LAB_ARGS:-} > "$OUT/matmul.log" 2>&1; echo "matmul rc=$?" >> "$OUT/matmul.log" )
cp dist/results/kernels-matmul.json "$OUT/" 2>/dev/null
tail -45 "$OUT/matmul.log"
fi
if has torch; then
  echo "== bench:torch ($(python3 -c 'import torch; print("torch", torch.__version__, "cuda", torch.cuda.is_available())' 2>&1))"
  ( unset VK_ICD_FILENAMES; export LD_LIBRARY_PATH=$PWD/dist/vk:${LD_LIBRARY_PATH:-}
    timeout ${TORCH_TIMEOUT:-420} $NODE dist/kernels/torch.mjs --presets ${TORCH_PRESETS:-small,base} --python python3 --out "$OUT" ${TORCH_ARGS:---warmup 3 --timed 30} > "$OUT/torch.log" 2>&1; echo "torch rc=$?" >> "$OUT/torch.log" )
  grep -vE "^Warning|^    at " "$OUT/torch.log" | tail -30
fi
# SIM_ARGS may hold --learner webgpu: the replicas then find the GPU as the Node volunteer does.
SIM=
if has sim; then
( unset VK_ICD_FILENAMES; export LD_LIBRARY_PATH=$PWD/dist/vk:${LD_LIBRARY_PATH:-}
  cd dist/kernels && timeout ${SIM_TIMEOUT:-480} $NODE sim.mjs --workers $WORKERS --out "$OUT" ${SIM_ARGS:---quick} > "$OUT/sim.log" 2>&1; echo "sim rc=$?" >> "$OUT/sim.log" ) &
SIM=$!
fi
if has profile; then
# The engine's step, with the GPU found as the Node volunteer finds it (VK_ICD_FILENAMES unset).
for p in ${PROFILE_PRESETS:-tiny small base}; do
  ( unset VK_ICD_FILENAMES; export LD_LIBRARY_PATH=$PWD/dist/vk:${LD_LIBRARY_PATH:-} MURMUR_DEBUG_GPU=1
    timeout 80 $NODE dist/kernels/profile.mjs --preset $p --steps 20 > "$OUT/profile-$p.log" 2>&1; echo "profile rc=$?" >> "$OUT/profile-$p.log" )
  cp dist/kernels/results/profile.json "$OUT/profile-$p.json" 2>/dev/null; rm -f dist/kernels/results/profile.json
  grep -E "Vulkan drivers|preset|wall clock|rc=" "$OUT/profile-$p.log"
done
fi
if has check; then
# The GPU's training step against the CPU reference (bench/gpu-check.ts), f32 and f16 operands.
( unset VK_ICD_FILENAMES; export LD_LIBRARY_PATH=$PWD/dist/vk:${LD_LIBRARY_PATH:-}
  timeout 200 $NODE dist/kernels/gpu-check.mjs --presets ${CHECK_PRESETS:-micro,tiny} --steps 10 --half --out "$OUT" > "$OUT/gpu-check.log" 2>&1; echo "gpu-check rc=$?" >> "$OUT/gpu-check.log" )
grep -vE "^Warning|^    at " "$OUT/gpu-check.log"
fi
if has variants; then
( unset VK_ICD_FILENAMES; export LD_LIBRARY_PATH=$PWD/dist/vk:${LD_LIBRARY_PATH:-}
  timeout ${VARIANTS_TIMEOUT:-150} $NODE dist/kernels/variants.mjs --presets ${VARIANTS_PRESETS:-small,base} --out "$OUT" > "$OUT/variants.log" 2>&1; echo "variants rc=$?" >> "$OUT/variants.log" )
grep -vE "^Warning|^    at " "$OUT/variants.log" | tail -50
fi
# The device tool brings back at most 8 files: the logs travel as one archive.
pack() { ( cd "$OUT" && ls *.log >/dev/null 2>&1 && tar czf logs.tgz *.log && rm -f *.log ); }
[ -z "$SIM" ] && { pack; exit 0; }
wait $SIM
echo "== sim ($(( $(date +%s) - T0 )) s)"; grep -A12 -E "per inner rate|Mean over seeds" "$OUT/sim.log"; grep -A10 "^Claims" "$OUT/sim.log"; tail -2 "$OUT/sim.log"
pack
