#!/bin/bash
# Re-evaluate every shipped model (models/*/model.pt) on the held-out synthetic seeds 100-103
# x 10 frames with `pop3d eval` (both protocols, Occ3D's mIoU, RayIoU), writing
# models/<name>/eval_heldout.json. Usage: scripts/eval_shipped.sh [MODEL_DIR ...]
# (default: every models/*/ holding a model.pt). One thread per run (OMP_NUM_THREADS=1).
set -euo pipefail
root="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
cd "$root"
# shellcheck disable=SC1091
source scripts/activate.sh
export OMP_NUM_THREADS="${OMP_NUM_THREADS:-1}"
dirs=("$@")
if [ ${#dirs[@]} -eq 0 ]; then
  for f in models/*/model.pt; do dirs+=("$(dirname "$f")"); done
fi
for d in "${dirs[@]}"; do
  echo "== $d"
  python -m pop3d_ros.cli eval --checkpoint "$d/model.pt" --data synthetic --seeds 100-103 \
    --frames-per-seed 10 --out "$d/eval_heldout.json"
done
