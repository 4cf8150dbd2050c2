#!/usr/bin/env python3
"""Writes the contract artifacts from events.py: JSON Schemas, examples, asyncapi.yaml and the
Swift event types. `--check` fails (exit 1) if any committed artifact differs from what would be
written, which the contract tests run so that the four never drift apart."""
import hashlib
import json
import os
import sys
import uuid

HERE = os.path.dirname(os.path.abspath(__file__))
sys.path.insert(0, HERE)
import events as spec  # noqa: E402

SWIFT_OUT = os.path.join(HERE, "..", "Domain", "Events", "Events.swift")


def service_of(topic):
    return topic.split(".")[0]


def major_of(topic):
    return topic.rsplit(".", 1)[1]


def event_type(topic, name):
    return f"{service_of(topic)}.{name}.{major_of(topic)}"


def parse(type_text):
    optional = type_text.endswith("?")
    return type_text.rstrip("?"), optional


MONEY_SCHEMA = {
    "type": "object",
    "required": ["amount", "currency"],
    "additionalProperties": False,
    "properties": {
        "amount": {"type": "integer", "description": "smallest currency units (fen for CNY)"},
        "currency": {"type": "string", "pattern": "^[A-Z]{3}$"},
    },
}


def schema_for(type_text, defs):
    base, _ = parse(type_text)
    if base.startswith("id:"):
        return {"type": "string", "format": "uuid"}
    if base == "user":
        return {"type": "string", "minLength": 1}
    if base == "money":
        defs["Money"] = MONEY_SCHEMA
        return {"$ref": "#/$defs/Money"}
    if base == "datetime":
        return {"type": "string", "format": "date-time"}
    if base == "int":
        return {"type": "integer"}
    if base == "bool":
        return {"type": "boolean"}
    if base == "string":
        return {"type": "string"}
    if base.startswith("enum:"):
        return {"type": "string", "enum": spec.ENUMS[base[5:]]}
    if base.startswith("ref:"):
        name = base[4:]
        if name not in defs:
            defs[name] = None  # guards recursion
            defs[name] = object_schema(spec.OBJECTS[name], defs)
        return {"$ref": f"#/$defs/{name}"}
    if base.startswith("list:"):
        return {"type": "array", "items": schema_for(base[5:], defs)}
    raise ValueError(f"unknown field type {type_text}")


def object_schema(fields, defs):
    return {
        "type": "object",
        "required": [name for name, type_text, _ in fields if not parse(type_text)[1]],
        "additionalProperties": False,
        "properties": {name: schema_for(type_text, defs) for name, type_text, _ in fields},
    }


def example_for(fields):
    value = {}
    for name, type_text, example in fields:
        base, optional = parse(type_text)
        if example is None and base.startswith("ref:") and not optional:
            example = example_for(spec.OBJECTS[base[4:]])
        if example is None:
            continue
        value[name] = example
    return value


def envelope_schema(topic, name, fields):
    defs = {}
    data = object_schema(fields, defs)
    defs[name] = data
    return {
        "$schema": "https://json-schema.org/draft/2020-12/schema",
        "$id": f"https://fission.dev/contracts/{event_type(topic, name)}.schema.json",
        "title": event_type(topic, name),
        "description": f"CloudEvents 1.0 envelope of {name} on {topic}; subject and Kafka key are the {spec.TOPICS[topic]['key']}.",
        "type": "object",
        "required": ["specversion", "id", "source", "type", "time", "subject", "data"],
        "properties": {
            "specversion": {"const": "1.0"},
            "id": {"type": "string", "format": "uuid"},
            "source": {"type": "string", "const": f"/fission/{service_of(topic)}"},
            "type": {"const": event_type(topic, name)},
            "time": {"type": "string", "format": "date-time"},
            "subject": {"type": "string", "minLength": 1},
            "datacontenttype": {"const": "application/json"},
            "correlationid": {"type": "string"},
            "causationid": {"type": "string"},
            "traceparent": {"type": "string", "pattern": "^[0-9a-f]{2}-[0-9a-f]{32}-[0-9a-f]{16}-[0-9a-f]{2}$"},
            "data": {"$ref": f"#/$defs/{name}"},
        },
        "$defs": dict(sorted(defs.items())),
    }


