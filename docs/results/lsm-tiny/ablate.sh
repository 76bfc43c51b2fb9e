#!/usr/bin/env bash
# One row of ablations.md: pre-train a configuration, then run the probe study on 1,000 new test participants.
#   docs/results/lsm-tiny/ablate.sh NAME [pretrain options...]
# Every run uses the baseline's data, schedule and seed unless an option overrides it (argparse keeps the last).
# Writes runs/ablate/NAME/ (model, metrics, study) and runs/ablate/NAME.log, with the CPU seconds and the load
# average before and after each stage. Run it alone on the machine.
set -euo pipefail
name=$1; shift
out=runs/ablate/$name
mkdir -p "$out"
log=runs/ablate/$name.log
py=${PYTHON:-.venv/bin/python}
{
  echo "load before pre-training: $(cut -d' ' -f1-3 /proc/loadavg)"
  /usr/bin/time -f "pretrain: %U user + %S system CPU seconds, %e s wall" \
    "$py" -m modeling.ml lsm pretrain --size tiny --participants 800 --days 4 --steps 4000 --batch-size 32 \
      --learning-rate 1e-3 --seed 0 --validate-every 500 --checkpoint-every 1000 "$@" --output "$out"
  echo "load after pre-training: $(cut -d' ' -f1-3 /proc/loadavg)"
  /usr/bin/time -f "probe study: %U user + %S system CPU seconds, %e s wall" \
    "$py" -m modeling.ml lsm probe-study --model "$out/model" --participants 1600 --test-share 0.625 --days 3 \
      --resamples 500 --few-shot-resamples 200 --methods diagnose \
      --only handcrafted "last (CV)" "last (not standardized, CV)" "last_by_channel (CV)" --output "$out/study"
  echo "load after the study: $(cut -d' ' -f1-3 /proc/loadavg)"
} 2>&1 | grep -v -e FutureWarning -e "warnings.warn" > "$log"
