#!/usr/bin/env python3
"""Prints an HL7 v2 message for trying the DMP connector (docs/dmp.md): the
ANS's example MDM^T02 of the profile "transmission of CDA documents over
HL7 v2", with a CI-SIS example document in its OBX-5 and the patient's
identity marked qualified (PID-32 = QUAL), segments separated by CR.

    python3 docs/examples/dmp_sample.py [--message FILE] [--document FILE]
        [--status QUAL] [--control-id ID] [--document-id OID]

The defaults read ../shared/corpus next to the repository. Standard library
only.
"""

import argparse
import base64
import os
import sys
import time

HERE = os.path.dirname(os.path.abspath(__file__))
CORPUS = os.path.join(HERE, "..", "..", "..", "shared", "corpus")
MESSAGE = os.path.join(
    CORPUS,
    "ansforge-hl7v2-exemples/Vague 2/Trans_Doc-CDA-HL7V2/TRANSMISSION_DOCS_CDA_EN_HL7V2_V2.1",
    "MDM/Transmission initiale MDM/message_MDM_CR_Radio_INIT_N1.er7",
)
DOCUMENT = os.path.join(CORPUS, "ansforge-testcontenucda-3-0/ExemplesCDA/DOC_NON_STRUCTURE_CDA-R2-N1.xml")


def main():
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--message", default=MESSAGE)
    parser.add_argument("--document", default=DOCUMENT)
    parser.add_argument("--status", default="QUAL", help="PID-32: PROV, RECUP, VALI or QUAL")
    parser.add_argument("--control-id", default="DMP%d" % int(time.time()))
    parser.add_argument("--document-id", help="a new root for the CDA's document id")
    args = parser.parse_args()
    with open(args.message, encoding="utf-8") as f:
        message = f.read()
    with open(args.document, "rb") as f:
        document = f.read()
    if args.document_id:
        text = document.decode("utf-8")
        start = text.index("<id root=\"", text.index("<ClinicalDocument"))
        end = text.index("/>", start)
        document = (text[:start] + '<id root="%s"' % args.document_id + text[end:]).encode("utf-8")
    encoded = base64.b64encode(document).decode("ascii")
    segments = []
    document_done = False
    for segment in message.replace("\r\n", "\n").replace("\r", "\n").split("\n"):
        if not segment:
            continue
        fields = segment.split("|")
        if fields[0] == "MSH":
            fields[9] = args.control_id
        elif fields[0] == "PID":
            fields += [""] * (33 - len(fields))
            fields[32] = args.status
        elif fields[0] == "OBX" and not document_done and fields[2] == "ED":
            parts = fields[5].split("^")
            parts[4] = encoded
            fields[5] = "^".join(parts)
            document_done = True
        segments.append("|".join(fields))
    sys.stdout.write("\r".join(segments) + "\r")


if __name__ == "__main__":
    main()
