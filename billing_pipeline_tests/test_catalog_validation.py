"""A catalog that cannot be billed from is refused by the CLI with exit code 2 and one line per
problem: the file, the path inside the document, and what is wrong (README "Catalog errors")."""

from __future__ import annotations

import copy

import pytest
import yaml
from click.testing import CliRunner

from billing_pipeline.cli import main

GOOD = {
    "issuer": {"name": "Example AI GmbH"},
    "plans": {
        "enterprise": {
            "name": "Enterprise",
            "charges": [
                {"id": "input", "meter": "input_tokens", "unit_size": 1000, "unit_price": "0.0025"},
                {
                    "id": "output",
                    "meter": "output_tokens",
                    "unit_size": 1000,
                    "pricing": "graduated",
                    "tiers": [
                        {"up_to": 10_000_000, "unit_price": "0.010"},
                        {"up_to": 50_000_000, "unit_price": "0.008"},
                        {"up_to": None, "unit_price": "0.006"},
                    ],
                },
            ],
        },
    },
    "customers": {
        "acme": {"name": "Acme", "subscriptions": [{"plan": "enterprise", "from": "2026-01-01"}]}
    },
}


def tiers_out_of_order(doc):
    doc["plans"]["enterprise"]["charges"][1]["tiers"][1]["up_to"] = 5_000_000


def missing_final_unbounded_tier(doc):
    doc["plans"]["enterprise"]["charges"][1]["tiers"][2]["up_to"] = 90_000_000


def unbounded_tier_before_the_last(doc):
    doc["plans"]["enterprise"]["charges"][1]["tiers"][0]["up_to"] = None


def two_charges_claim_the_same_usage(doc):
    doc["plans"]["enterprise"]["charges"].append(
        {"id": "gpt4o-input", "meter": "input_tokens", "models": ["gpt-4o"], "unit_price": "0.002"}
    )


def unknown_meter(doc):
    doc["plans"]["enterprise"]["charges"][0]["meter"] = "prompt_tokens"


def float_price(doc):
    doc["plans"]["enterprise"]["charges"][0]["unit_price"] = 0.0025


def float_tier_price(doc):
    doc["plans"]["enterprise"]["charges"][1]["tiers"][0]["unit_price"] = 0.01


def unknown_plan(doc):
    doc["customers"]["acme"]["subscriptions"][0]["plan"] = "gold"


CASES = [
    (
        tiers_out_of_order,
        "plans.enterprise.charges[1].tiers[1].up_to: tiers out of order: up_to must increase "
        "(5,000,000 is not above 10,000,000)",
    ),
    (
        missing_final_unbounded_tier,
        "plans.enterprise.charges[1].tiers[2].up_to: the last tier must have up_to: null "
        "(usage above 90,000,000 would fall in a gap with no price)",
    ),
    (
        unbounded_tier_before_the_last,
        "plans.enterprise.charges[1].tiers[0].up_to: only the last tier may have up_to: null",
    ),
    (
        two_charges_claim_the_same_usage,
        "plans.enterprise: charges 'input' and 'gpt4o-input' both claim the same usage",
    ),
    (
        unknown_meter,
        "plans.enterprise.charges[0].meter: unknown meter 'prompt_tokens'; known meters: input_tokens,",
    ),
    (
        float_price,
        "plans.enterprise.charges[0].unit_price: a float where a decimal string is required: "
        'write it quoted, e.g. "0.0025"',
    ),
    (
        float_tier_price,
        "plans.enterprise.charges[1].tiers[0].unit_price: a float where a decimal string is required",
    ),
    (
        unknown_plan,
        "customers.acme.subscriptions[0].plan: unknown plan 'gold'; plans are: enterprise",
    ),
]


def write(tmp_path, mutate) -> str:
    doc = copy.deepcopy(GOOD)
    mutate(doc)
    path = tmp_path / "bad.yaml"
    path.write_text(yaml.safe_dump(doc, sort_keys=False), encoding="utf-8")
    return str(path)


@pytest.mark.parametrize(("mutate", "message"), CASES, ids=[c[0].__name__ for c in CASES])
def test_quote_refuses_a_bad_catalog_with_its_path_and_exit_code_2(tmp_path, mutate, message):
    catalog = write(tmp_path, mutate)
    result = CliRunner().invoke(
        main,
        [
            "quote",
            "--catalog",
            catalog,
            "--plan",
            "enterprise",
            "--usage",
            "input_tokens=1000",
            "--month",
            "2026-10",
        ],
    )
    assert result.exit_code == 2
    assert f"error: {catalog}: {message}" in result.output


