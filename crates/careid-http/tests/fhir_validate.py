#!/usr/bin/env python3
"""Validates FHIR R4 AuditEvent resources, one JSON resource a line on stdin (or searchset
Bundles of them), with the `fhir.resources` models of FHIR 4.0.1 (pydantic: required elements,
cardinalities, primitive formats, code values). Prints `ok <count of AuditEvents>` or the first
invalid resource and why."""

import json
import sys

import fhir.resources
from fhir.resources.auditevent import AuditEvent
from fhir.resources.bundle import Bundle

assert fhir.resources.__fhir_version__ == "4.0.1", f"FHIR {fhir.resources.__fhir_version__}, not R4 (4.0.1)"
count = 0
for number, line in enumerate(sys.stdin, 1):
    if not line.strip():
        continue
    resource = json.loads(line)
    if resource.get("resourceType") == "Bundle":
        try:
            Bundle.parse_obj(resource)
        except Exception as error:  # the validator's report is the message
            print(f"line {number} is not a valid FHIR R4 Bundle:\n{error}")
            sys.exit(1)
        if resource.get("type") != "searchset":
            print(f"line {number} is a {resource.get('type')} Bundle, not a searchset")
            sys.exit(1)
        events = [entry["resource"] for entry in resource.get("entry", [])]
    else:
        events = [resource]
    for event in events:
        try:
            AuditEvent.parse_obj(event)
        except Exception as error:  # the validator's report is the message
            print(f"line {number} holds an invalid FHIR R4 AuditEvent:\n{error}\n{json.dumps(event, indent=1)}")
            sys.exit(1)
        count += 1
print(f"ok {count}")