def envelope_example(topic, name, fields):
    data = example_for(fields)
    key = spec.TOPICS[topic]["key"]
    digest = hashlib.sha256(event_type(topic, name).encode()).hexdigest()
    return {
        "specversion": "1.0",
        "id": str(uuid.UUID(digest[:32])),
        "source": f"/fission/{service_of(topic)}",
        "type": event_type(topic, name),
        "time": "2026-11-23T08:00:00.125Z",
        "subject": data[key],
        "datacontenttype": "application/json",
        "correlationid": "req-7f3a9c",
        "causationid": "0193a5ca-5555-7666-9777-88889999aaab",
        "traceparent": "00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01",
        "data": data,
    }


# MARK: Swift

def swift_type(type_text):
    base, optional = parse(type_text)
    if base.startswith("id:"):
        text = base[3:]
    elif base == "user":
        text = "UserID"
    elif base == "money":
        text = "Money"
    elif base == "datetime":
        text = "Date"
    elif base in ("int", "bool", "string"):
        text = {"int": "Int", "bool": "Bool", "string": "String"}[base]
    elif base.startswith("enum:") or base.startswith("ref:"):
        text = base.split(":", 1)[1]
    elif base.startswith("list:"):
        text = "[" + swift_type(base[5:]) + "]"
    else:
        raise ValueError(type_text)
    return text + ("?" if optional else "")


def swift_struct(name, fields, conformances, extra_lines):
    lines = [f"public struct {name}: {conformances} {{"]
    lines += extra_lines
    for field, type_text, _ in fields:
        lines.append(f"    public var {field}: {swift_type(type_text)}")
    params = ", ".join(
        f"{field}: {swift_type(type_text)}" + (" = nil" if parse(type_text)[1] else "") for field, type_text, _ in fields)
    lines.append("")
    lines.append(f"    public init({params}) {{")
    for field, _, _ in fields:
        lines.append(f"        self.{field} = {field}")
    lines.append("    }")
    lines.append("}")
    return lines


def swift_source():
    out = [
        "// Generated by Shared/Contracts/generate.py from Shared/Contracts/events.py. Do not edit:",
        "// change events.py and run `python3 Shared/Contracts/generate.py`.",
        "import Foundation",
        "",
    ]
    for name, cases in spec.ENUMS.items():
        if name in spec.HANDWRITTEN_ENUMS:
            continue
        out.append(f"public enum {name}: String, Sendable, Codable, Hashable, CaseIterable {{")
        out.append("    case " + ", ".join(cases))
        out.append("}")
        out.append("")
    for name, fields in spec.OBJECTS.items():
        if name in spec.HANDWRITTEN_OBJECTS:
            continue
        out += swift_struct(name, fields, "Sendable, Codable, Hashable", [])
        out.append("")
    catalog = []
    for topic, events in spec.EVENTS.items():
        key = spec.TOPICS[topic]["key"]
        topic_constant = topic_swift_name(topic)
        out.append(f"// MARK: {topic}")
        out.append("")
        for name, fields in events.items():
            key_type = dict((f, t) for f, t, _ in fields)[key]
            aggregate = f"{key}.description" if not key_type == "user" else f"{key}.rawValue"
            out += swift_struct(name, fields, "DomainEvent", [
                f"    public static let name = \"{name}\"",
                f"    public static let topic = Topics.{topic_constant}",
                f"    public var aggregateID: String {{ {aggregate} }}",
                "",
            ])
            out.append("")
            catalog.append(name)
    out.append("extension EventCatalog {")
    out.append("    /// Every event type of every topic.")
    out.append("    public static let all: [any DomainEvent.Type] = [")
    for name in catalog:
        out.append(f"        {name}.self,")
    out.append("    ]")
    out.append("}")
    return "\n".join(out) + "\n"


