#!/usr/bin/env python3
"""Judge an Autobahn|Testsuite fuzzingclient run from its reports/index.json.

Usage: check.py REPORTS_DIR

Every case of every agent must have `behavior` and `behaviorClose` in ACCEPTED. Prints the
failing cases (id, verdicts, description and what was observed, from the case's own report file),
then one summary line `autobahn: N passed, M failed`. Exit 0 only when M is 0 and N is not 0: a
missing, unreadable or empty index is a failure, never a pass.
"""
import json
import os
import sys

# The verdicts a conformant server may get. NON-STRICT: allowed by RFC 6455 but not the strictest
# reading (e.g. failing an invalid UTF-8 message only once it is complete). INFORMATIONAL: the
# suite only records what happened (e.g. the close code echoed back).
ACCEPTED = ("OK", "NON-STRICT", "INFORMATIONAL")

# How much of a case's description and observed result to print: enough to recognise it in the
# log; the full text is in the case's report file.
TEXT_LIMIT = 300


def case_key(case_id):
    """Sort "6.4.10" after "6.4.2": compare the dotted parts as numbers."""
    return [int(p) if p.isdigit() else p for p in case_id.split(".")]


def one_line(text):
    text = " ".join(str(text).split())
    return text if len(text) <= TEXT_LIMIT else text[: TEXT_LIMIT - 3] + "..."


def case_details(reports_dir, entry):
    """The case's description and observed result from its own report file, if readable."""
    name = entry.get("reportfile")
    if not isinstance(name, str):
        return None, None
    try:
        with open(os.path.join(reports_dir, name), encoding="utf-8") as f:
            report = json.load(f)
    except (OSError, ValueError):
        return None, None
    if not isinstance(report, dict):
        return None, None
    return report.get("description"), report.get("result")


def check(reports_dir, out=sys.stdout):
    """Print the verdict for REPORTS_DIR; return the process exit code."""
    index_path = os.path.join(reports_dir, "index.json")
    try:
        with open(index_path, encoding="utf-8") as f:
            index = json.load(f)
    except (OSError, ValueError) as e:
        print("autobahn: cannot read %s: %s" % (index_path, e), file=out)
        print("autobahn: 0 passed, 1 failed", file=out)
        return 1
    if not isinstance(index, dict):
        print("autobahn: %s is not a JSON object" % index_path, file=out)
        print("autobahn: 0 passed, 1 failed", file=out)
        return 1

    passed = 0
    failures = []
    for agent in sorted(index):
        cases = index[agent]
        if not isinstance(cases, dict):
            failures.append((agent, "?", "?", "?", "agent entry is not an object", None))
            continue
        for case_id in sorted(cases, key=case_key):
            entry = cases[case_id] if isinstance(cases[case_id], dict) else {}
            behavior = entry.get("behavior", "MISSING")
            behavior_close = entry.get("behaviorClose", "MISSING")
            if behavior in ACCEPTED and behavior_close in ACCEPTED:
                passed += 1
                continue
            description, result = case_details(reports_dir, entry)
            failures.append((agent, case_id, behavior, behavior_close, description, result))

    for agent, case_id, behavior, behavior_close, description, result in failures:
        print(
            "FAILED %s case %s: behavior=%s behaviorClose=%s"
            % (agent, case_id, behavior, behavior_close),
            file=out,
        )
        if description:
            print("    description: %s" % one_line(description), file=out)
        if result:
            print("    result: %s" % one_line(result), file=out)
    if passed == 0 and not failures:
        print("autobahn: %s lists no cases" % index_path, file=out)
        print("autobahn: 0 passed, 1 failed", file=out)
        return 1
    print("autobahn: %d passed, %d failed" % (passed, len(failures)), file=out)
    return 1 if failures else 0


def main(argv):
    if len(argv) != 2:
        print("usage: check.py REPORTS_DIR", file=sys.stderr)
        return 2
    return check(argv[1])


if __name__ == "__main__":
    sys.exit(main(sys.argv))
