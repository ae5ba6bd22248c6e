#!/usr/bin/env bash
# Installs what the tests need (into ./.venv) and runs the whole suite. Extra args go to pytest.
source "$(dirname "$0")/env.sh"
exec python -m pytest "$@"
