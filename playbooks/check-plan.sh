#!/usr/bin/env bash
# Is the plan file still current for the database? Run before any step that changes
# the database, so a runbook never applies a plan made from another catalog.
#
#   usage: check-plan.sh PLAN_FILE CONN
#   exit:  0 current, 5 stale (changes listed on stdout), 1 anything else
set -uo pipefail
plan=${1:?usage: check-plan.sh PLAN_FILE CONN}
conn=${2:?usage: check-plan.sh PLAN_FILE CONN}
carve=${CARVE:-carve}

if [ ! -f "$plan" ]; then
    echo "check-plan: no plan file at $plan" >&2
    exit 1
fi
report=$("$carve" --plan "$plan" --quiet inspect --source "$conn")
code=$?
case $code in
    0)
        if grep -q "up to date" <<<"$report"; then
            echo "check-plan: $plan is current"
            exit 0
        fi
        echo "check-plan: $plan was not compared:" >&2
        grep "^plan " <<<"$report" >&2
        exit 1
        ;;
    5)
        echo "check-plan: $plan is STALE; the database changed since it was made:"
        sed -n '/^plan /,$p' <<<"$report"
        exit 5
        ;;
    *)
        echo "check-plan: carve inspect failed (exit $code)" >&2
        exit 1
        ;;
esac
