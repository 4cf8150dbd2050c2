#!/usr/bin/env python3
"""`make fuzz`: schemathesis against every running service, once per role.

  python3 infra/fuzz/fuzz.py [--services campaigns,orders] [--roles anonymous,shopper] [--max-examples N]

Starts the local stack (`.build/debug/fission dev up` on free ports, logs in a temporary
directory), seeds some real data through the public APIs (published group-buy, bargain and
unlock campaigns, a draft, a share link, a paid order whose team opened, an unpaid order, tasks
with friends' helps, held helps, a completed unlock, a draw, a webhook subscription, inbox
messages), then runs `schemathesis run` on each service's Services/<Name>/openapi.yaml with no
token and with a shopper's, a merchant's and an operator's (the payment webhook takes no token:
it is fuzzed unsigned in the first run and signed in the others). Checks: not_a_server_error,
status_code_conformance, content_type_conformance, response_schema_conformance and problem_json
(infra/fuzz/hooks.py: every 4xx/5xx is application/problem+json with type, title and the right
status). Prints a table (operations, test cases, failures per check per service) and exits 1 on
any failure or error. The stack is stopped on exit, also on Ctrl-C.

Environment: FUZZ_MAX_EXAMPLES (test cases per operation and phase, default 25), FUZZ_SEED
(default 2026), FUZZ_MAX_TIME (seconds per schemathesis run, spent in full; default none),
FUZZ_RUN_TIMEOUT (a run still going after this many seconds is stopped and counted as an error,
default 300), FUZZ_KEEP_LOGS=1 (keep the temporary directory), FISSION_BINARY (default
.build/debug/fission).
"""

from __future__ import annotations

import argparse
import datetime as dt
import hashlib
import hmac
import json
import os
import re
import shutil
import signal
import subprocess
import sys
import tempfile
import time
import uuid
from pathlib import Path

import requests
import yaml

ROOT = Path(__file__).resolve().parent.parent.parent
HERE = Path(__file__).resolve().parent
SERVICES = ["campaigns", "assists", "orders", "levels", "notifications"]
ROLES = ["anonymous", "shopper", "merchant", "operator"]
CHECKS = ["not_a_server_error", "status_code_conformance", "content_type_conformance",
          "response_schema_conformance", "problem_json"]
# Schemathesis' failure types, by the check that raises them.
FAILURE_CHECK = {
    "ServerError": "not_a_server_error",
    "UndefinedStatusCode": "status_code_conformance",
    "UndefinedContentType": "content_type_conformance",
    "MalformedMediaType": "content_type_conformance",
    "MissingContentType": "content_type_conformance",
    "JsonSchemaError": "response_schema_conformance",
    "MalformedJson": "response_schema_conformance",
}


# A run that takes longer than this is stopped and counted as an error (a hanging request...).
RUN_TIMEOUT = int(os.environ.get("FUZZ_RUN_TIMEOUT", "300"))


def say(line: str = "") -> None:
    print(line, flush=True)


class Stack:
    """`fission dev up` as a child process; stopped with SIGTERM (it stops its own children)."""

    def __init__(self, binary: Path, directory: Path):
        self.binary = binary
        self.directory = directory
        self.process: subprocess.Popen | None = None
        self.urls: dict[str, str] = {}
        self.tokens: dict[str, str] = {}
        self.output = directory / "stack.out"

    def start(self, timeout: float = 240) -> None:
        log = open(self.output, "w")
        self.process = subprocess.Popen(
            [str(self.binary), "dev", "up", "--base-port", "0", "--log-directory", str(self.directory / "logs")],
            cwd=ROOT, stdout=log, stderr=subprocess.STDOUT, stdin=subprocess.DEVNULL)
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            text = self.output.read_text(errors="replace")
            if "running; Ctrl-C stops everything" in text:
                break
            if self.process.poll() is not None:
                raise RuntimeError(f"fission dev up exited with {self.process.returncode}:\n{text[-3000:]}")
            time.sleep(0.5)
        else:
            raise RuntimeError(f"the local stack was not ready within {timeout:.0f} s (see {self.output})")
        for match in re.finditer(r"(http://127\.0\.0\.1:\d+)\s+logs: \S*/(\w+)\.log", text):
            self.urls[match.group(2)] = match.group(1)
        for match in re.finditer(r"(\w+) token \(([^)]+)\): (\S+)", text):
            self.tokens[match.group(1)] = match.group(3)
        missing = [name for name in SERVICES if name not in self.urls] + [r for r in ROLES[1:] if r not in self.tokens]
        if missing:
            raise RuntimeError(f"could not read {', '.join(missing)} from the stack's output (see {self.output})")

    def stop(self) -> None:
        if self.process is None or self.process.poll() is not None:
            return
        self.process.send_signal(signal.SIGTERM)
        try:
            self.process.wait(timeout=60)
        except subprocess.TimeoutExpired:
            self.process.kill()
            self.process.wait()


