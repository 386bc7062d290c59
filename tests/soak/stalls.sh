#!/bin/sh
# The stalls of tests/test_timeouts.py at full length: the SQLite write lock held by another
# process for 40 s and for 170 s, and Redis frozen (SIGSTOP) for 20 s. About 8 minutes.
set -eu
cd "$(dirname "$0")/../.."
for seconds in 40 170; do
    LANGSWARM_STALL_SECONDS=$seconds .venv/bin/python -m pytest -q -p no:cacheprovider \
        --timeout 600 tests/test_timeouts.py -k sqlite
done
LANGSWARM_STALL_SECONDS=20 .venv/bin/python -m pytest -q -p no:cacheprovider \
    --timeout 600 tests/test_timeouts.py -k redis
