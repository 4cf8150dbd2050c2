"""Schemathesis hooks for `make fuzz` (loaded through SCHEMATHESIS_HOOKS by infra/fuzz/fuzz.py).

- `problem_json`: every 4xx/5xx answer is an RFC 9457 problem: `application/problem+json`, a JSON
  object with a string `type` and `title`, and `status` equal to the response's status code.
- Path parameters: besides the generated values, sometimes a real id seeded before the run
  (a published campaign, an open team, a task, an order, a draw...) so that the fuzzing gets
  past 404; likewise for the ids in JSON bodies (`campaignId`, `teamId`, `taskId`). The seeds
  are a JSON file named by FISSION_FUZZ_SEEDS:
  {"paths": {"<path template>": {"<parameter>": ["value", ...]}}, "body": {"<property>": ["value", ...]}}.
- The payment webhook (`[signed]`): when FISSION_FUZZ_WEBHOOK_SECRET is set, every request to it
  is signed like the payment provider signs (`X-Fission-Signature: t=<now>,v1=<HMAC-SHA256 of
  "<t>.<body>">`), so its body handling is fuzzed too; without it only the refusal is.
"""

from __future__ import annotations

import hashlib
import hmac
import json
import os
import time

import schemathesis
from hypothesis import strategies as st

_SEEDS: dict[str, dict] = {}
if os.environ.get("FISSION_FUZZ_SEEDS"):
    try:
        with open(os.environ["FISSION_FUZZ_SEEDS"], encoding="utf-8") as handle:
            _SEEDS = json.load(handle)
    except (OSError, ValueError):
        _SEEDS = {}


@schemathesis.check
def problem_json(ctx, response, case):
    """Every error is application/problem+json with type, title and the response's status."""
    if response.status_code < 400:
        return None
    media = (response.headers.get("content-type") or [""])[0]  # lowercase names, list values
    if media.split(";")[0].strip().lower() != "application/problem+json":
        raise AssertionError(f"{response.status_code} answered with Content-Type {media or '(none)'}, not application/problem+json")
    try:
        body = json.loads(response.content or b"")
    except ValueError:
        raise AssertionError(f"{response.status_code} problem body is not JSON") from None
    if not isinstance(body, dict):
        raise AssertionError(f"{response.status_code} problem body is not a JSON object")
    missing = [name for name in ("type", "title") if not isinstance(body.get(name), str) or not body.get(name)]
    if missing:
        raise AssertionError(f"{response.status_code} problem lacks {', '.join(missing)}")
    if body.get("status") != response.status_code:
        raise AssertionError(f"problem status {body.get('status')!r} differs from the response's {response.status_code}")
    return None


@schemathesis.hook
def flatmap_path_parameters(context, path_parameters):
    operation = context.operation
    seeds = _SEEDS.get("paths", {}).get(operation.path if operation is not None else "", {})
    if not isinstance(path_parameters, dict):  # negative cases may drop the parameters altogether
        return st.just(path_parameters)
    choices = {name: values for name, values in seeds.items() if name in path_parameters and values}
    if not choices:
        return st.just(path_parameters)

    def with_seed(values):
        return {**path_parameters, **values}

    # Half the time the real ids, half the time what was generated.
    real = st.fixed_dictionaries({name: st.sampled_from(values) for name, values in choices.items()}).map(with_seed)
    return st.one_of(st.just(path_parameters), real)


@schemathesis.hook
def flatmap_body(context, body):
    if not isinstance(body, dict):
        return st.just(body)
    choices = {name: values for name, values in _SEEDS.get("body", {}).items() if name in body and values}
    if not choices:
        return st.just(body)
    real = st.fixed_dictionaries({name: st.sampled_from(values) for name, values in choices.items()}).map(lambda values: {**body, **values})
    return st.one_of(st.just(body), real)


@schemathesis.hook
def before_call(context, case, kwargs):
    secret = os.environ.get("FISSION_FUZZ_WEBHOOK_SECRET")
    if not secret or case.operation.path != "/payments/webhook":
        return
    # The bytes requests will send for the body: `json.dumps(body, allow_nan=False)` for JSON
    # (schemathesis hands JSON bodies to requests as `json=`), raw bytes as they are.
    if isinstance(case.body, (bytes, bytearray)):
        body = bytes(case.body)
    elif isinstance(case.body, (dict, list, str, int, float, bool)) or case.body is None:
        try:
            body = b"null" if case.body is None else json.dumps(case.body, allow_nan=False).encode()
        except ValueError:
            return
    else:
        body = b""  # no body
    timestamp = int(time.time())
    mac = hmac.new(secret.encode(), f"{timestamp}.".encode() + body, hashlib.sha256).hexdigest()
    if case.headers is None:
        case.headers = {}
    for name in [name for name in case.headers if name.lower() == "x-fission-signature"]:
        del case.headers[name]
    case.headers["X-Fission-Signature"] = f"t={timestamp},v1={mac}"