def constant(name: str) -> str:
    """A constant of LocalStack in Tools/fission/DevStack.swift (the stack's JWT and webhook secrets)."""
    source = (ROOT / "Tools" / "fission" / "DevStack.swift").read_text()
    match = re.search(rf'static let {name} = "([^"]+)"', source)
    if not match:
        raise RuntimeError(f"LocalStack.{name} not found in Tools/fission/DevStack.swift")
    return match.group(1)


def mint(binary: Path, user: str, role: str) -> str:
    return subprocess.run(
        [str(binary), "token", "--secret", constant("jwtSecret"), "--user", user, "--role", role],
        check=True, capture_output=True, text=True).stdout.strip()


# MARK: Seeding

class Seeder:
    """Real data through the public APIs, so that fuzzed ids sometimes exist."""

    def __init__(self, stack: Stack, binary: Path):
        self.stack = stack
        self.http = requests.Session()
        self.merchant = stack.tokens["merchant"]
        self.shopper = stack.tokens["shopper"]
        self.binary = binary
        self.helper = mint(binary, "u-fuzz-helper", "shopper")
        self.operator = stack.tokens["operator"]
        self.friends: dict[int, str] = {}
        self.notes: list[str] = []
        self.last = ""
        self.ids: dict[str, list[str]] = {key: [] for key in
                                          ("campaign", "team", "code", "task", "order", "draw", "user", "webhook", "notification", "review")}

    def call(self, service: str, method: str, path: str, token: str | None = None, body=None, headers=None):
        all_headers = dict(headers or {})
        if token:
            all_headers["Authorization"] = f"Bearer {token}"
        response = self.http.request(method, self.stack.urls[service] + path, json=body, headers=all_headers, timeout=10)
        try:
            payload = response.json()
        except ValueError:
            payload = None
        self.last = f"{method} {path} answered {response.status_code} {response.text[:300]}"
        return response.status_code, payload

    def until(self, what: str, attempt, timeout: float = 30):
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            result = attempt()
            if result:
                return result
            time.sleep(0.25)
        self.notes.append(f"seeding: gave up waiting for {what} (last: {self.last})")
        return None

    def campaign(self, kind: str, rules: dict, publish: bool = True) -> str | None:
        now = dt.datetime.now(dt.timezone.utc)
        terms = {
            "kind": kind, "product": {"sku": f"FUZZ-{kind.upper()}", "title": f"Fuzz {kind}"},
            "listPrice": {"amount": 9900, "currency": "CNY"}, "stock": 1000, "perUserLimit": 5,
            "startsAt": (now - dt.timedelta(minutes=1)).isoformat().replace("+00:00", "Z"),
            "endsAt": (now + dt.timedelta(days=7)).isoformat().replace("+00:00", "Z"), kind: rules,
        }
        status, body = self.call("campaigns", "POST", "/campaigns", self.merchant, terms)
        if status != 201:
            self.notes.append(f"seeding: creating a {kind} campaign answered {status} {body}")
            return None
        campaign = body["id"]
        if publish:
            status, body = self.call("campaigns", "POST", f"/campaigns/{campaign}/publish", self.merchant)
            if status != 200:
                self.notes.append(f"seeding: publishing {campaign} answered {status} {body}")
        self.ids["campaign"].append(campaign)
        return campaign

    def pay(self, order: str) -> bool:
        def payable():
            _, body = self.call("orders", "GET", f"/orders/{order}", self.shopper)
            return body if isinstance(body, dict) and body.get("state") == "awaiting_payment" and body.get("paymentIntentId") else None
        placed = self.until(f"order {order} to await payment", payable)
        if not placed:
            return False
        notice = json.dumps({"providerRef": f"fuzz-{uuid.uuid4().hex[:12]}", "paymentIntentId": placed["paymentIntentId"],
                             "amount": placed["total"], "status": "succeeded"}).encode()
        timestamp = int(time.time())
        mac = hmac.new(constant("webhookSecret").encode(), f"{timestamp}.".encode() + notice, hashlib.sha256).hexdigest()
        response = self.http.post(self.stack.urls["orders"] + "/payments/webhook", data=notice, timeout=10, headers={
            "Content-Type": "application/json", "X-Fission-Signature": f"t={timestamp},v1={mac}"})
        if response.status_code != 200:
            self.notes.append(f"seeding: the payment webhook answered {response.status_code} {response.text[:200]}")
        return response.status_code == 200

    def order(self, campaign: str, purpose: str, **extra) -> str | None:
        key = str(uuid.uuid4())

        def place():
            status, body = self.call("orders", "POST", "/orders", self.shopper, {"campaignId": campaign, "purpose": purpose, **extra},
                                     headers={"Idempotency-Key": key})
            return body["orderId"] if status == 201 else None
        order = self.until(f"orders to take a {purpose} order", place)
        if order:
            self.ids["order"].append(order)
        return order

    def friend(self, number: int) -> str:
        if number not in self.friends:
            self.friends[number] = mint(self.binary, f"u-fuzz-friend-{number}", "shopper")
        return self.friends[number]

    def task(self, campaign: str, token: str) -> str | None:
        def start():
            status, body = self.call("assists", "POST", "/tasks", token, {"campaignId": campaign})
            return body["taskId"] if status == 201 else None
        task = self.until("assists to start a task", start)
        if task:
            self.ids["task"].append(task)
        return task

    def help(self, task: str, token: str, device: str | None = None):
        status, body = self.call("assists", "POST", f"/tasks/{task}/helps", token, headers={"X-Device-ID": device} if device else {})
        if status not in (200, 202):
            self.notes.append(f"seeding: a help answered {status} {body}")
        return body

    def run(self) -> None:
        money = lambda amount: {"amount": amount, "currency": "CNY"}  # noqa: E731
        group = self.campaign("groupBuy", {
            "teamSize": 3, "groupPrice": money(5900), "leaderPrice": money(4900), "teamTimeLimitSeconds": 86400,
            "virtualFillPercent": 0, "latePaymentPolicy": "openNewTeam"})
        bargain = self.campaign("bargain", {
            "floorPrice": money(100), "maxHelpers": 5, "firstCutMin": money(500), "firstCutMax": money(1500),
            "newUserCutPercent": 150, "taskTimeLimitSeconds": 86400, "payWindowSeconds": 1800, "allowBuyAboveFloor": True,
            "helperDailyLimit": 0, "deviceLimit": 0, "networkLimit": 0})
        unlock = self.campaign("unlock", {"helpersRequired": 2, "reward": "coupon", "couponAmount": money(1000), "taskTimeLimitSeconds": 86400})
        self.campaign("unlock", {"helpersRequired": 2, "reward": "freeItem", "taskTimeLimitSeconds": 86400}, publish=False)
        self.ids["user"] += ["u-shopper", "u-fuzz-helper", "m-merchant"]

        if group:
            status, share = self.call("campaigns", "POST", "/shares", self.shopper,
                                      {"campaignId": group, "target": {"kind": "campaign", "id": group}, "channel": "wechat"})
            if status == 201:
                self.ids["code"].append(share["code"])
                self.call("campaigns", "GET", f"/s/{share['code']}", self.helper)
            else:
                self.notes.append(f"seeding: creating a share answered {status} {share}")
            leader = self.order(group, "openTeam")
            if leader and self.pay(leader):
                def team():
                    _, teams = self.call("campaigns", "GET", f"/campaigns/{group}/teams")
                    return teams[0]["teamId"] if isinstance(teams, list) and teams else None
                opened = self.until("the paid team to open", team)
                if opened:
                    self.ids["team"].append(opened)
            self.order(group, "openTeam")  # left unpaid: cancellable
        if bargain:
            task = self.task(bargain, self.shopper)  # the fuzzing shopper's own
            if task:
                self.help(task, self.helper, device="fuzz-device")
        # A friend's bargain with a long way to go: the fuzzing shopper may help it. Seven helps
        # from one device within a minute: the ones past the device burst are held for review.
        far = self.campaign("bargain", {
            "floorPrice": money(100), "maxHelpers": 40, "firstCutMin": money(100), "firstCutMax": money(200),
            "newUserCutPercent": 100, "taskTimeLimitSeconds": 86400, "payWindowSeconds": 1800, "allowBuyAboveFloor": False,
            "helperDailyLimit": 0, "deviceLimit": 0, "networkLimit": 0})
        if far:
            task = self.task(far, self.helper)
            if task:
                for number in range(7):
                    self.help(task, self.friend(number), device="fuzz-burst")
                status, queue = self.call("assists", "GET", "/reviews", self.operator)
                if status == 200 and isinstance(queue, list):
                    self.ids["review"] += [item["helpId"] for item in queue if item.get("helpId")]
        # A friend's unlock that two helps complete: its seed and cuts are revealed.
        if unlock:
            task = self.task(unlock, self.helper)
            if task:
                for number in range(2):
                    self.help(task, self.friend(number))

        closes = (dt.datetime.now(dt.timezone.utc) + dt.timedelta(days=1)).isoformat().replace("+00:00", "Z")
        status, draw = self.call("levels", "POST", "/draws", self.merchant,
                                 {"prize": "Fuzz teapot", "prizeCount": 1, "closesAt": closes, **({"campaignId": group} if group else {})})
        if status == 201:
            self.ids["draw"].append(draw["drawId"])
            self.call("levels", "POST", f"/draws/{draw['drawId']}/entries", self.shopper)
        else:
            self.notes.append(f"seeding: creating a draw answered {status} {draw}")

        status, subscription = self.call("notifications", "POST", "/webhooks", self.merchant,
                                         {"url": "http://127.0.0.1:9/fuzz-hook", "categories": ["orderPaid"]})
        if status == 201 and isinstance(subscription, dict) and subscription.get("id"):
            self.ids["webhook"].append(subscription["id"])
        else:
            self.notes.append(f"seeding: subscribing a webhook answered {status} {subscription}")

        def inbox():
            _, page = self.call("notifications", "GET", "/inbox", self.shopper)
            items = page.get("items") if isinstance(page, dict) else None
            return [item["id"] for item in items if item.get("id")] if items else None
        self.ids["notification"] += self.until("the shopper's first notification", inbox, timeout=20) or []

    def seeds_for(self, document: dict) -> dict:
        """{"paths": {path template: {parameter: ids}}, "body": {property: ids}} for a document."""
        def kind(path: str, name: str) -> str | None:
            if name == "code":
                return "code"
            if name == "user":
                return "user"
            first = path.strip("/").split("/")[0]
            return {"campaigns": "campaign", "teams": "team", "tasks": "task", "orders": "order", "draws": "draw",
                    "inbox": "notification", "webhooks": "webhook", "reviews": "review"}.get(first)
        paths: dict[str, dict[str, list[str]]] = {}
        for path in document.get("paths", {}):
            for name in re.findall(r"\{(\w+)\}", path):
                values = self.ids.get(kind(path, name) or "", [])
                if values:
                    paths.setdefault(path, {})[name] = values
        body = {"campaignId": self.ids["campaign"], "teamId": self.ids["team"], "taskId": self.ids["task"]}
        return {"paths": paths, "body": {name: values for name, values in body.items() if values}}