def topic_swift_name(topic):
    return {
        "campaigns.campaign.v1": "campaign", "campaigns.team.v1": "team", "campaigns.share.v1": "share",
        "assists.task.v1": "task", "orders.order.v1": "order", "levels.member.v1": "member",
        "notifications.delivery.v1": "delivery",
    }[topic]


# MARK: AsyncAPI

def channel_id(topic):
    parts = topic.replace("-", ".").split(".")
    return parts[0] + "".join(p[:1].upper() + p[1:] for p in parts[1:])


def asyncapi():
    lines = [
        "# Generated by Shared/Contracts/generate.py from events.py. Do not edit by hand.",
        "asyncapi: 3.0.0",
        "info:",
        "  title: Fission events",
        "  version: 1.0.0",
        "  description: |",
        "    Every topic of the platform. Values are CloudEvents 1.0 JSON envelopes (type and id also",
        "    as the Kafka headers ce_type and ce_id); the Kafka key is the aggregate id.",
        "defaultContentType: application/cloudevents+json",
        "channels:",
    ]
    for topic, meta in spec.TOPICS.items():
        cid = channel_id(topic)
        lines += [
            f"  {cid}:",
            f"    address: {topic}",
            f"    description: Key {meta['key']}; {meta['partitions']} partitions.",
            f"    x-partitions: {meta['partitions']}",
            f"    x-key: {meta['key']}",
            f"    x-producer: {meta['producer']}",
            f"    x-consumers: [{', '.join(meta['consumers'])}]",
            "    messages:",
        ]
        for name in spec.EVENTS[topic]:
            etype = event_type(topic, name)
            lines += [
                f"      {name}:",
                f"        name: {etype}",
                f"        payload:",
                f"          $ref: './schemas/{etype}.schema.json'",
                f"        examples:",
                f"          - name: {name}",
                f"            summary: see ./examples/{etype}.example.json",
            ]
    lines.append("operations:")
    for topic, meta in spec.TOPICS.items():
        cid = channel_id(topic)
        upper = cid[:1].upper() + cid[1:]
        lines += [
            f"  {meta['producer']}Sends{upper}:",
            "    action: send",
            f"    channel:",
            f"      $ref: '#/channels/{cid}'",
            f"    x-service: {meta['producer']}",
        ]
        for consumer in meta["consumers"]:
            lines += [
                f"  {consumer}Receives{upper}:",
                "    action: receive",
                f"    channel:",
                f"      $ref: '#/channels/{cid}'",
                f"    x-service: {consumer}",
            ]
    return "\n".join(lines) + "\n"


def artifacts():
    files = {}
    for topic, events in spec.EVENTS.items():
        for name, fields in events.items():
            etype = event_type(topic, name)
            files[os.path.join(HERE, "schemas", f"{etype}.schema.json")] = \
                json.dumps(envelope_schema(topic, name, fields), indent=2, ensure_ascii=False) + "\n"
            files[os.path.join(HERE, "examples", f"{etype}.example.json")] = \
                json.dumps(envelope_example(topic, name, fields), indent=2, ensure_ascii=False) + "\n"
    files[os.path.join(HERE, "asyncapi.yaml")] = asyncapi()
    files[os.path.normpath(SWIFT_OUT)] = swift_source()
    return files


def main():
    check = "--check" in sys.argv
    stale = []
    for path, text in artifacts().items():
        current = open(path, encoding="utf-8").read() if os.path.exists(path) else None
        if current == text:
            continue
        if check:
            stale.append(os.path.relpath(path, os.path.join(HERE, "..", "..")))
        else:
            os.makedirs(os.path.dirname(path), exist_ok=True)
            with open(path, "w", encoding="utf-8") as handle:
                handle.write(text)
    if stale:
        print("contract artifacts out of date (run python3 Shared/Contracts/generate.py): " + ", ".join(stale))
        sys.exit(1)


if __name__ == "__main__":
    main()
