#!/usr/bin/env bash
# Every crash, kill and stop test, RUNS times in a row, with one CPU hog per core beside them: the load under which
# a kill test once flaked (1 run in 10 on a fresh clone). Stops at the first failure and keeps its log.
#
#   devtools/stress_kill_tests.sh [RUNS] [BLENDER_VENV...]
#
# RUNS defaults to 20. The engine's tests run in .venv; the Blender tests in each BLENDER_VENV given, or else in
# .venv and whichever of .venv-bpy45 and .venv-bpy42 exist. STRESS_SUITES picks the sides ("engine blender", the
# default, or either one). STRESS_HOGS sets the number of hogs (default: one per core; 0 when another loop already
# runs its hogs beside this one). Logs go to $STRESS_LOGS (default: a new folder in /tmp).
set -u
cd "$(dirname "$0")/.."

runs=${1:-20}
shift || true
if [ $# -gt 0 ]; then
    blender_venvs=("$@")
else
    blender_venvs=(.venv)
    for venv in .venv-bpy45 .venv-bpy42; do
        [ -x "$venv/bin/python" ] && blender_venvs+=("$venv")
    done
fi
suites=${STRESS_SUITES:-engine blender}
logs=${STRESS_LOGS:-$(mktemp -d /tmp/stress-kill-tests.XXXXXX)}
mkdir -p "$logs"
cores=$(getconf _NPROCESSORS_ONLN)  # before OMP_NUM_THREADS is set: nproc would answer 1 after
export OMP_NUM_THREADS=1  # torch's threads would fight the hogs and each other

# The engine side: SIGKILL mid-write, SIGINT/SIGTERM mid-step, stop requests, a parent that dies, temporaries of
# dead, zombie and live processes, two workers in one folder.
engine_tests=(
    tests/test_faults.py::test_a_kill_mid_write_leaves_whole_frames_and_resumes_to_the_same_pixels
    tests/test_faults.py::test_a_signal_stops_within_one_step_and_keeps_finished_frames
    tests/test_faults.py::test_prepare_removes_only_temporaries_no_running_render_is_writing
    tests/test_faults.py::test_two_workers_render_disjoint_ranges_into_one_folder
    tests/test_faults.py::test_a_killed_render_not_yet_reaped_counts_as_dead
    tests/test_faults.py::test_a_killed_render_reaped_while_it_is_checked_counts_as_dead
    tests/test_runner.py::test_stopping_keeps_finished_frames_and_resume_matches_an_uninterrupted_render
    tests/test_sampler.py::test_stop_request_stops_within_a_step
    tests/test_preview.py::test_a_stop_request_stops_the_preview_in_progress_and_the_server_keeps_serving
    tests/test_preview.py::test_a_render_whose_parent_dies_stops_instead_of_holding_the_gpu
)
# The Blender side: a render whose engine is SIGKILLed behind a wrapper, Esc and a kill through a wrapper, and the
# engine's pipes closed after a render.
blender_tests=(
    tests/blender/test_errors.py::test_a_crashing_render_keeps_finished_frames_and_resumes
    tests/blender/test_errors.py::test_a_render_leaves_no_file_open
    tests/blender/test_engine_process.py
)

hogs=()
for _ in $(seq "${STRESS_HOGS:-$cores}"); do
    python3 -c "while True: pass" &
    hogs+=($!)
done
trap '[ ${#hogs[@]} -gt 0 ] && kill "${hogs[@]}" 2>/dev/null' EXIT

run_pytest() {  # run_pytest LOG VENV TESTS...
    local log=$1 venv=$2
    shift 2
    "$venv/bin/python" -m pytest -x -q -p no:cacheprovider --durations=5 "$@" >"$log" 2>&1
}

echo "$runs runs of the $suites tests, ${#hogs[@]} CPU hogs, Blender tests in: ${blender_venvs[*]}; logs in $logs"
started=$(date +%s)
for run in $(seq "$runs"); do
    run_started=$(date +%s)
    plan=()
    [[ " $suites " == *" engine "* ]] && plan+=("engine .venv")
    if [[ " $suites " == *" blender "* ]]; then
        for venv in "${blender_venvs[@]}"; do
            plan+=("blender $venv")
        done
    fi
    for suite in "${plan[@]}"; do
        read -r side venv <<<"$suite"
        log="$logs/run$(printf %02d "$run")-$side-${venv#.}.log"
        if [ "$side" = engine ]; then
            run_pytest "$log" "$venv" "${engine_tests[@]}"
        else
            run_pytest "$log" "$venv" "${blender_tests[@]}"
        fi
        status=$?
        if [ $status -ne 0 ]; then
            echo "run $run: FAILED ($side tests in $venv, exit $status): $log"
            tail -n 30 "$log"
            echo "passed $((run - 1)) runs in a row before this one, in $(($(date +%s) - started)) s"
            exit 1
        fi
        echo "run $run: $side tests in $venv: $(grep -E '[0-9]+ passed' "$log" | tail -n 1)"
    done
    echo "run $run passed in $(($(date +%s) - run_started)) s"
done
echo "all $runs runs passed in $(($(date +%s) - started)) s"