@pytest.mark.parametrize(("mutate", "message"), CASES[:1] + CASES[-1:], ids=["tiers", "plan"])
def test_run_refuses_a_bad_catalog_before_doing_anything(tmp_path, mutate, message):
    catalog = write(tmp_path, mutate)
    (tmp_path / "landing" / "gateway").mkdir(parents=True)
    (tmp_path / "landing" / "gateway" / "2026-10-01.jsonl").write_text("", encoding="utf-8")
    result = CliRunner().invoke(
        main,
        [
            "run",
            "--month",
            "2026-10",
            "--catalog",
            catalog,
            "--landing",
            str(tmp_path / "landing"),
            "--out",
            str(tmp_path / "out"),
        ],
    )
    assert result.exit_code == 2
    assert f"{catalog}: {message}" in result.output


def test_the_good_catalog_quotes():
    from billing_pipeline.catalog import parse_catalog

    assert parse_catalog(copy.deepcopy(GOOD)).plans["enterprise"].charges[1].tiers[2].up_to is None


def test_a_catalog_that_is_not_yaml_is_refused_with_the_file_and_the_line(tmp_path):
    catalog = tmp_path / "broken.yaml"
    catalog.write_text(
        "issuer:\n  name: Example AI GmbH\nplans: [enterprise,\ncustomers: {}\n", encoding="utf-8"
    )
    result = CliRunner().invoke(
        main,
        [
            "quote",
            "--catalog",
            str(catalog),
            "--plan",
            "enterprise",
            "--usage",
            "input_tokens=1000",
            "--month",
            "2026-10",
        ],
    )
    assert result.exit_code == 2
    assert f"error: {catalog}: not valid YAML" in result.output
    assert "line 3, column 8" in result.output  # where the list that is never closed opens


def test_yaml_comments_anchors_and_quoted_prices_load_as_written(tmp_path):
    """The loader is libyaml's where PyYAML has it: it must read a catalog exactly as the
    pure-Python safe loader does (anchors, merge keys, quoted decimals, nulls)."""
    from billing_pipeline.catalog import load_catalog

    text = """# plans share one tier table through an anchor
issuer: {name: Example AI GmbH}
plans:
  enterprise:
    name: Enterprise
    charges:
      - &input {id: input, meter: input_tokens, unit_size: 1000, unit_price: "0.0025"}
      - {<<: *input, id: output, meter: output_tokens, unit_price: "0.0100"}
customers:
  acme: {name: Acme, subscriptions: [{plan: enterprise, from: 2026-01-01, to: ~}]}
"""
    catalog = tmp_path / "catalog.yaml"
    catalog.write_text(text, encoding="utf-8")
    assert load_catalog(catalog) == parse_catalog_via_python_loader(text)
    charges = load_catalog(catalog).plans["enterprise"].charges
    assert [(c.id, c.meter, str(c.unit_price)) for c in charges] == [
        ("input", "input_tokens", "0.0025"),
        ("output", "output_tokens", "0.0100"),
    ]


def parse_catalog_via_python_loader(text: str):
    from billing_pipeline.catalog import parse_catalog

    return parse_catalog(yaml.load(text, Loader=yaml.SafeLoader))


# Ids become file names under --out: a hostile or careless id is refused at load, before any work.
def rename_customer(new_id):
    def mutate(doc):
        doc["customers"] = {new_id: doc["customers"].pop("acme")}

    mutate.__name__ = f"customer_{new_id[:12]}"
    return mutate


def rename_plan(doc):
    doc["plans"] = {"../ent": doc["plans"].pop("enterprise")}
    doc["customers"]["acme"]["subscriptions"][0]["plan"] = "../ent"


def slash_charge_id(doc):
    doc["plans"]["enterprise"]["charges"][0]["id"] = "in/put"


def prefix(value):
    def mutate(doc):
        doc["issuer"]["invoice_prefix"] = value

    return mutate


