#!/usr/bin/env bash
# Installs the independent checkers the tests use (from ../shared/peers),
# once per machine: the FHIR R4 validator (fhir.resources 6.4.0, the last
# release with R4 4.0.1 models, on pydantic 1).
set -euo pipefail
ROOT=/tmp/peers
if [ -x "$ROOT/venv-r4/bin/python" ] && "$ROOT/venv-r4/bin/python" -c 'import fhir.resources as f; assert f.__fhir_version__ == "4.0.1"' 2>/dev/null; then
  echo "FHIR R4 validator already installed in $ROOT/venv-r4"
  exit 0
fi
mkdir -p "$ROOT"
python3 -m venv "$ROOT/venv-r4"
"$ROOT/venv-r4/bin/pip" install --quiet "fhir.resources==6.4.0" "pydantic>=1.10,<2"
"$ROOT/venv-r4/bin/python" -c 'import fhir.resources as f; assert f.__fhir_version__ == "4.0.1", f.__fhir_version__'
echo "FHIR R4 validator installed in $ROOT/venv-r4"
