#!/usr/bin/env bash
# The GPU check (benchmarks/gpu_check.py): every figure docs/performance.md wants from
# a GPU, in one command that runs in minutes, compilation included.
#
#   benchmarks/gpu_check.sh --prepare         # on a machine with internet: wheels -> .whl/
#   benchmarks/gpu_check.sh                   # on the GPU machine (no network needed)
#   benchmarks/gpu_check.sh --out DIR         # where gpu_check.json/.md go (default
#                                             # gpu_check_out)
#   benchmarks/gpu_check.sh --dry_run         # tiny sizes, on a CPU in a minute or two
#
# The GPU machine's Python is expected to hold its own (CUDA) JAX, flax, optax,
# orbax-checkpoint, scikit-image, tensorboard and tqdm; JAX is never installed or
# upgraded here. What it may lack (ml_collections, pinned in requirements.txt) travels
# as wheels in .whl/ (ignored by git, well under 1 MB), made by --prepare, and is
# installed into a temporary folder on the Python path, never into the environment.
# PYTHON picks the interpreter (default python3).
set -euo pipefail

ROOT="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
PY="${PYTHON:-python3}"
WHEELS="$ROOT/.whl"
# Pure-Python packages the check imports that a GPU image may not have.
NEEDED=(ml_collections)

pinned() {  # "name==version" from requirements.txt, or the bare name
  local line
  line="$(grep -i -E "^$1==" "$ROOT/requirements.txt" || true)"
  echo "${line:-$1}"
}

if [[ "${1:-}" == "--prepare" ]]; then
  mkdir -p "$WHEELS"
  for name in "${NEEDED[@]}"; do
    "$PY" -m pip download --quiet --no-deps --only-binary=:all: -d "$WHEELS" "$(pinned "$name")"
  done
  echo "Wheels in $WHEELS:"; ls -l "$WHEELS"
  exit 0
fi

missing=()
for name in "${NEEDED[@]}"; do
  "$PY" -c "import $name" 2>/dev/null || missing+=("$name")
done
if (( ${#missing[@]} )); then
  if ! compgen -G "$WHEELS/*.whl" >/dev/null; then
    echo "innjax: error: ${missing[*]} not importable and no wheels in $WHEELS; run benchmarks/gpu_check.sh --prepare on a machine with internet, then carry .whl/ along." >&2
    exit 2
  fi
  SITE="$(mktemp -d /tmp/innjax_gpu_check_site.XXXXXX)"
  "$PY" -m pip install --quiet --no-index --no-deps --no-compile --no-cache-dir \
      --target "$SITE" "$WHEELS"/*.whl
  export PYTHONPATH="$SITE${PYTHONPATH:+:$PYTHONPATH}"
fi

cd "$ROOT"
exec "$PY" benchmarks/gpu_check.py "$@"