# MARK: Running schemathesis

def schemathesis_run(service: str, role: str, url: str, token: str | None, seeds: Path, work: Path,
                     max_examples: int, seed: int, max_time: int) -> dict:
    document = ROOT / "Services" / service.capitalize() / "openapi.yaml"
    report = work / f"{service}-{role}.json"
    output = work / f"{service}-{role}.out"
    command = [
        sys.executable, "-m", "schemathesis.cli", "--config-file", str(HERE / "schemathesis.toml"), "--no-color",
        "run", str(document), "--url", url,
        "--checks", ",".join(CHECKS), "--max-examples", str(max_examples), "--seed", str(seed),
        "--request-timeout", "10", "--workers", "1",
        "--report", "json", "--report-json-path", str(report), "--warnings", "off",
    ]
    if max_time:
        command += ["--max-time", str(max_time)]  # a budget that fuzzing and stateful testing then spend in full
    if token:
        command += ["--header", f"Authorization: Bearer {token}"]
    # PYTHONDONTWRITEBYTECODE: no __pycache__ for hooks.py in the work tree.
    environment = dict(os.environ, SCHEMATHESIS_HOOKS="hooks", FISSION_FUZZ_SEEDS=str(seeds), PYTHONDONTWRITEBYTECODE="1",
                       PYTHONPATH=os.pathsep.join(filter(None, [str(HERE), os.environ.get("PYTHONPATH")])))
    if token:
        # The payment webhook takes no token: with one, its requests are signed instead (hooks.py).
        environment["FISSION_FUZZ_WEBHOOK_SECRET"] = constant("webhookSecret")
    started = time.monotonic()
    with open(output, "w") as out:
        try:
            returncode = subprocess.run(command, cwd=work, env=environment, stdout=out, stderr=subprocess.STDOUT,
                                        timeout=RUN_TIMEOUT).returncode
        except subprocess.TimeoutExpired:
            out.write(f"\nfuzz: schemathesis did not finish within {RUN_TIMEOUT} s\n")
            returncode = -1
    result = {"service": service, "role": role, "exit": returncode, "seconds": time.monotonic() - started,
              "output": output, "operations": 0, "cases": 0, "failures": {check: 0 for check in CHECKS}, "errors": 0,
              "failing": {}}
    if returncode == -1 or not report.exists():
        result["errors"] = 1
        return result
    data = json.loads(report.read_text())
    result["operations"] = (data.get("operations") or {}).get("tested", 0)
    result["cases"] = (data.get("test_cases") or {}).get("generated", 0)
    result["errors"] = len(data.get("errors") or [])
    for failure in data.get("failures") or []:
        check = FAILURE_CHECK.get(failure.get("type"), "problem_json" if failure.get("type") in ("CustomFailure", "Failure")
                                  else failure.get("type"))
        if check not in result["failures"]:
            check = "problem_json" if "problem" in json.dumps(failure) else check
        result["failures"][check] = result["failures"].get(check, 0) + int(failure.get("count", 1))
        for operation in failure.get("operations") or []:
            result["failing"].setdefault(operation, set()).add(check)
    if returncode != 0 and not any(result["failures"].values()) and not result["errors"]:
        result["errors"] = 1  # schemathesis failed without telling why in its report
    return result


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--services", default=",".join(SERVICES))
    parser.add_argument("--roles", default=",".join(ROLES))
    parser.add_argument("--max-examples", type=int, default=int(os.environ.get("FUZZ_MAX_EXAMPLES", "25")))
    parser.add_argument("--seed", type=int, default=int(os.environ.get("FUZZ_SEED", "2026")))
    parser.add_argument("--max-time", type=int, default=int(os.environ.get("FUZZ_MAX_TIME", "0")),
                        help="seconds per schemathesis run, spent in full (default: none, --max-examples bounds it)")
    parser.add_argument("--binary", default=os.environ.get("FISSION_BINARY", str(ROOT / ".build" / "debug" / "fission")))
    arguments = parser.parse_args()
    services = [name for name in arguments.services.split(",") if name]
    roles = [name for name in arguments.roles.split(",") if name]
    unknown = [name for name in services if name not in SERVICES] + [name for name in roles if name not in ROLES]
    if unknown:
        parser.error(f"unknown: {', '.join(unknown)}")
    binary = Path(arguments.binary)
    if not os.access(binary, os.X_OK):
        say(f"fuzz: {binary} is not built (make fuzz builds it)")
        return 2

    work = Path(tempfile.mkdtemp(prefix="fission-fuzz-"))
    stack = Stack(binary, work)
    keep = os.environ.get("FUZZ_KEEP_LOGS") == "1"
    failed = True

    def interrupted(number, _frame):
        raise KeyboardInterrupt(f"signal {number}")
    signal.signal(signal.SIGTERM, interrupted)
    began = time.monotonic()
    try:
        say(f"fuzz: starting the local stack (logs in {work})")
        stack.start()
        say("fuzz: seeding campaigns, a share, a team, orders, tasks, helps, held helps, a draw, a webhook subscription")
        seeder = Seeder(stack, binary)
        seeder.run()
        for note in seeder.notes:
            say(f"fuzz: {note}")
        say("fuzz: seeded " + ", ".join(f"{len(values)} {name}" for name, values in seeder.ids.items() if values))

        results = []
        # Campaigns last: its merchant run pauses and ends the seeded campaigns, which the other
        # services' runs still need on sale.
        for service in sorted(services, key=lambda name: name == "campaigns"):
            document = yaml.safe_load((ROOT / "Services" / service.capitalize() / "openapi.yaml").read_text())
            seeds = work / f"{service}-seeds.json"
            seeds.write_text(json.dumps(seeder.seeds_for(document), indent=1))
            for role in roles:
                token = None if role == "anonymous" else stack.tokens[role]
                result = schemathesis_run(service, role, stack.urls[service], token, seeds, work,
                                          arguments.max_examples, arguments.seed, arguments.max_time)
                results.append(result)
                bad = sum(result["failures"].values()) + result["errors"]
                say(f"fuzz: {service:13} {role:9} {result['operations']:3} operations {result['cases']:5} test cases "
                    f"{bad:3} failures/errors  {result['seconds']:5.1f} s")
                if bad:
                    for operation, checks in sorted(result["failing"].items()):
                        say(f"        {operation}: {', '.join(sorted(checks))}")
                    say(f"        details: {result['output']}")
        failed = report(results, services, time.monotonic() - began)
        if failed:
            keep = True
    except KeyboardInterrupt:
        say("fuzz: interrupted")
        keep = True
    except Exception as error:  # noqa: BLE001 — a broken run is a failed run, with its reason
        say(f"fuzz: {error}")
        keep = True
    finally:
        stack.stop()
        if keep:
            say(f"fuzz: logs and schemathesis output kept in {work}")
        else:
            shutil.rmtree(work, ignore_errors=True)
    return 1 if failed else 0


