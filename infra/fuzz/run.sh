#!/usr/bin/env bash
# `make fuzz`: schemathesis against every service of the local stack, once per role.
# Builds nothing (the Makefile's `build` does); installs schemathesis once if it is missing;
# infra/fuzz/fuzz.py starts the stack, seeds it, fuzzes, prints the figures and stops the stack.
set -euo pipefail
cd "$(dirname "$0")/../.."

infra/local/install-deps.sh --fuzz
exec python3 infra/fuzz/fuzz.py "$@"
