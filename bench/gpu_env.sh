# shellcheck shell=bash
# Source this on the GPU machine, from the repository root, before `python -m bench.gpu_run run`.
#
# That machine has PyTorch but no package registry and numpy 2.x. The nvidia-pytriton 0.7.0
# Python backend stub reads and writes tensors wrong under numpy 2 (shared TOOLS.md), so the
# lab runs in a virtual environment of its own: numpy 1.26 first, then the machine's packages
# (PyTorch, transformers, matplotlib) linked in, plus the wheel's tritonserver and
# Prometheus/promtool from the kit that `python -m bench.gpu_run kit` packs on a machine with pip.
# The stub finds its Python through `python3` on PATH, so the venv's bin goes first.
set -e
KIT=${KIT:-.gpukit}
VENV=${VENV:-/tmp/llmprep-gpu-venv}
BASE_SITE=$(python3 -c 'import site; print(site.getsitepackages()[0])')
python3 -m venv --without-pip "$VENV"
SITE=$("$VENV/bin/python" -c 'import sysconfig; print(sysconfig.get_paths()["purelib"])')
tar -xJf "$KIT/numpy-1.26.4-cp312.tar.xz" -C "$SITE"
tar -xJf "$KIT/pytriton-site.tar.xz" -C "$SITE"
python3 -m pip install -q --no-index --no-deps --no-compile --target "$SITE" "$KIT"/whl/*.whl
# The machine's packages, linked in beside numpy 1.26, except numpy itself and scikit-learn:
# transformers' generation code imports scikit-learn when present, and with the machine's one
# visible beside numpy 1.26, `from transformers import AutoTokenizer` failed (H200, 2026-12-03).
for entry in "$BASE_SITE"/*; do
  name=$(basename "$entry")
  case "$name" in numpy|numpy-*|numpy.libs|sklearn|scikit_learn*) continue ;; esac
  [ -e "$SITE/$name" ] || ln -s "$entry" "$SITE/$name"
done
mkdir -p "$VENV/tools"
xz -dc "$KIT/prometheus.xz" > "$VENV/tools/prometheus"
xz -dc "$KIT/promtool.xz" > "$VENV/tools/promtool"
chmod +x "$VENV/tools/prometheus" "$VENV/tools/promtool"
export PATH="$VENV/bin:$VENV/tools:$PATH" PYTHONPATH="$PWD" PYTHONUNBUFFERED=1
set +e
