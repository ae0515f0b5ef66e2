"""A check schemathesis runs in place of its own `positive_data_acceptance` on the two submit
operations (see schemathesis.toml), and why.

A submit's body has rules that relate one field to another: weights that sum to 1, a
correlation matrix that is symmetric and positive semi-definite, a cash flow's year within
`years`, `end_year` after `start_year`, a ceiling above the floor, the solver only with a
constant real withdrawal, the historical model's horizon, and a sweep's cells (each the body
with the cell's values, which must itself be a valid plan). JSON Schema cannot state these, so a
body generated from the schema alone often breaks one, and the API rightly answers 422. Nor can
a schema state a rule across requests: an `Idempotency-Key` reused with another body is refused
with 422 (as the IETF idempotency-key draft says), and schemathesis reuses short keys. This
check still fails a schema-valid body that is refused for anything else: a 422 passes only when
every broken rule it names is one of those, the cross-field ones read from the API's own rules
document (`/assets/rules.json`, the same table the schema is generated from), so the exclusion
cannot grow beyond them.
"""

import json
import os
import re
import urllib.request

import schemathesis

SUBMITS = {("POST", "/simulations"), ("POST", "/run_simulation")}
# What the builtin check accepts besides 2xx (schemathesis' default expected statuses).
ACCEPTED_REFUSALS = {401, 403, 404, 409, 429}
# Messages of the rules document that relate fields: every key of `messages` except these,
# which the schema does state (`required`, and a parameter of another variant of a `oneOf`).
NOT_CROSS_FIELD = {"not_a_parameter"}


def _rules():
    url = os.environ["CONTRACT_API_URL"].rstrip("/") + "/assets/rules.json"
    with urllib.request.urlopen(url, timeout=10) as response:
        return json.load(response)


def _pattern(template):
    """A message template (`must sum to 1; they sum to {sum}`) as a regular expression."""
    parts = re.split(r"\{[a-z_]+\}", template)
    return re.compile("^" + ".+".join(re.escape(part) for part in parts) + "$")


def _cross_field_rules(rules):
    """(field pattern or None, message pattern) of every rule that relates two fields."""
    found = [
        (None, _pattern(message))
        for key, message in rules["messages"].items()
        if key not in NOT_CROSS_FIELD
    ]
    for path, field in rules["fields"].items():
        # A bound that names another field (`"maximum": "years"`) depends on that field.
        if any(isinstance(field.get(bound), str) for bound in ("minimum", "maximum")):
            field_pattern = re.compile(
                "^" + re.escape(path).replace(r"\[\]", r"\[[0-9]+\]") + "$"
            )
            found.append((field_pattern, _pattern(field["message"])))
    return found


CROSS_FIELD = _cross_field_rules(_rules()) + [
    (re.compile("^Idempotency-Key$"), re.compile("^was already used")),
    # A sweep's rules beyond its schema all relate fields: values increasing, whole years for
    # `years`, the product of the axes within MAX_SWEEP_CELLS, every cell (the body with the
    # cell's values) a valid plan, the sum of the cells' costs within MAX_JOB_COST, and `solve`
    # with one axis only.
    (re.compile(r"^sweep(\.|\[|$)"), re.compile(".")),
    (re.compile("^solve$"), re.compile("^a sweep with solve takes exactly one axis$")),
]


def _is_cross_field(error):
    return any(
        (field is None or field.match(error.get("field", ""))) and message.match(error["message"])
        for field, message in CROSS_FIELD
    )


@schemathesis.check
def submit_accepts_schema_valid_bodies_but_for_cross_field_rules(ctx, response, case):
    """A schema-valid submit is accepted, or refused only by rules JSON Schema cannot state."""
    if (case.operation.method.upper(), case.operation.path) not in SUBMITS:
        return None
    meta = case.meta
    if meta is None or not meta.generation.mode.is_positive:
        return None
    status = response.status_code
    if status < 400 or status >= 500 or status in ACCEPTED_REFUSALS:
        return None
    if status == 422:
        errors = (response.json() or {}).get("errors") or []
        if errors and all(_is_cross_field(error) for error in errors):
            return None
    raise AssertionError(
        f"a schema-valid body was refused with {status}, and not only by cross-field rules: "
        f"{response.text[:500]}"
    )
