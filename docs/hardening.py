"""The README's hardening table: every test marked ``hardening`` (issue 6) run once, and tabulated by
case: what was tried, how many cases (a parametrized test counts each parameter set, a hypothesis test
each input it ran), and what happened.

    .venv/bin/python docs/hardening.py                   print the table
    .venv/bin/python docs/hardening.py --readme README.md     write it between the README's markers
    .venv/bin/python docs/hardening.py --check README.md      check, without running the tests, that the
                                                          README lists exactly the marked cases

"What happened" is the behaviour the case's marker states when every one of its tests passed, and says
which tests failed otherwise. Hypothesis runs derandomized and without its example database (the
"hardening-report" profile in tests/conftest.py), so a run does not replay the last one's failures; the
counts still move by a few inputs between runs (2778 to 2783 seen), as the inputs a hypothesis test
retries or shrinks differ.
"""

from __future__ import annotations

import argparse
import json
import subprocess
import sys
import tempfile
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
MARKERS = ("<!-- hardening table: written by python docs/hardening.py --readme README.md -->",
           "<!-- end of hardening table -->")
HEADER = "| section | what was tried | cases | what happened |\n| --- | --- | ---: | --- |"


def run_pytest(*extra: str) -> dict:
    """pytest over the hardening tests, with the log the conftest hooks write: {"collected", "results"}."""
    with tempfile.TemporaryDirectory() as folder:
        log = Path(folder) / "hardening.json"
        command = [sys.executable, "-m", "pytest", "-m", "hardening", "-p", "no:cacheprovider", "-q",
                   "--hypothesis-profile=hardening-report", f"--hardening-log={log}", *extra]
        completed = subprocess.run(command, cwd=ROOT, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)
        if not log.is_file():
            sys.exit(f"pytest wrote no hardening log (exit {completed.returncode}):\n{completed.stdout[-3000:]}")
        return json.loads(log.read_text())


def cases(entries: list[dict]) -> dict[tuple, list[dict]]:
    """(section, title, tried, handled) -> its entries, in section order, then in the order the tests run."""
    grouped: dict[tuple, list[dict]] = {}
    for entry in sorted(entries, key=lambda e: e["section"]):
        grouped.setdefault((entry["section"], entry["title"], entry["tried"], entry["handled"]), []).append(entry)
    return grouped


def table(log: dict) -> str:
    """The markdown table of a run's log."""
    rows = [HEADER]
    by_test: dict[str, list[dict]] = {}
    for result in log["results"]:
        by_test.setdefault(result["test"], []).append(result)
    total = 0
    for (section, title, tried, handled), collected in cases(log["collected"]).items():
        results = [r for c in collected for r in by_test.get(c["test"], [])]
        count = sum(r["inputs"] for r in results if r["outcome"] == "passed")
        failed = sorted({r["test"].split("::")[-1] for r in results if r["outcome"] == "failed"})
        skipped = sorted({c["test"].split("::")[-1] for c in collected if not by_test.get(c["test"])
                          or all(r["outcome"] == "skipped" for r in by_test[c["test"]])})
        happened = handled
        if failed:
            happened = f"**FAILED**: {', '.join(failed)}"
        elif skipped:
            happened += f" (not run here: {', '.join(skipped)})"
        total += count
        rows.append(f"| {section}. {title} | {tried} | {count} | {happened} |")
    return "\n".join(rows) + f"\n\n{total} inputs over {len(rows) - 1} cases, counted by `python docs/hardening.py`.\n"


def readme_rows(readme: Path) -> set[tuple[str, str]]:
    """(section cell, tried cell) of each row of the README's hardening table."""
    text = readme.read_text()
    if MARKERS[0] not in text or MARKERS[1] not in text:
        sys.exit(f"{readme} has no hardening markers; add the lines {MARKERS[0]} and {MARKERS[1]} where it goes.")
    body = text.split(MARKERS[0], 1)[1].split(MARKERS[1], 1)[0]
    rows = [[cell.strip() for cell in line.strip().strip("|").split(" | ")] for line in body.splitlines()
            if line.startswith("| ")]
    return {(row[0], row[1]) for row in rows[2:] if len(row) == 4}  # after the header and its rule


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    action = parser.add_mutually_exclusive_group()
    action.add_argument("--readme", type=Path, help="write the table between this README's markers")
    action.add_argument("--check", type=Path, metavar="README", help="check that README lists the marked cases")
    args = parser.parse_args()
    if args.check:
        collected = run_pytest("--collect-only")["collected"]
        expected = {(f"{section}. {title}", tried) for section, title, tried, _ in cases(collected)}
        found = readme_rows(args.check)
        if expected != found:
            for section, tried in sorted(expected - found):
                print(f"not in {args.check}: {section} | {tried}")
            for section, tried in sorted(found - expected):
                print(f"in {args.check} but no test marks it: {section} | {tried}")
            print("run: python docs/hardening.py --readme README.md")
            return 1
        print(f"{args.check} lists the {len(expected)} hardening cases the tests mark")
        return 0
    text = table(run_pytest())
    if args.readme:
        content = args.readme.read_text()
        if MARKERS[0] not in content or MARKERS[1] not in content:
            sys.exit(f"{args.readme} has no hardening markers; add {MARKERS[0]} and {MARKERS[1]} where it goes.")
        head, rest = content.split(MARKERS[0], 1)
        args.readme.write_text(head + MARKERS[0] + "\n" + text + MARKERS[1] + rest.split(MARKERS[1], 1)[1])
        print(f"wrote the hardening table into {args.readme}")
    else:
        print(text, end="")
    return 0


if __name__ == "__main__":
    sys.exit(main())
