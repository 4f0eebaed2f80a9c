#!/usr/bin/env bash
# Regenerates the README's benchmark numbers. Run on an otherwise idle machine:
# timings on shared 2-core machines vary 15-20% run to run, so compare the ratios
# measured within one run, not absolute times across runs.
set -euo pipefail
cd "$(dirname "$0")/.."
RSIR=${RSIR:-.venv/bin/rsir-trt}
mkdir -p bench-out
# 1) step latency and whole generation, random SASRec at Beauty's shape (V = 12,102)
$RSIR bench --vocab 12102 --batch 1,32,256,1024 --steps 30 --gen-seeds 512 --m 1 --out bench-out/beauty-shape
# 2) with a trained Beauty checkpoint and the real policy (tau=10, p=0.5, m=5) on real seeds
if [ -n "${CKPT:-}" ]; then
  $RSIR bench --ckpt "$CKPT" --data beauty --runtimes reference,torch,onnxruntime --batch 256 --gen-seeds 22363 --m 5 --out bench-out/beauty-trained
fi
