#!/usr/bin/env python3
"""Validates FHIR R4 AuditEvent resources, one JSON resource a line on stdin, with the
`fhir.resources` models of FHIR 4.0.1 (pydantic: required elements, cardinalities, primitive
formats, code values). Prints `ok <count>` or the first invalid resource and why."""

import json
import sys

import fhir.resources
from fhir.resources.auditevent import AuditEvent

assert fhir.resources.__fhir_version__ == "4.0.1", f"FHIR {fhir.resources.__fhir_version__}, not R4 (4.0.1)"
count = 0
for number, line in enumerate(sys.stdin, 1):
    if not line.strip():
        continue
    resource = json.loads(line)
    try:
        AuditEvent.parse_obj(resource)
    except Exception as error:  # the validator's report is the message
        print(f"line {number} is not a valid FHIR R4 AuditEvent:\n{error}\n{json.dumps(resource, indent=1)}")
        sys.exit(1)
    count += 1
print(f"ok {count}")
