#!/usr/bin/env bash
# The GPU part of the speed work, as one prepared run that fits a short lease of a CUDA machine:
# the gpu-marked tests (tests/test_cuda.py), bench_steps.py on CUDA for ResNet-50, ViT-S/16 and
# CIFAR in fp32 (eager and compiled) and TF32 (eager), and the ImageNet pipeline benchmark.
# Every result goes under $OUT (default /tmp/device_check), one file per part.
#
#   bash benchmarks/device_check.sh wheels   # here (with internet to PyPI): the missing packages
#                                            # as Python 3.12 wheels into .whl/ (git-ignored)
#   bash benchmarks/device_check.sh run      # there, with .whl carried: ~9 minutes at most
#   bash benchmarks/device_check.sh all      # there: an eager bench_steps row for every
#                                            # workload (a second call, ~5 minutes at most)
#
# The device machine has python3 with torch, torchvision and numpy, and no package index; what
# our code imports beyond that is in WHEELS (hydra and its parser, omegaconf, torchdata,
# rapidfuzz). Its torch is whatever that image holds, not pyproject.toml's pin. Each part has its
# own time limit so that a hang in one still leaves the others' figures.
set -u -o pipefail

WHEELS=(hydra-core==1.3.8 omegaconf==2.3.1 antlr4-python3-runtime==4.9.3 torchdata==0.11.0
        rapidfuzz==3.14.6)
PLATFORMS=(manylinux_2_28_x86_64 manylinux_2_17_x86_64 manylinux2014_x86_64)

fetch_wheels() {
    mkdir -p .whl
    local platform_args=()
    for p in "${PLATFORMS[@]}"; do platform_args+=(--platform "$p"); done
    for w in "${WHEELS[@]}"; do
        # antlr4's runtime 4.9.3 (what omegaconf 2.3 needs) is published as a source archive
        # only: it is pure Python, so a wheel built here installs anywhere.
        python3 -m pip download -q --no-deps --only-binary=:all: --python-version 3.12 \
            --implementation cp "${platform_args[@]}" -d .whl "$w" 2>/dev/null \
            || python3 -m pip wheel -q --no-deps -w .whl "$w" \
            || { echo "error: could not fetch $w" >&2; return 1; }
    done
    ls -l .whl
}

part() {  # part NAME SECONDS COMMAND...: run one part, its output in $OUT/NAME.txt
    local name=$1 limit=$2
    shift 2
    echo "== $name (limit ${limit}s): $*"
    timeout "$limit" "$@" >"$OUT/$name.txt" 2>&1
    local rc=$?
    echo "   exit $rc; last lines:"
    tail -n 15 "$OUT/$name.txt" | sed 's/^/   /'
}

setup_device() {
    OUT=${OUT:-/tmp/device_check}
    mkdir -p "$OUT"
    if compgen -G ".whl/*.whl" >/dev/null; then
        python3 -m pip install -q --no-index --no-deps --no-compile --no-cache-dir --upgrade \
            --target /tmp/site .whl/*.whl || exit 1
        export PYTHONPATH=/tmp/site
    fi
    export PYTHONPATH="$PWD${PYTHONPATH:+:$PYTHONPATH}" PYTHONUNBUFFERED=1
    nvidia-smi >"$OUT/nvidia-smi.txt" 2>&1
    python3 -c "import torch; print(torch.__version__, torch.cuda.get_device_name(0))" \
        || { echo "error: no CUDA device for torch here" >&2; exit 1; }
}

run_checks() {  # the part limits add up to 9 minutes: the device tool's 10 per call, less margin
    setup_device
    local conv_nets=(imagenet_resnet imagenet_vit cifar)
    part gpu_tests 150 python3 -m pytest -p no:cacheprovider -m gpu tests/test_cuda.py -q
    part steps_fp32 240 python3 benchmarks/bench_steps.py --device cuda --steps 10 \
        --workloads "${conv_nets[@]}" --json-out "$OUT/steps_fp32.json"
    part steps_tf32 90 python3 benchmarks/bench_steps.py --device cuda --tf32 --no-compile \
        --steps 10 --workloads "${conv_nets[@]}" --json-out "$OUT/steps_tf32.json"
    part pipeline 60 python3 benchmarks/bench_imagenet_pipeline.py --images 960 --repeats 3 \
        --workers 8 --skip-steps
}

run_all() {
    setup_device
    part steps_all 300 python3 benchmarks/bench_steps.py --device cuda --no-compile \
        --json-out "$OUT/steps_all.json"
}

case "${1:-}" in
    wheels) fetch_wheels ;;
    run) run_checks ;;
    all) run_all ;;
    *) echo "usage: bash benchmarks/device_check.sh wheels|run|all" >&2; exit 2 ;;
esac
