"""A session of two real Python FHIR clients, fhirpy and fhirclient (SMART
on FHIR), against a running Passerelle: create, read, update, conditional
update, delete, search with paging and includes, history and $summary.

Usage: python_clients.py BASE_URL API_KEY OUT_DIR

Every resource and Bundle the gateway answers is written to OUT_DIR, for
the independent R4 validator. Any error, or an answer that is not what FHIR
says, exits non-zero with the reason.
"""

import json
import os
import sys

from fhirclient import server as fhirclient_server
from fhirclient.models.fhirsearch import FHIRSearch
from fhirclient.models.patient import Patient
from fhirpy import SyncFHIRClient

BASE, KEY, OUT = sys.argv[1], sys.argv[2], sys.argv[3]
SYSTEM = "urn:passerelle:clients"
kept = 0


def keep(name, resource):
    """Writes what the gateway answered, for the R4 validator."""
    global kept
    kept += 1
    with open(os.path.join(OUT, f"{kept:03d}-{name}.json"), "w") as out:
        # fhirpy hands back its own resource objects inside raw Bundles.
        json.dump(resource, out, default=lambda value: value.serialize())


def check(condition, message):
    if not condition:
        sys.exit(f"FAILED: {message}")


# fhirpy
client = SyncFHIRClient(BASE, authorization=f"Bearer {KEY}")
patient = client.resource(
    "Patient",
    identifier=[{"system": SYSTEM, "value": "FHIRPY-1"}],
    name=[{"family": "Fhirpy", "given": ["Ana"]}],
    gender="female",
)
patient.save()
check(patient.id, "fhirpy save() gave no id")
keep("fhirpy-created", patient.serialize())
patient["birthDate"] = "1980-02-03"
patient.save()
read = client.reference("Patient", patient.id).to_resource()
check(read["birthDate"] == "1980-02-03", f"read after update: {read.serialize()}")
check(read["meta"]["versionId"] == "2", f"versionId: {read['meta']}")
keep("fhirpy-read", read.serialize())

# Conditional update by identifier.
changed = client.resource(
    "Patient",
    identifier=[{"system": SYSTEM, "value": "FHIRPY-1"}],
    name=[{"family": "Fhirpy", "given": ["Ana", "Maria"]}],
    gender="female",
    birthDate="1980-02-03",
)
client.resources("Patient").search(identifier=f"{SYSTEM}|FHIRPY-1").update(changed)
again = client.reference("Patient", patient.id).to_resource()
check(again["name"][0]["given"] == ["Ana", "Maria"], f"conditional update: {again.serialize()}")

# Observations about the patient, then a search that pages and includes.
for n in range(5):
    client.resource(
        "Observation",
        status="final",
        code={"coding": [{"system": "http://loinc.org", "code": "2345-7"}], "text": "Glucose"},
        subject={"reference": f"Patient/{patient.id}"},
        valueQuantity={"value": 1.5 + n, "unit": "g/L"},
    ).save()
pages = client.resources("Observation").search(subject=f"Patient/{patient.id}").limit(2)
everything = pages.fetch_all()
check(len(everything) == 5, f"paging found {len(everything)} of 5 observations")
bundle = (
    client.resources("Observation")
    .search(subject=f"Patient/{patient.id}")
    .include("Observation", "subject")
    .fetch_raw()
)
keep("fhirpy-search-include", bundle)
included = [e for e in bundle["entry"] if e["resource"]["resourceType"] == "Patient"]
check(len(included) == 1, f"the included patient: {json.dumps(bundle, default=lambda v: v.serialize())}")

history = client.execute(f"Patient/{patient.id}/_history", method="get")
check(history["type"] == "history" and history["total"] == 3, f"history: {history}")
keep("fhirpy-history", history)
summary = client.execute(f"Patient/{patient.id}/$summary", method="get")
check(summary["type"] == "document", f"$summary: {summary}")
keep("fhirpy-summary", summary)

# fhirclient (SMART on FHIR's Python client)
server = fhirclient_server.FHIRServer(None, base_uri=BASE)
server.session.headers["Authorization"] = f"Bearer {KEY}"
created = Patient({
    "resourceType": "Patient",
    "identifier": [{"system": SYSTEM, "value": "FHIRCLIENT-1"}],
    "name": [{"family": "Fhirclient"}],
})
answer = created.create(server)
check(answer and answer.get("id"), f"fhirclient create(): {answer}")
keep("fhirclient-created", answer)
fetched = Patient.read(answer["id"], server)
check(fetched.name[0].family == "Fhirclient", "fhirclient read()")
fetched.gender = "male"
updated = fetched.update(server)
keep("fhirclient-updated", updated)
found = FHIRSearch(Patient, {"identifier": f"{SYSTEM}|FHIRCLIENT-1"}).perform_resources(server)
check(len(found) == 1 and found[0].gender == "male", "fhirclient search")
fetched.delete(server)
try:
    Patient.read(answer["id"], server)
    sys.exit("FAILED: a deleted patient was read")
except Exception as error:  # fhirclient raises on 410
    check("410" in str(error) or "Gone" in str(error), f"read after delete: {error}")

# fhirpy's delete, last.
client.reference("Patient", patient.id).delete()
print(f"python clients: every step passed, {kept} answers kept")