RULE = "is not a safe identifier: use only letters, digits, '-', '_' and '.' (not first), at most 64 characters"
ID_CASES = [
    (rename_customer("../../../../x"), f"customers: customer id '../../../../x' {RULE}"),
    (rename_customer("/abs/x"), f"customers: customer id '/abs/x' {RULE}"),
    (rename_customer("a/b"), f"customers: customer id 'a/b' {RULE}"),
    (
        rename_customer("x" * 300),
        f"customers: customer id '{'x' * 76}... {RULE}",
    ),  # 80 characters of the repr
    (rename_customer(".hidden"), f"customers: customer id '.hidden' {RULE}"),
    (rename_customer("acme\nx"), f"customers: customer id 'acme\\nx' {RULE}"),
    (rename_plan, f"plans: plan id '../ent' {RULE}"),
    (slash_charge_id, f"plans.enterprise.charges[0].id: charge id 'in/put' {RULE}"),
    (prefix("../../x"), f"issuer.invoice_prefix: invoice_prefix '../../x' {RULE}"),
    (prefix("INV 2026"), f"issuer.invoice_prefix: invoice_prefix 'INV 2026' {RULE}"),
]


@pytest.mark.parametrize(
    ("mutate", "message"), ID_CASES, ids=[str(i) for i in range(len(ID_CASES))]
)
def test_an_unsafe_id_or_invoice_prefix_is_refused_at_load_naming_the_catalog_and_field(
    tmp_path, mutate, message
):
    catalog = write(tmp_path, mutate)
    result = CliRunner().invoke(
        main,
        [
            "quote",
            "--catalog",
            catalog,
            "--plan",
            "enterprise",
            "--usage",
            "input_tokens=1000",
            "--month",
            "2026-10",
        ],
    )
    assert result.exit_code == 2
    assert f"error: {catalog}: {message}" in result.output
    assert "Traceback" not in result.output


@pytest.mark.parametrize("bad_id", ["../../../../x", "/abs/x", "a/b", "x" * 300])
def test_run_refuses_an_unsafe_customer_id_before_writing_anything(tmp_path, bad_id):
    catalog = write(tmp_path, rename_customer(bad_id))
    (tmp_path / "landing" / "gateway").mkdir(parents=True)
    (tmp_path / "landing" / "gateway" / "2026-10-01.jsonl").write_text("", encoding="utf-8")
    result = CliRunner().invoke(
        main,
        [
            "run",
            "--month",
            "2026-10",
            "--catalog",
            catalog,
            "--landing",
            str(tmp_path / "landing"),
            "--out",
            str(tmp_path / "out"),
        ],
    )
    assert result.exit_code == 2
    assert f"{catalog}: customers: customer id " in result.output
    assert not (tmp_path / "out").exists()


def test_ids_with_letters_digits_dots_dashes_and_underscores_up_to_64_characters_load():
    from billing_pipeline.catalog import parse_catalog

    doc = copy.deepcopy(GOOD)
    long_id = "a" * 64
    doc["customers"] = {
        "Acme_Corp-2.eu": doc["customers"]["acme"],
        long_id: doc["customers"]["acme"],
    }
    doc["issuer"]["invoice_prefix"] = "ACME-INV_2026.a"
    catalog = parse_catalog(doc)
    assert list(catalog.customers) == ["Acme_Corp-2.eu", long_id]


def test_a_catalog_file_changed_between_two_loads_is_read_again(tmp_path):
    """A process loads the catalog once per priced step: unchanged bytes give the parse already
    made, and an edit (a new price, a customer added) is seen at the next load, never a stale one."""
    from billing_pipeline.catalog import load_catalog

    path = tmp_path / "catalog.yaml"
    path.write_text(yaml.safe_dump(GOOD), encoding="utf-8")
    first = load_catalog(path)
    assert load_catalog(path) is first
    edited = copy.deepcopy(GOOD)
    edited["plans"]["enterprise"]["charges"][0]["unit_price"] = "0.0030"
    edited["customers"]["beta"] = {"name": "Beta", "subscriptions": []}
    path.write_text(yaml.safe_dump(edited), encoding="utf-8")
    second = load_catalog(path)
    assert second is not first
    assert str(second.plans["enterprise"].charges[0].unit_price) == "0.0030"
    assert set(second.customers) == {"acme", "beta"}
    path.write_text("issuer: [", encoding="utf-8")  # broken now: refused, not the last good one
    with pytest.raises(ValueError, match="not valid YAML"):
        load_catalog(path)
