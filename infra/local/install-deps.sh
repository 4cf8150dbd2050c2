#!/usr/bin/env bash
# Installs the Debian packages Fission builds and tests with, if any are missing.
# Runs `apt-get update` at most once, and only when something must be installed.
# `--fuzz` also installs schemathesis (PyPI) for `make fuzz` (infra/fuzz), once; `--bench` also
# installs wrk, the load generator of `make bench`.
set -euo pipefail

fuzz=false
bench=false
for flag in "$@"; do
  case "$flag" in
    --fuzz) fuzz=true ;;
    --bench) bench=true ;;
    *) echo "install-deps.sh: unknown flag $flag (known: --fuzz, --bench)" >&2; exit 2 ;;
  esac
done

packages=(
  pkg-config
  libpq-dev          # libpq, wrapped by Shared/Postgres
  librdkafka-dev     # librdkafka 2.0.2, wrapped by Shared/Kafka (includes the mock cluster)
  postgresql         # server binaries for the throwaway test and local-stack clusters
  kcat               # reference for the Kafka benchmark
  docker-compose     # validates docker-compose.yml without a Docker engine (infra/check-deployment.py)
)
if $bench; then
  packages+=(wrk)    # HTTP load from a separate process (fission-bench assists)
fi
# `kubectl kustomize` renders infra/k8s; any kubectl will do, Debian's when none is installed.
if ! command -v kubectl >/dev/null 2>&1; then
  packages+=(kubernetes-client)
fi

missing=()
for package in "${packages[@]}"; do
  if ! dpkg-query -W -f='${Status}' "$package" 2>/dev/null | grep -q "install ok installed"; then
    missing+=("$package")
  fi
done

# The contract tests validate JSON Schemas with Python's jsonschema, the OpenAPI documents with
# openapi-spec-validator (and PyYAML).
if ! python3 -c 'import jsonschema, yaml, openapi_spec_validator' >/dev/null 2>&1; then
  python3 -m pip install --quiet 'jsonschema>=4.18' pyyaml openapi-spec-validator \
    || { echo "cannot install the Python validators (jsonschema, pyyaml, openapi-spec-validator)" >&2; exit 1; }
fi
# `make fuzz` drives schemathesis 4 (its JSON run report and hooks); only installed when asked for.
if $fuzz && ! python3 -c 'import schemathesis, requests, sys; sys.exit(int(schemathesis.__version__.split(".")[0]) != 4)' >/dev/null 2>&1; then
  python3 -m pip install --quiet 'schemathesis>=4.32,<5' \
    || { echo "cannot install schemathesis (PyPI)" >&2; exit 1; }
fi

if [ ${#missing[@]} -eq 0 ]; then
  exit 0
fi

if [ "$(id -u)" -eq 0 ]; then
  runner=()
elif command -v sudo >/dev/null 2>&1; then
  runner=(sudo)
else
  echo "missing Debian packages: ${missing[*]} (run as root or install them)" >&2
  exit 1
fi

echo "installing: ${missing[*]}"
"${runner[@]}" apt-get update -qq
DEBIAN_FRONTEND=noninteractive "${runner[@]}" apt-get install -y -qq --no-install-recommends "${missing[@]}"
