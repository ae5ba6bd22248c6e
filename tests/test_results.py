"""Published figures come from the JSON: RESULTS.md and the README's table are what the records render."""

import json
import re

from conftest import ROOT

from benchmarks import render


def test_results_md_and_readme_table_match_the_json():
    problems = render.check()
    assert problems == [], problems


def test_every_readme_row_names_its_record():
    text = (ROOT / "README.md").read_text()
    block = text[text.index(render.START):text.index(render.END)]
    rows = [ln for ln in block.splitlines() if ln.startswith("| ") and not ln.startswith(("| |", "| ---"))]
    assert rows, "the README's at-a-glance table is empty"
    for row in rows:
        names = re.findall(r"results/(\w+)\.json", row)
        assert names, f"a README figure without its record: {row}"
        for name in names:
            assert (ROOT / "benchmarks" / "results" / f"{name}.json").exists(), row


def test_records_are_append_only_lists():
    for path in (ROOT / "benchmarks" / "results").glob("*.json"):
        entries = json.loads(path.read_text())
        assert isinstance(entries, list) and entries, path.name
        runner = [e for e in entries if "benchmark" in e]
        for e in runner:            # what the runner writes for every run, failed ones included
            keys = ["benchmark", "status", "command", "settings", "seeds", "machine", "versions", "commit"]
            if e["status"] != "killed":          # a SIGKILLed run is recorded by hand, from its log
                keys.append("started")
            for key in keys:
                assert key in e, (path.name, key)
            assert e["status"] == "ok" or e.get("error"), (path.name, "a failed run says why")
