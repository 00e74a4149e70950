#!/usr/bin/env bash
# Repository benchmark (issue #6, item 8): search by identifier over
# PATIENTS patients, and Patient/$summary for one patient holding 500
# resources, on the embedded SQLite store. Latencies are measured by a
# client on loopback over one keep-alive connection, one request at a time.
# Figures go to docs/performance.md.
#
#   bash gateway/benches/repository.sh [PATIENTS] [REQUESTS]
#
# Needs: a release build (cargo build --release -p gateway) and python3.
set -euo pipefail
cd "$(dirname "$0")/../.."
PATIENTS=${1:-100000}
REQUESTS=${2:-2000}
WORK=$(mktemp -d)
HTTP_PORT=18081
PASSERELLE=${PASSERELLE_BIN:-target/release/passerelle}
cleanup() {
  [ -n "${GATEWAY_PID:-}" ] && kill "$GATEWAY_PID" 2>/dev/null || true
  rm -rf "$WORK"
}
trap cleanup EXIT

PASSERELLE_HTTP__LISTEN=127.0.0.1:$HTTP_PORT PASSERELLE_MLLP__ENABLED=false \
  PASSERELLE_STORAGE__DATA_DIR="$WORK/data" "$PASSERELLE" > "$WORK/gateway.log" 2>&1 &
GATEWAY_PID=$!
for _ in $(seq 1 300); do curl -sf -o /dev/null "http://127.0.0.1:$HTTP_PORT/ready" && break; sleep 0.1; done
# The local admin key the gateway made at start (every scope).
KEY=$(cat "$WORK/data/local-admin.key")

python3 - "$HTTP_PORT" "$PATIENTS" "$REQUESTS" "$KEY" <<'PY'
import http.client, json, random, statistics, sys, time

port, patients, requests, key = int(sys.argv[1]), int(sys.argv[2]), int(sys.argv[3]), sys.argv[4]
connection = http.client.HTTPConnection("127.0.0.1", port)

def call(method, path, body=None):
    headers = {"Authorization": f"Bearer {key}"}
    if body:
        headers["Content-Type"] = "application/fhir+json"
    started = time.perf_counter()
    connection.request(method, path, body=body, headers=headers)
    response = connection.getresponse()
    data = response.read()
    elapsed = (time.perf_counter() - started) * 1000
    if response.status != 200:
        sys.exit(f"{method} {path}: {response.status} {data[:300]!r}")
    return elapsed, data

def transaction(entries):
    call("POST", "/fhir", json.dumps({"resourceType": "Bundle", "type": "transaction", "entry": entries}))

# Patients, 1000 per transaction.
started = time.time()
for first in range(0, patients, 1000):
    transaction([{
        "resource": {"resourceType": "Patient",
                     "identifier": [{"system": "urn:passerelle:bench", "value": f"P{n:07d}"}],
                     "name": [{"family": f"Family{n % 5000}", "given": [f"Given{n}"]}],
                     "gender": "female" if n % 2 else "male",
                     "birthDate": f"{1930 + n % 90}-{1 + n % 12:02d}-{1 + n % 28:02d}"},
        "request": {"method": "POST", "url": "Patient"}} for n in range(first, min(first + 1000, patients))])
load_seconds = time.time() - started

# One patient with 500 resources: 400 results, 50 problems, 20 allergies, 30 immunizations.
patient = {"fullUrl": "urn:uuid:rich", "resource": {"resourceType": "Patient",
           "identifier": [{"system": "urn:passerelle:bench", "value": "RICH"}], "name": [{"family": "Rich"}]},
           "request": {"method": "POST", "url": "Patient"}}
entries = [patient]
for n in range(400):
    entries.append({"resource": {"resourceType": "Observation", "status": "final",
        "category": [{"coding": [{"system": "http://terminology.hl7.org/CodeSystem/observation-category", "code": "laboratory"}]}],
        "code": {"coding": [{"system": "http://loinc.org", "code": "2345-7", "display": "Glucose"}]},
        "subject": {"reference": "urn:uuid:rich"}, "effectiveDateTime": f"2026-{1 + n % 12:02d}-{1 + n % 28:02d}",
        "valueQuantity": {"value": 1.5, "unit": "g/L"}}, "request": {"method": "POST", "url": "Observation"}})
for kind, count, extra in [("Condition", 50, {"subject": {"reference": "urn:uuid:rich"}, "code": {"text": "problem"}}),
                           ("AllergyIntolerance", 20, {"patient": {"reference": "urn:uuid:rich"}, "code": {"text": "allergy"}}),
                           ("Immunization", 30, {"patient": {"reference": "urn:uuid:rich"}, "status": "completed",
                                                 "vaccineCode": {"text": "vaccine"}, "occurrenceDateTime": "2025-01-01"})]:
    for n in range(count):
        entries.append({"resource": dict({"resourceType": kind}, **extra), "request": {"method": "POST", "url": kind}})
transaction(entries)
_, body = call("GET", "/fhir/Patient?identifier=urn:passerelle:bench|RICH")
rich = json.loads(body)["entry"][0]["resource"]["id"]

def measure(paths):
    times = [call("GET", path)[0] for path in paths]
    times.sort()
    return statistics.median(times), times[int(len(times) * 0.99) - 1], len(times)

search = measure([f"/fhir/Patient?identifier=urn:passerelle:bench|P{random.randrange(patients):07d}" for _ in range(requests)])
summary = measure([f"/fhir/Patient/{rich}/$summary" for _ in range(max(50, requests // 10))])
_, body = call("GET", f"/fhir/Patient/{rich}/$summary")
entries_in_summary = len(json.loads(body)["entry"])
print(f"loaded {patients} patients in {load_seconds:.1f} s")
print(f"search by identifier over {patients} patients: p50 {search[0]:.2f} ms, p99 {search[1]:.2f} ms ({search[2]} requests)")
print(f"$summary of a patient with 500 resources ({entries_in_summary} entries): p50 {summary[0]:.2f} ms, p99 {summary[1]:.2f} ms ({summary[2]} requests)")
PY
