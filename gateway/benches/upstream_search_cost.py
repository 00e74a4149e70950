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


def resource(resource_type, system, value):
    """The smallest valid resource of the type, with one identifier."""
    out = {"resourceType": resource_type, "identifier": [{"system": system, "value": value}]}
    if resource_type == "Encounter":
        out.update({"status": "in-progress",
                    "class": {"system": "http://terminology.hl7.org/CodeSystem/v3-ActCode", "code": "IMP"}})
    elif resource_type == "Observation":
        out.update({"status": "final", "code": {"text": "probe"}})
    return out


def entry(resource_type, system, value, write, encoded=True):
    """A Bundle entry written as `write` says: "POST", "PUT" (conditional on
    the identifier) or "POST ifNoneExist"."""
    request = {"method": write.split()[0], "url": resource_type}
    if write == "PUT":
        request["url"] += "?" + identifier_query(system, value, encoded)
    elif write == "POST ifNoneExist":
        request["ifNoneExist"] = identifier_query(system, value, encoded)
    return {"fullUrl": "urn:uuid:" + str(uuid.uuid4()),
            "resource": resource(resource_type, system, value), "request": request}


def patient(number, write, encoded=True):
    return entry("Patient", INS_NIR, "1%014d" % number, write, encoded)


def encounter(number, encoded=True):
    return entry("Encounter", VISITS, "V%d" % number, "PUT", encoded)


def organization(encoded=True):
    return entry("Organization", FACILITY, "123456789", "POST ifNoneExist", encoded)


# Each case: a name and the entries of the Bundle for message number n.
CASES = [
    ("POST Patient (the bridge's write)", lambda n: [patient(n, "POST")]),
    ("conditional PUT Patient", lambda n: [patient(n, "PUT")]),
    ("conditional PUT Encounter", lambda n: [encounter(n)]),
    ("POST Organization ifNoneExist", lambda n: [organization()]),
    ("Passerelle's A04 (Patient, Encounter, Organization)",
     lambda n: [patient(n, "PUT"), encounter(n), organization()]),
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
        call("POST", "/" + resource_type, resource(resource_type, VISITS, "V%d" % n))
    return mean([call("GET", f"/{resource_type}?" + identifier_query(VISITS, "V%d" % n, True))
                 for n in range(min(count, 20))])


def main():
    try:
        count = int(sys.argv[1]) if len(sys.argv) > 1 else 150
    except ValueError:
        count = 0
    if count < 1:
        sys.exit(f"COUNT must be a positive whole number, not {sys.argv[1]!r}\n\n{__doc__}")
    print(f"{count} transactions per case, each on a fresh server: mean ms of the first and last ten")
    for name, bundle_of in CASES:
        first, last = with_server(lambda: transactions(bundle_of, count))
        print(f"  {name}: {first:.1f} ms, {last:.1f} ms")
    print(f"identifier search with {count} resources of the type stored: mean ms of 20")
    for resource_type in ("Patient", "Encounter", "Observation"):
        print(f"  {resource_type}: {with_server(lambda: searches(resource_type, count)):.1f} ms")


if __name__ == "__main__":
    main()
