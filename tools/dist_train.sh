#!/usr/bin/env bash
# Distributed (multi-GPU / multi-node) training of a resnest_plugin config with
# MMPose's stock tools/train.py, unmodified, launched by torchrun.
#
# Why not MMPose's own tools/dist_train.sh: it runs `python -m
# torch.distributed.launch`, which on torch >= 2.0 passes `--local-rank=N`,
# and MMPose 0.29's train.py only accepts `--local_rank` ("unrecognized
# arguments", open-mmlab/mim#122). torchrun passes no flag and sets LOCAL_RANK,
# which train.py reads.
#
# Usage: tools/dist_train.sh CONFIG GPUS [train.py options ...]
#   e.g. tools/dist_train.sh configs/top_down/resnest/coco/resnest50_coco_256x192.py 8 \
#          --work-dir work_dirs/resnest50 --cfg-options model.backbone.norm_cfg.type=SyncBN
# Environment (as MMPose's script): NNODES, NODE_RANK, MASTER_ADDR, PORT; PYTHON.
set -euo pipefail
if [ $# -lt 2 ]; then
  echo "usage: $0 CONFIG GPUS [train.py options ...]" >&2
  exit 2
fi
CONFIG=$1
GPUS=$2
shift 2
PYTHON=${PYTHON:-python}
TOOLS=$("$PYTHON" -c "import mmpose, os; print(os.path.join(os.path.dirname(mmpose.__file__), '.mim', 'tools'))")
exec "$PYTHON" -m torch.distributed.run \
  --nnodes="${NNODES:-1}" \
  --node_rank="${NODE_RANK:-0}" \
  --master_addr="${MASTER_ADDR:-127.0.0.1}" \
  --master_port="${PORT:-29500}" \
  --nproc_per_node="$GPUS" \
  "$TOOLS/train.py" "$CONFIG" --launcher pytorch "$@"
