#!/usr/bin/env bash
# The prepared GPU check: one call, at most ~8 minutes on a GPU machine with torch and torch_geometric
# preinstalled and no network. It
#   1. runs the CUDA tests (pytest -m cuda),
#   2. benchmarks IDSF on Baby (random 4096-d + 384-d stand-in features): all-item and batch scopes,
#      float32 and bf16, full epochs: s/step, s/epoch, s/evaluation, peak GPU memory, GEMM floor,
#   3. times one all-item epoch on Clothing (23,033 items),
# and writes the figures to OUT_DIR (gpu_check.md, bench_baby.json, bench_clothing.json, pytest.log).
#
#   bash experiments/gpu_check.sh --data DIR [--out OUT_DIR] [--device cuda]
#   bash experiments/gpu_check.sh --device cpu --dry-run      # the same steps in seconds (tests run this)
#
# DIR holds amazon2014/baby/5-core/ and amazon2014/clothing/clothing.inter (a copy of ../shared/data, which
# does not travel to the GPU machine: put it in a git-ignored folder of the checkout and carry it).
# --dry-run: synthetic dataset instead of Baby/Clothing, 1 timed step per configuration, no pytest.
set -uo pipefail
cd "$(dirname "$0")/.."

PY="${PYTHON:-python3}"
DEVICE=cuda
OUT_DIR="${OUT:-gpu_check_out}"
DATA="${IDSF_DATA:-}"
DRY=0
while [ $# -gt 0 ]; do
  case "$1" in
    --device) DEVICE="$2"; shift 2 ;;
    --out) OUT_DIR="$2"; shift 2 ;;
    --data) DATA="$2"; shift 2 ;;
    --dry-run) DRY=1; shift ;;
    *) echo "gpu_check.sh: unknown option $1" >&2; exit 2 ;;
  esac
done
mkdir -p "$OUT_DIR"
[ -n "$DATA" ] && export IDSF_DATA="$DATA"
export PYTHONWARNINGS=ignore
status=0
start=$(date +%s)

{
  echo "# GPU check ($(date -u +%Y-%m-%dT%H:%M:%SZ))"
  echo
  "$PY" - "$DEVICE" <<'EOF'
import sys, torch, torch_geometric
dev = sys.argv[1]
name = torch.cuda.get_device_name(0) if dev.startswith("cuda") and torch.cuda.is_available() else "CPU"
print(f"device: {dev} ({name}); torch {torch.__version__}, CUDA {torch.version.cuda}, "
      f"torch_geometric {torch_geometric.__version__}")
EOF
  echo
} > "$OUT_DIR/gpu_check.md"

# The time limits guard the GPU machine's device minutes; a dry run on the CPU has no such budget and may
# share its cores with other jobs (torch's products then run many times slower), so it runs unlimited.
limited() {
  local seconds="$1"; shift
  if [ "$DRY" = 1 ]; then "$@"; else timeout "$seconds" "$@"; fi
}

if [ "$DRY" = 1 ]; then
  BABY=synthetic; CLOTHING=synthetic; STEPS=(--max-steps 1 --eval-repeats 1)
else
  BABY=amazon2014/baby; CLOTHING=amazon2014/clothing; STEPS=(--max-steps 0 --eval-repeats 5)
  echo "[gpu_check] CUDA tests" >&2
  limited 120 "$PY" -m pytest -q -m cuda -p no:cacheprovider tests > "$OUT_DIR/pytest.log" 2>&1
  rc=$?; [ $rc -ne 0 ] && status=1
  { echo "## CUDA tests (pytest -m cuda, exit $rc)"; echo; echo '```'; tail -n 5 "$OUT_DIR/pytest.log"; echo '```'; echo; } \
    >> "$OUT_DIR/gpu_check.md"
fi

echo "[gpu_check] bench on $BABY" >&2
{ echo "## IDSF on $BABY: all-item and batch scopes, float32 and bf16"; echo; } >> "$OUT_DIR/gpu_check.md"
limited 210 "$PY" -m experiments.bench --dataset "$BABY" --device "$DEVICE" --scopes all,batch --amp none,bf16 \
  "${STEPS[@]}" --json-out "$OUT_DIR/bench_baby.json" > "$OUT_DIR/bench_baby.log" 2>&1
rc=$?; [ $rc -ne 0 ] && status=1
sed -n '/^IDSF on/,$p' "$OUT_DIR/bench_baby.log" | grep -v '^wrote' >> "$OUT_DIR/gpu_check.md"
[ $rc -ne 0 ] && tail -n 20 "$OUT_DIR/bench_baby.log" >> "$OUT_DIR/gpu_check.md"

echo "[gpu_check] one all-item epoch on $CLOTHING" >&2
{ echo; echo "## One all-item epoch on $CLOTHING (float32)"; echo; } >> "$OUT_DIR/gpu_check.md"
limited 120 "$PY" -m experiments.bench --dataset "$CLOTHING" --device "$DEVICE" --scopes all --amp none \
  "${STEPS[@]}" --eval-repeats 1 --json-out "$OUT_DIR/bench_clothing.json" > "$OUT_DIR/bench_clothing.log" 2>&1
rc=$?; [ $rc -ne 0 ] && status=1
sed -n '/^IDSF on/,$p' "$OUT_DIR/bench_clothing.log" | grep -v '^wrote' >> "$OUT_DIR/gpu_check.md"
[ $rc -ne 0 ] && tail -n 20 "$OUT_DIR/bench_clothing.log" >> "$OUT_DIR/gpu_check.md"

{ echo; echo "total: $(( $(date +%s) - start )) s, exit $status"; } >> "$OUT_DIR/gpu_check.md"
cat "$OUT_DIR/gpu_check.md"
exit $status
