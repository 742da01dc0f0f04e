#!/usr/bin/env bash
# One device call on nvidia-h200-x2 (issue 17): checks, wheels, the DDP scaling bench (bf16 + QLoRA, 1 GPU vs 2 GPUs in the
# same run), then the product path through the runner (DDP run to completion, Stop, FSDP2 vs one GPU, adapters loaded by
# the app's code). Everything lands under $OUT: session.log, the bench JSON, product.json.
#   run: bash bench/gpu_x2_session.sh        (carry .whl: bitsandbytes 0.50.2 + liger-kernel 0.8.5 wheels)
# BUDGET_S (default 560) bounds the whole script; each step gets what is left, so a slow step cannot run past the call.
set -u
export NCCL_NVLS_ENABLE=0 TORCH_SYMM_MEM_DISABLE_MULTICAST=1 NVSHMEM_DISABLE_NVLS=1  # NVLink multicast stays off
export PYTHONUNBUFFERED=1 HF_HUB_OFFLINE=1 TRANSFORMERS_OFFLINE=1 TOKENIZERS_PARALLELISM=false
OUT=${OUT:-/tmp/x2-out}; mkdir -p "$OUT"
exec > >(tee -a "$OUT/session.log") 2>&1
T0=$(date +%s); BUDGET=${BUDGET_S:-560}
left() { echo $(( BUDGET - ($(date +%s) - T0) )); }
step() { echo; echo "=== [$(( $(date +%s) - T0 )) s] $*"; }
reap() {  # after a step hit its timeout: end the GPU processes this script started (children outlive `timeout`)
  [ "$1" = 124 ] || return 0
  for p in $(nvidia-smi --query-compute-apps=pid --format=csv,noheader); do kill -9 "$p" 2>/dev/null; done; sleep 3
}
MODEL=/tmp/q3-8b; WORK=/tmp/x2-product

step "machine"
nvidia-smi -L; nvidia-smi topo -m 2>&1 | head -5; nproc; free -g | head -2
python3 - <<'EOF' || exit 1
import torch, transformers, peft, accelerate, sys
print("python", sys.version.split()[0], "torch", torch.__version__, "transformers", transformers.__version__, "peft", peft.__version__,
      "accelerate", accelerate.__version__, "cuda devices", torch.cuda.device_count())
assert torch.cuda.device_count() == 2, "expected 2 GPUs"
EOF

step "wheels"
if ls .whl/*.whl >/dev/null 2>&1; then
  python3 -m pip install -q --no-index --no-deps --no-compile --no-cache-dir --upgrade --target /tmp/site .whl/*.whl || exit 1
  export PYTHONPATH=/tmp/site:$PWD
else
  export PYTHONPATH=$PWD
fi
python3 -c "import bitsandbytes, liger_kernel.transformers; print('bitsandbytes', bitsandbytes.__version__, 'liger ok')" || exit 1

step "random Qwen3-8B-shaped base + Qwen3-style tokenizer -> $MODEL"
timeout 120 python3 bench/gpu_train_product.py prep --model $MODEL || exit 1
du -sh $MODEL

step "bench: DDP scaling, bf16 and QLoRA (left $(left) s)"
timeout $(( $(left) < 300 ? $(left) : 300 )) python3 bench/gpu_train.py --gpus 2 --only all --model-dir $MODEL --steps 15 --warmup 3
rc=$?; echo "bench exit $rc"; reap $rc
nvidia-smi --query-compute-apps=pid,used_memory --format=csv

step "product path: DDP QLoRA run, Stop, FSDP2 vs one GPU, adapters in the app (left $(left) s)"
timeout $(( $(left) - 10 )) python3 bench/gpu_train_product.py runs --model $MODEL --work $WORK --out "$OUT/product.json" --timeout 170
rc=$?; echo "product exit $rc"; reap $rc

step "after: GPU processes (must be none)"
nvidia-smi --query-compute-apps=pid,process_name,used_memory --format=csv
cp $WORK/data/runs/x2-fsdp-bf16/train.log "$OUT/train-fsdp.log" 2>/dev/null
cp $WORK/data/runs/x2-ddp-qlora/train.log "$OUT/train-ddp-qlora.log" 2>/dev/null
step "done"
