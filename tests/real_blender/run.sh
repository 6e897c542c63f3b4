#!/usr/bin/env bash
# `make test-real-blender`: the extension in Debian sid's real Blender (5.2 LTS), from validate to a windowed run.
#
#   tests/real_blender/run.sh [harness options: --from STEP, --only STEP]
#
# Builds or reuses the chroot (chroot.sh), then runs harness.py inside it. Needs root. Settings, all optional:
#   REAL_BLENDER_OUT         logs, the built zip, the fresh user folder, screenshots
#                            (default /var/tmp/diffusion-bender-real-blender)
#   DIFFUSION_BENDER_CHROOT  where the chroot lives (default /var/cache/diffusion-bender/sid)
#   REAL_BLENDER_COMPUTE     Install Dependencies' compute choice (default: the extension's Auto); "cuda" takes
#                            PyPI's torch, for a machine that cannot reach PyTorch's own index
# The first run downloads Debian sid with Blender (~6 minutes) and the engine's wheels (GBs); later runs reuse both.
set -euo pipefail

HERE=$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)
export REAL_BLENDER_OUT=${REAL_BLENDER_OUT:-/var/tmp/diffusion-bender-real-blender}

"$HERE/chroot.sh" ensure
status=0
# The chroot starts from an empty environment: pass on what the harness reads.
pass=()
for name in REAL_BLENDER_COMPUTE OMP_NUM_THREADS; do
    if [ -n "${!name:-}" ]; then pass+=("$name=${!name}"); fi
done
"$HERE/chroot.sh" run /usr/bin/env "${pass[@]}" /usr/bin/python3 /src/tests/real_blender/harness.py \
    --src /src --out /out "$@" || status=$?
echo "full logs:    $REAL_BLENDER_OUT/logs/"
echo "screenshots:  $REAL_BLENDER_OUT/screenshots/"
echo "summary:      $REAL_BLENDER_OUT/summary.json"
exit $status
