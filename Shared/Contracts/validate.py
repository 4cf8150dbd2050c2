#!/usr/bin/env python3
"""Validates every example against its JSON Schema (Draft 2020-12, formats checked) and checks
that the generated artifacts match events.py. Run by the contract tests (`make test`)."""
import glob
import json
import os
import subprocess
import sys

import jsonschema

HERE = os.path.dirname(os.path.abspath(__file__))
failures = []
schemas = sorted(glob.glob(os.path.join(HERE, "schemas", "*.schema.json")))
examples = sorted(glob.glob(os.path.join(HERE, "examples", "*.json")))
if not schemas:
    failures.append("no schemas found")
checker = jsonschema.Draft202012Validator.FORMAT_CHECKER
for schema_path in schemas:
    schema = json.load(open(schema_path, encoding="utf-8"))
    jsonschema.Draft202012Validator.check_schema(schema)
    event_type = os.path.basename(schema_path)[: -len(".schema.json")]
    mine = [e for e in examples if os.path.basename(e).startswith(event_type + ".")]
    if not mine:
        failures.append(f"{event_type}: no example")
    validator = jsonschema.Draft202012Validator(schema, format_checker=checker)
    for example_path in mine:
        for error in validator.iter_errors(json.load(open(example_path, encoding="utf-8"))):
            failures.append(f"{os.path.basename(example_path)}: {error.json_path}: {error.message}")
for example_path in examples:
    event_type = os.path.basename(example_path).split(".example")[0]
    if not os.path.exists(os.path.join(HERE, "schemas", event_type + ".schema.json")):
        failures.append(f"{os.path.basename(example_path)}: no schema for {event_type}")
# Events a service really emitted (one envelope per file), checked against their type's schema.
if "--instances" in sys.argv:
    directory = sys.argv[sys.argv.index("--instances") + 1]
    for path in sorted(glob.glob(os.path.join(directory, "*.json"))):
        instance = json.load(open(path, encoding="utf-8"))
        schema_path = os.path.join(HERE, "schemas", f"{instance.get('type')}.schema.json")
        if not os.path.exists(schema_path):
            failures.append(f"{os.path.basename(path)}: no schema for type {instance.get('type')!r}")
            continue
        validator = jsonschema.Draft202012Validator(json.load(open(schema_path, encoding="utf-8")), format_checker=checker)
        for error in validator.iter_errors(instance):
            failures.append(f"{os.path.basename(path)} ({instance.get('type')}): {error.json_path}: {error.message}")

check = subprocess.run([sys.executable, os.path.join(HERE, "generate.py"), "--check"], capture_output=True, text=True)
if check.returncode != 0:
    failures.append(check.stdout.strip() or check.stderr.strip())
for failure in failures:
    print(failure)
print(f"{len(schemas)} schemas, {len(examples)} examples, {len(failures)} problems")
sys.exit(1 if failures else 0)
