#!/bin/bash
# Prepare a GPU device check here (on CPU), so the lent machine's minutes go to measuring.
#
#   bash bench/gpu_prepare.sh        # here: wheels into .whl/, a labelled run into gpu/train/, .whl/gpu.sh
#   then, with the device tool: run `bash .whl/gpu.sh` with carry [".whl", "gpu"] and a timeout of about 420 s
#
# The device image has torch and transformers 5.17 but not pydantic or structlog, and it cannot download:
# the wheels this project needs beside torch travel with the command (transformers at this venv's version).
# .whl/ and gpu/ are kept out of git through .git/info/exclude.
set -euo pipefail
cd "$(dirname "$0")/.."
PY=.venv/bin/python
for path in /.whl/ /gpu/; do grep -qx "$path" .git/info/exclude 2>/dev/null || echo "$path" >> .git/info/exclude; done
mkdir -p .whl
version() { "$PY" -c "import importlib.metadata as m; print(m.version('$1'))"; }
.venv/bin/pip download -q --no-deps --only-binary=:all: --python-version 3.12 -d .whl \
    --platform manylinux2014_x86_64 --platform manylinux_2_17_x86_64 --platform manylinux_2_28_x86_64 \
    "pydantic==$(version pydantic)" "pydantic-core==$(version pydantic-core)" annotated-types typing-inspection \
    structlog greenlet typing-extensions "transformers==$(version transformers)" "peft==$(version peft)"
rm -rf gpu/train
"$PY" bench/train_loop.py --shape 2b --prepare gpu/train
cat > .whl/gpu.sh <<'SH'
#!/bin/bash
# On the device machine: the carried wheels beside the image's torch, then the GPU benchmarks.
set -u
mkdir -p /tmp/py && python3 -m pip install -q --no-deps --no-index --target /tmp/py .whl/*.whl 2>&1 | tail -2
export PYTHONPATH=/tmp/py:$PWD
nvidia-smi --query-gpu=name,memory.total,driver_version --format=csv,noheader
python3 -c "import torch, transformers; print('torch', torch.__version__, 'transformers', transformers.__version__)"
timeout 240 python3 bench/gpu_step.py --shape 2b --reps 3 2>&1 | grep -v -i "warn\|shards\|output = func" | tail -16
timeout 240 python3 bench/train_loop.py --from gpu/train --shape 2b --steps 30 --full 2>&1 | grep -v -i "warn\|Loading weights\|shards" | tail -8
SH
echo "prepared: .whl/ ($(du -sh .whl | cut -f1)), gpu/train/; device command: bash .whl/gpu.sh, carry [\".whl\", \"gpu\"]"
