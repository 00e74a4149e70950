#!/usr/bin/env python3
"""What each kind of Bundle entry costs the test FHIR server.

The end-to-end benchmark (end_to_end.sh) delivers to ../shared/peers/
fhir_upstream.js, Medplum's FhirRouter over its in-memory MemoryRepository.
This probe starts that server afresh for each case, sends COUNT transaction
Bundles of one shape (one new patient each), and prints the mean time of the
first and last ten transactions. Then it times identifier searches on each
resource type after COUNT resources of that type are stored. It explains why
Passerelle delivers to this server far more slowly than the peer gateway
does: see docs/performance.md.

    python3 gateway/benches/upstream_search_cost.py [COUNT]

Needs the peers (bash ../shared/peers/setup.sh, or .ci/peers.sh) and node.
Standard library only.
"""

import json
import os
import subprocess
import sys
import time
import urllib.parse
import urllib.request
import uuid

ROOT = os.path.dirname(os.path.abspath(__file__))
SERVER = os.path.join(ROOT, "..", "..", "..", "shared", "peers", "fhir_upstream.js")
PEERS = os.environ.get("PEERS_ROOT", "/tmp/peers")
PORT = 18190
BASE = f"http://127.0.0.1:{PORT}/fhir"
INS_NIR = "urn:oid:1.2.250.1.213.1.4.8"
VISITS = "urn:oid:1.2.250.1.999.1"
FACILITY = "urn:oid:1.2.250.1.71.4.2.2"


def identifier_query(system, value, encoded):
    """As Passerelle writes it (percent-encoded) or as the bridge would."""
    if encoded:
        return "identifier=" + urllib.parse.quote(system, safe="") + "%7C" + urllib.parse.quote(value, safe="")
    return f"identifier={system}|{value}"


def entry(resource, request):
    return {"fullUrl": "urn:uuid:" + str(uuid.uuid4()), "resource": resource, "request": request}


def patient(number, method, encoded):
    nir = "1%014d" % number
    resource = {"resourceType": "Patient", "identifier": [{"system": INS_NIR, "value": nir}]}
    if method == "POST":
        return entry(resource, {"method": "POST", "url": "Patient"})
    return entry(resource, {"method": "PUT", "url": "Patient?" + identifier_query(INS_NIR, nir, encoded)})


def encounter(number, encoded):
    visit = "V%d" % number
    resource = {
        "resourceType": "Encounter",
        "status": "in-progress",
        "class": {"system": "http://terminology.hl7.org/CodeSystem/v3-ActCode", "code": "IMP"},
        "identifier": [{"system": VISITS, "value": visit}],
    }
    return entry(resource, {"method": "PUT", "url": "Encounter?" + identifier_query(VISITS, visit, encoded)})


def organization(encoded):
    resource = {"resourceType": "Organization", "identifier": [{"system": FACILITY, "value": "123456789"}]}
    return entry(resource, {
        "method": "POST",
        "url": "Organization",
        "ifNoneExist": identifier_query(FACILITY, "123456789", encoded),
    })


# Each case: a name and the entries of the Bundle for message number n.
CASES = [
    ("POST Patient (the bridge's write)", lambda n: [patient(n, "POST", False)]),
    ("conditional PUT Patient", lambda n: [patient(n, "PUT", True)]),
    ("conditional PUT Encounter", lambda n: [encounter(n, True)]),
    ("POST Organization ifNoneExist", lambda n: [organization(True)]),
    ("Passerelle's A04 (Patient, Encounter, Organization)",
     lambda n: [patient(n, "PUT", True), encounter(n, True), organization(True)]),
    ("the same, identifier queries not percent-encoded",
     lambda n: [patient(n, "PUT", False), encounter(n, False), organization(False)]),
]


def call(method, path, body=None):
    data = json.dumps(body).encode() if body is not None else None
    request = urllib.request.Request(BASE + path, data=data, method=method,
                                     headers={"content-type": "application/fhir+json"})
    started = time.perf_counter()
    with urllib.request.urlopen(request) as response:
        response.read()
    return (time.perf_counter() - started) * 1000


def with_server(run):
    env = dict(os.environ, NODE_PATH=os.path.join(PEERS, "node", "node_modules"))
    server = subprocess.Popen(["node", SERVER, "--port", str(PORT)], env=env,
                              stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    try:
        for _ in range(300):
            try:
                call("GET", "/metadata")
                break
            except OSError:
                time.sleep(0.1)
        else:
            sys.exit(f"the FHIR server did not start ({SERVER})")
        return run()
    finally:
        server.terminate()
        server.wait()


def mean(values):
    return sum(values) / len(values)


def transactions(bundle_of, count):
    times = [call("POST", "", {"resourceType": "Bundle", "type": "transaction", "entry": bundle_of(n)})
             for n in range(count)]
    return mean(times[:10]), mean(times[-10:])


def searches(resource_type, count):
    for n in range(count):
        resource = {"resourceType": resource_type, "identifier": [{"system": VISITS, "value": "V%d" % n}]}
        if resource_type == "Encounter":
            resource.update({"status": "in-progress", "class": {"code": "IMP"}})
        if resource_type == "Observation":
            resource.update({"status": "final", "code": {"text": "probe"}})
        call("POST", "/" + resource_type, resource)
    return mean([call("GET", f"/{resource_type}?" + identifier_query(VISITS, "V%d" % n, True))
                 for n in range(20)])


def main():
    count = int(sys.argv[1]) if len(sys.argv) > 1 else 150
    print(f"{count} transactions per case, each on a fresh server: mean ms of the first and last ten")
    for name, bundle_of in CASES:
        first, last = with_server(lambda: transactions(bundle_of, count))
        print(f"  {name}: {first:.1f} ms, {last:.1f} ms")
    print(f"identifier search with {count} resources of the type stored: mean ms of 20")
    for resource_type in ("Patient", "Encounter", "Observation"):
        print(f"  {resource_type}: {with_server(lambda: searches(resource_type, count)):.1f} ms")


if __name__ == "__main__":
    main()
