"""Tests of check.py on report folders written to a temp dir, shaped like wstest's output."""
import io
import json
import os
import tempfile
import unittest

import check


def write_reports(folder, cases, descriptions=None):
    """Write index.json for agent "gw" with CASES {id: (behavior, behaviorClose)}."""
    descriptions = descriptions or {}
    index = {"gw": {}}
    for case_id, (behavior, behavior_close) in cases.items():
        report = "gw_case_%s.json" % case_id.replace(".", "_")
        index["gw"][case_id] = {"behavior": behavior, "behaviorClose": behavior_close,
                                "duration": 1, "remoteCloseCode": 1000, "reportfile": report}
        if case_id in descriptions:
            with open(os.path.join(folder, report), "w") as f:
                json.dump({"description": descriptions[case_id], "result": "got 1002"}, f)
    with open(os.path.join(folder, "index.json"), "w") as f:
        json.dump(index, f)


class CheckTest(unittest.TestCase):
    def setUp(self):
        self.tmp = tempfile.TemporaryDirectory()
        self.dir = self.tmp.name

    def tearDown(self):
        self.tmp.cleanup()

    def run_check(self):
        out = io.StringIO()
        code = check.check(self.dir, out=out)
        return code, out.getvalue().splitlines()

    def test_check_accepted_verdicts_pass(self):
        write_reports(self.dir, {"1.1.1": ("OK", "OK"), "6.4.1": ("NON-STRICT", "OK"),
                                 "7.1.6": ("INFORMATIONAL", "INFORMATIONAL")})
        code, lines = self.run_check()
        self.assertEqual(code, 0)
        self.assertEqual(lines, ["autobahn: 3 passed, 0 failed"])

    def test_check_failed_case_fails_with_description(self):
        write_reports(self.dir, {"1.1.1": ("OK", "OK"), "5.1": ("FAILED", "OK")},
                      {"5.1": "Send Ping fragmented into 2 fragments."})
        code, lines = self.run_check()
        self.assertEqual(code, 1)
        self.assertEqual(lines[0], "FAILED gw case 5.1: behavior=FAILED behaviorClose=OK")
        self.assertEqual(lines[1], "    description: Send Ping fragmented into 2 fragments.")
        self.assertEqual(lines[2], "    result: got 1002")
        self.assertEqual(lines[-1], "autobahn: 1 passed, 1 failed")

    def test_check_bad_close_alone_fails(self):
        write_reports(self.dir, {"7.3.1": ("OK", "UNCLEAN")})
        code, lines = self.run_check()
        self.assertEqual(code, 1)
        self.assertEqual(lines[-1], "autobahn: 0 passed, 1 failed")

    def test_check_failures_listed_in_numeric_case_order(self):
        write_reports(self.dir, {"6.4.10": ("FAILED", "OK"), "6.4.2": ("FAILED", "OK")})
        _, lines = self.run_check()
        failed = [line for line in lines if line.startswith("FAILED")]
        self.assertEqual([line.split()[3] for line in failed], ["6.4.2:", "6.4.10:"])

    def test_check_missing_index_fails(self):
        code, lines = self.run_check()
        self.assertEqual(code, 1)
        self.assertEqual(lines[-1], "autobahn: 0 passed, 1 failed")

    def test_check_index_without_cases_fails(self):
        write_reports(self.dir, {})
        code, lines = self.run_check()
        self.assertEqual(code, 1)
        self.assertIn("lists no cases", lines[0])

    def test_check_unreadable_index_fails(self):
        with open(os.path.join(self.dir, "index.json"), "w") as f:
            f.write("{not json")
        code, _ = self.run_check()
        self.assertEqual(code, 1)


if __name__ == "__main__":
    unittest.main()