def report(results: list[dict], services: list[str], seconds: float) -> bool:
    short = {"not_a_server_error": "5xx", "status_code_conformance": "status", "content_type_conformance": "type",
             "response_schema_conformance": "schema", "problem_json": "problem"}
    extra = sorted({check for result in results for check in result["failures"] if check not in CHECKS})
    columns = CHECKS + extra
    say("")
    roles = [role for role in ROLES if any(r["role"] == role for r in results)]
    say(f"fuzz: schemathesis against {len(services)} services x {len(roles)} roles ({', '.join(roles)}), {seconds:.0f} s")
    header = f"{'service':14}{'operations':>11}{'test cases':>11}" + "".join(f"{short.get(c, c):>9}" for c in columns) + f"{'errors':>8}"
    say(header)
    say("-" * len(header))
    totals = {"operations": 0, "cases": 0, "errors": 0, **{c: 0 for c in columns}}
    for service in services:
        rows = [r for r in results if r["service"] == service]
        operations = max((r["operations"] for r in rows), default=0)
        cases = sum(r["cases"] for r in rows)
        errors = sum(r["errors"] for r in rows)
        counts = {c: sum(r["failures"].get(c, 0) for r in rows) for c in columns}
        totals["operations"] += operations
        totals["cases"] += cases
        totals["errors"] += errors
        for c in columns:
            totals[c] += counts[c]
        say(f"{service:14}{operations:>11}{cases:>11}" + "".join(f"{counts[c]:>9}" for c in columns) + f"{errors:>8}")
    say("-" * len(header))
    say(f"{'total':14}{totals['operations']:>11}{totals['cases']:>11}" + "".join(f"{totals[c]:>9}" for c in columns)
        + f"{totals['errors']:>8}")
    say("(operations per service; test cases and failures summed over the roles; failures are schemathesis' unique "
        "failures: 5xx = not_a_server_error, status = status_code_conformance, type = content_type_conformance, "
        "schema = response_schema_conformance, problem = problem_json)")
    bad = sum(totals[c] for c in columns) + totals["errors"]
    say(f"fuzz: {'FAILED' if bad else 'ok'}: {sum(totals[c] for c in columns)} failures, {totals['errors']} errors")
    return bad > 0


if __name__ == "__main__":
    sys.exit(main())
