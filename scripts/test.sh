#!/usr/bin/env bash
# Install dashrl with its test extra (torch pinned to the CPU build) and run the default suite.
set -euo pipefail
cd "$(dirname "$0")/.."
python3 -m pip install -q -e ".[test]"
python3 -m pytest tests -p no:cacheprovider
