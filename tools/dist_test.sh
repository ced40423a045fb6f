#!/usr/bin/env bash
# Distributed evaluation of a resnest_plugin config with MMPose's stock
# tools/test.py, unmodified, launched by torchrun (see tools/dist_train.sh for
# why not torch.distributed.launch: open-mmlab/mim#122).
#
# Usage: tools/dist_test.sh CONFIG CHECKPOINT GPUS [test.py options ...]
#   e.g. tools/dist_test.sh configs/top_down/resnest/coco/resnest50_coco_256x192.py \
#          resnest50_coco_256x192-6e65eece_20210320.pth 8 --eval mAP
# Environment (as MMPose's script): NNODES, NODE_RANK, MASTER_ADDR, PORT; PYTHON.
set -euo pipefail
if [ $# -lt 3 ]; then
  echo "usage: $0 CONFIG CHECKPOINT GPUS [test.py options ...]" >&2
  exit 2
fi
CONFIG=$1
CHECKPOINT=$2
GPUS=$3
shift 3
PYTHON=${PYTHON:-python}
TOOLS=$("$PYTHON" -c "import mmpose, os; print(os.path.join(os.path.dirname(mmpose.__file__), '.mim', 'tools'))")
exec "$PYTHON" -m torch.distributed.run \
  --nnodes="${NNODES:-1}" \
  --node_rank="${NODE_RANK:-0}" \
  --master_addr="${MASTER_ADDR:-127.0.0.1}" \
  --master_port="${PORT:-29500}" \
  --nproc_per_node="$GPUS" \
  "$TOOLS/test.py" "$CONFIG" "$CHECKPOINT" --launcher pytorch "$@"
