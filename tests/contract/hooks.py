"""Hooks of the API contract run: failures that are not the API's fault, each named.

Loaded by scripts/api-contract through SCHEMATHESIS_HOOKS. A failure is dropped only when
the request itself shows that the check's premise does not hold; every other failure stands.
"""

import json
import os

import jsonschema_rs
import schemathesis

PROBLEM = "urn:chronicle:problem:"


def _problem(response) -> dict:
    try:
        body = json.loads(response.content)
        return body if isinstance(body, dict) else {}
    except (ValueError, AttributeError):
        return {}


def _problem_type(response) -> str:
    return _problem(response).get("type", "")


def _breaks_its_schema(case) -> str | None:
    """The header the case sends that breaks the schema the document declares for it.

    Schemathesis' coverage phase narrows header values to [A-Za-z0-9] and can then draw a
    value without the parameter's pattern (X-Consistency-Token, whose grammar has dots),
    yet still counts the request as schema-valid.
    """
    sent = {k.lower(): v for k, v in (case.headers or {}).items()}
    for parameter in case.operation.headers:
        value = sent.get(parameter.name.lower())
        schema = parameter.definition.get("schema")
        if value is None or schema is None:
            continue
        if not jsonschema_rs.validator_for(schema).is_valid(value):
            return parameter.name
    return None


def _drop(reason: str) -> bool:
    """Drops a failure, noting why for the run's summary."""
    path = os.environ.get("CONTRACT_DROPPED")
    if path:
        with open(path, "a") as f:
            f.write(reason + "\n")
    return False


def _connects_an_org(case) -> bool:
    return case.operation.method.upper() == "PUT" and case.operation.path == "/salesforce/connection"


def _connects_sftp(case) -> bool:
    return case.operation.method.upper() == "PUT" and case.operation.path == "/integrations/sftp"


@schemathesis.hook
def before_call(context, case, kwargs) -> None:
    # Connecting an org checks its credentials with a token request to its login_url: the
    # run must not reach out to whatever host the generator draws. Every such request goes
    # to a closed loopback port instead, so that the check fails there (422, login_url).
    if _connects_an_org(case) and isinstance(case.body, dict) and "login_url" in case.body:
        case.body["login_url"] = os.environ["CONTRACT_CLOSED_URL"]
    # Likewise an SFTP connection is checked by logging in to its host: always the closed
    # loopback port, so that the check fails there (422, host).
    if _connects_sftp(case) and isinstance(case.body, dict) and "host" in case.body:
        case.body["host"] = "127.0.0.1"
        case.body["port"] = int(os.environ["CONTRACT_CLOSED_URL"].rsplit(":", 1)[1])


@schemathesis.hook
def filter_failure(context, failure, case, response) -> bool:
    # Sign-up creates a new tenant, readable only with that tenant's own tokens: to the tenant
    # this run signs in as it is another tenant's, and reading it is 404 by design (existence
    # never leaks). (`--checks all` outranks a per-operation `enabled = false`, hence here.)
    if failure.code == "ST302":
        if getattr(failure, "created_with", "") == "POST /tenants":
            return _drop("another-tenant's-new-tenant")
        return True
    if failure.code != "ST202":
        return True
    kind = _problem_type(response)
    # The generator sent a key it had already sent with another request. Refusing that is
    # the key's purpose: 422, as draft-ietf-httpapi-idempotency-key-header §2.7 says.
    if kind == PROBLEM + "idempotency-key-reused":
        return _drop("idempotency-key-reused")
    # An order's lines, and a stock change, are judged against the catalogue's state: a
    # product that does not exist (the generator's ids name none), was deleted, has too
    # little stock, or a product on two lines. No schema can say which products exist;
    # the answer is 422 naming the field, as issue 12 asks.
    if kind == PROBLEM + "validation-failed" and _problem(response).get("field") in ("items", "delta"):
        return _drop(f"{_problem(response).get('field')}-judged-against-the-catalogue")
    # A posting is judged against the ledger's state: an account that does not exist (the
    # generator's ids name none), is frozen or closed, holds another currency, would go
    # below its overdraft, or a transfer's two accounts being one. No schema can say that;
    # the answer is 422 with the reason, as issue 17 asks.
    if kind == PROBLEM + "validation-failed" and case.operation.path == "/transactions" and _problem(response).get("field") in ("account_id", "from", "to", "amount"):
        return _drop("posting-judged-against-the-ledger")
    # The audit timeline's cursor is the event store's own feed cursor (a position on
    # SQLite, one event id per shard on DynamoDB), base64url-wrapped: the schema gives its
    # alphabet, but only the store can tell a cursor it issued. One it did not is 422.
    if kind == PROBLEM + "validation-failed" and _problem(response).get("field") == "cursor" and case.operation.path == "/audit/events":
        return _drop("cursor-not-issued-by-the-feed")
    # A valid connection is refused because no org answers at the closed port (before_call).
    if _connects_an_org(case) and kind == PROBLEM + "validation-failed" and _problem(response).get("field") == "login_url":
        return _drop("no-org-behind-the-closed-port")
    if _connects_sftp(case) and kind == PROBLEM + "validation-failed" and _problem(response).get("field") == "host":
        return _drop("no-sftp-server-behind-the-closed-port")
    # The body must carry a password or a private_key, one of them (the schema cannot say
    # "exactly one" of two optional fields; the description does).
    if _connects_sftp(case) and kind == PROBLEM + "validation-failed" and _problem(response).get("field") == "password" and isinstance(case.body, dict) and ((case.body.get("password") is None) == (case.body.get("private_key") is None)):
        return _drop("sftp-secret-neither-or-both")
    # `send` takes a body or a prompt to write it, one of them (and a model only with a
    # prompt): the shapes of the document cannot say "exactly one" of two optional fields.
    if case.operation.path == "/llm" and kind == PROBLEM + "validation-failed" and isinstance(case.body, dict) and (
        (_problem(response).get("field") == "body" and (case.body.get("body") is None) == (case.body.get("prompt") is None))
        or (_problem(response).get("field") == "model" and case.body.get("body") is not None)
    ):
        return _drop("llm-body-or-prompt")
    # A request body that is no JSON object is not valid for any of the document's bodies
    # (every one is an object); schemathesis still counted one as valid.
    if kind == PROBLEM + "validation-failed" and not isinstance(case.body, dict) and case.body is not None and "must be a JSON object" in _problem(response).get("detail", ""):
        return _drop("non-object-body-counted-valid")
    # The request was not schema-valid after all (see _breaks_its_schema): 400 is right.
    header = _breaks_its_schema(case) if kind == PROBLEM + "bad-request" else None
    if header is not None:
        return _drop(f"{header}-drawn-outside-its-schema")
    return True
