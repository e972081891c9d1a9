#!/usr/bin/env bash
# Meta-World MT50 on a 2-core CPU in about two hours: the MT10 CPU tier's recipe (benchmarks/mt10_cpu.sh:
# 50 expert demos per task at 96 px, the default preset, batch 64, the lr following the clock) on all
# 50 tasks, with 80 minutes of training (MT10_MAX_MINUTES) around ~26 min of collection and ~15 min
# of evaluation (10 episodes per task, 500 in all). Writes benchmarks/results/mt50_cpu.json, or
# mt50_cpu_published.json with MT10_PROTOCOL=published (the protocol of the published MT50 table).
#   bash benchmarks/mt50_cpu.sh [OUT]                                  # default OUT /tmp/mt50
#   MT10_PROTOCOL=published bash benchmarks/mt50_cpu.sh /tmp/mt50-published
# The other variables of mt10_cpu.sh (MT10_SET, MT10_RESULT, MT10_IMAGE, MT10_STEPS, MT10_CAMERA) apply.
set -euo pipefail
# corner2 unless told: the MT50 rows were measured on it (the workspace view is not measured on MT50).
export MT_SUITE=mt50 MT10_MAX_MINUTES="${MT10_MAX_MINUTES:-80}" MT10_STEPS="${MT10_STEPS:-40000}" \
  MT10_CAMERA="${MT10_CAMERA:-corner2}"
exec bash "$(dirname "$0")/mt10_cpu.sh" "${1:-/tmp/mt50}"
