#!/usr/bin/env bash
# Second, short call on nvidia-h200-x2 (issue 17): bf16 LoRA DDP scaled 1.67x in the first session while QLoRA scaled 1.97x.
# Same bench twice in one call: plain DDP (fp32 LoRA gradients all-reduced) and DDP with torch's bf16 compression hook;
# NCCL_DEBUG=INFO shows which transport NCCL picked between the two GPUs (P2P over NVLink or SHM through host memory).
set -u
export NCCL_NVLS_ENABLE=0 TORCH_SYMM_MEM_DISABLE_MULTICAST=1 NVSHMEM_DISABLE_NVLS=1  # NVLink multicast stays off
export PYTHONUNBUFFERED=1 HF_HUB_OFFLINE=1 TRANSFORMERS_OFFLINE=1 TOKENIZERS_PARALLELISM=false
OUT=${OUT:-/tmp/x2-out}; mkdir -p "$OUT"
exec > >(tee -a "$OUT/session2.log") 2>&1
T0=$(date +%s)
python3 -m pip install -q --no-index --no-deps --no-compile --no-cache-dir --upgrade --target /tmp/site .whl/liger_kernel-*.whl || exit 1
export PYTHONPATH=/tmp/site:$PWD
for hook in none bf16; do
  echo; echo "=== [$(( $(date +%s) - T0 )) s] bf16 DDP scaling, comm hook: $hook"
  NCCL_DEBUG=INFO timeout 100 python3 bench/gpu_train.py --gpus 2 --only bf16 --steps 15 --warmup 3 --comm-hook $hook > "$OUT/bench-$hook.log" 2>&1
  echo "exit $?"; grep -E " via |NCCL version|scaling =|^ +bf16 " "$OUT/bench-$hook.log" | sort | uniq -c | head -20
done
echo "=== [$(( $(date +%s) - T0 )) s] done"; nvidia-smi --query-compute-apps=pid,used_memory --format=csv
