#!/usr/bin/env bash
# Run molecule scenarios in MOLECULE_JOBS lanes (default 3) at once: each scenario has its own
# containers, ports and ephemeral directory, and much of a scenario's time is spent waiting on
# its hosts (apt, pip, health gates, load windows), so three lanes shorten `make test` even on a
# 2-core machine. A lane that finishes a
# scenario takes the next one not yet started, in the order given (list the longest first).
# Each scenario's output goes to .cache/molecule-logs/SCENARIO.log and is printed at the end.
#   tests/testbed/run-molecule.sh SCENARIO...
set -uo pipefail

jobs=${MOLECULE_JOBS:-3}
logs=.cache/molecule-logs
mkdir -p "$logs"
scenarios=("$@")

queue=$(mktemp -d)
trap 'rm -rf "$queue"' EXIT
echo 0 > "$queue/next"

next_index() {  # the index of the next scenario no lane has taken
    (
        flock 9
        local index
        index=$(<"$queue/next")
        echo $((index + 1)) > "$queue/next"
        echo "$index"
    ) 9>"$queue/lock"
}

lane() {  # run scenarios from the queue until it is empty; exit non-zero if any failed
    local index rc=0 scenario
    while index=$(next_index) && (( index < ${#scenarios[@]} )); do
        scenario=${scenarios[$index]}
        echo "molecule scenario $scenario: started at $(date -u +%H:%M:%S)"
        SECONDS=0
        if molecule test -s "$scenario" > "$logs/$scenario.log" 2>&1; then
            echo "molecule scenario $scenario: passed in ${SECONDS}s" | tee -a "$logs/$scenario.log"
        else
            echo "molecule scenario $scenario: FAILED after ${SECONDS}s" | tee -a "$logs/$scenario.log"
            rc=1
        fi
    done
    return $rc
}

pids=()
for (( lane_index = 0; lane_index < jobs && lane_index < ${#scenarios[@]}; lane_index++ )); do
    lane &
    pids+=($!)
done
rc=0
for pid in "${pids[@]}"; do
    wait "$pid" || rc=1
done
for scenario in "${scenarios[@]}"; do
    echo "===== molecule scenario $scenario ====="
    cat "$logs/$scenario.log"
done
for scenario in "${scenarios[@]}"; do
    tail -n 1 "$logs/$scenario.log"
done
exit $rc
