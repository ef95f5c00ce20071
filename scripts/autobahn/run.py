#!/usr/bin/env python3
"""Run Autobahn|Testsuite's fuzzingclient against the gateway's echo endpoint and judge it.

Usage:
  run.py --python2 PY27 --site SITE_DIR --out OUT_DIR (--gateway BIN | --url WS_URL)
         [--timeout SECONDS]

With --gateway: starts `BIN serve --listen 127.0.0.1:0 --data-dir <fresh temp dir>
--enable-echo`, reads the `127.0.0.1:PORT` it prints, targets ws://127.0.0.1:PORT/debug/echo,
and stops it with SIGTERM afterwards. With --url: targets that server as it is.

Writes OUT_DIR/spec.json (from fuzzingclient.json beside this file), OUT_DIR/reports/ (wstest's
HTML and JSON reports, index.json among them), OUT_DIR/wstest.log and OUT_DIR/gateway.log, then
runs check.py on the reports. Exit 0 only if wstest finished in time, the gateway (when started
here) stayed up for the whole run and exited 0 on SIGTERM within its deadline, and every case
passed.
"""
import argparse
import json
import os
import re
import selectors
import shutil
import signal
import subprocess
import sys
import tempfile
import threading
import time

HERE = os.path.dirname(os.path.abspath(__file__))
sys.dont_write_bytecode = True  # keep the repo free of __pycache__
sys.path.insert(0, HERE)
import check  # noqa: E402  (beside this file)

# The gateway prints its address once it accepts connections (SPEC section 2). A release binary
# does so well within a second; 30 s leaves room for a loaded 2-core CI machine.
ADDRESS_TIMEOUT_S = 30

# SPEC section 2: on SIGTERM the gateway closes every socket, flushes the store and exits 0
# within 5 s. A slower or non-zero exit is reported as a failure of this run.
STOP_TIMEOUT_S = 5

# The whole wstest run. The selected cases take about a minute against a local echo server on
# 2 cores; 10 minutes means something hangs, and keeps `make test` inside CI's budget.
DEFAULT_RUN_TIMEOUT_S = 600

# What the gateway's start-up line must contain: the loopback address it listens on.
ADDRESS_RE = re.compile(rb"127\.0\.0\.1:(\d{1,5})\b")

ECHO_PATH = "/debug/echo"


def log(msg):
    print("autobahn: %s" % msg, flush=True)


def tail(path, lines=20):
    try:
        with open(path, "rb") as f:
            text = b"".join(f.readlines()[-lines:]).decode("utf-8", "replace")
    except OSError as e:
        return "(unreadable: %s)" % e
    return text if text.strip() else "(empty)"


class Gateway:
    """The gateway process started for this run; `port` is where it listens."""

    def __init__(self, binary, data_dir, log_path):
        self.log_path = log_path
        self.log_file = open(log_path, "wb")
        argv = [binary, "serve", "--listen", "127.0.0.1:0", "--data-dir", data_dir,
                "--enable-echo"]
        log("starting %s" % " ".join(argv))
        self.proc = subprocess.Popen(argv, stdin=subprocess.DEVNULL, stdout=subprocess.PIPE,
                                     stderr=self.log_file)
        self.port = None
        self.drain = None

    def wait_for_address(self):
        """Read stdout until the line with the address; then copy the rest to the log."""
        sel = selectors.DefaultSelector()
        sel.register(self.proc.stdout, selectors.EVENT_READ)
        deadline = time.monotonic() + ADDRESS_TIMEOUT_S
        buf = b""
        try:
            while self.port is None:
                left = deadline - time.monotonic()
                if left <= 0:
                    raise RuntimeError("gateway printed no 127.0.0.1:PORT within %d s"
                                       % ADDRESS_TIMEOUT_S)
                if not sel.select(timeout=left):
                    continue
                chunk = os.read(self.proc.stdout.fileno(), 4096)
                if not chunk:
                    code = self.proc.wait()
                    raise RuntimeError("gateway exited with %s before printing its address" % code)
                self.log_file.write(chunk)
                buf += chunk
                *lines, buf = buf.split(b"\n")
                for line in lines:
                    m = ADDRESS_RE.search(line)
                    if m:
                        self.port = int(m.group(1))
                        break
        finally:
            sel.close()
        self.log_file.flush()
        # Keep draining stdout so that the gateway never blocks on a full pipe.
        self.drain = threading.Thread(target=self._copy_stdout, daemon=True)
        self.drain.start()
        return self.port

    def _copy_stdout(self):
        for chunk in iter(lambda: os.read(self.proc.stdout.fileno(), 4096), b""):
            self.log_file.write(chunk)
            self.log_file.flush()

    def stop(self):
        """SIGTERM, then wait STOP_TIMEOUT_S; returns an error string or None."""
        if self.proc.poll() is not None:
            return "gateway exited with %s during the run" % self.proc.returncode
        self.proc.send_signal(signal.SIGTERM)
        try:
            code = self.proc.wait(timeout=STOP_TIMEOUT_S)
        except subprocess.TimeoutExpired:
            self.proc.kill()
            self.proc.wait()
            return "gateway did not exit within %d s of SIGTERM (killed)" % STOP_TIMEOUT_S
        finally:
            if self.drain is not None:
                self.drain.join(timeout=1)
            self.log_file.close()
        if code != 0:
            return "gateway exited with %s after SIGTERM, expected 0" % code
        return None

    def kill(self):
        if self.proc.poll() is None:
            self.proc.kill()
            self.proc.wait()
        if not self.log_file.closed:
            self.log_file.close()


def write_spec(out_dir, url, reports_dir):
    with open(os.path.join(HERE, "fuzzingclient.json"), encoding="utf-8") as f:
        spec = json.load(f)
    spec["outdir"] = reports_dir
    spec["servers"][0]["url"] = url
    path = os.path.join(out_dir, "spec.json")
    with open(path, "w", encoding="utf-8") as f:
        json.dump(spec, f, indent=2)
        f.write("\n")
    return path


def run_wstest(args, spec_path, log_path):
    """Run wstest; returns an error string or None."""
    argv = [args.python2, "-E", "-s", "-B", os.path.join(HERE, "wstest_py27.py"), args.site,
            "-m", "fuzzingclient", "-s", spec_path]
    started = time.monotonic()
    with open(log_path, "wb") as log_file:
        try:
            code = subprocess.run(argv, cwd=args.out, stdin=subprocess.DEVNULL, stdout=log_file,
                                  stderr=subprocess.STDOUT, timeout=args.timeout).returncode
        except subprocess.TimeoutExpired:
            return "wstest did not finish within %d s (killed); see %s" % (args.timeout, log_path)
    log("wstest finished in %.1f s (log: %s)" % (time.monotonic() - started, log_path))
    if code != 0:
        return "wstest exited with %s; last lines of %s:\n%s" % (code, log_path, tail(log_path))
    # wstest exits 0 and writes an empty index when it cannot connect at all: say why.
    refused = [line for line in tail(log_path).splitlines()
               if line.startswith("Connection to ") and " failed " in line]
    if refused:
        return "wstest could not reach the server: %s" % refused[-1]
    return None


def main():
    p = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    p.add_argument("--python2", required=True, help="CPython 2.7 interpreter")
    p.add_argument("--site", required=True, help="pip --target folder holding autobahntestsuite")
    p.add_argument("--out", required=True, help="folder for spec, reports and logs")
    target = p.add_mutually_exclusive_group(required=True)
    target.add_argument("--gateway", help="gateway binary to start with --enable-echo")
    target.add_argument("--url", help="WebSocket URL of an already running echo server")
    p.add_argument("--timeout", type=int, default=DEFAULT_RUN_TIMEOUT_S,
                   help="seconds the whole wstest run may take")
    args = p.parse_args()
    args.out = os.path.abspath(args.out)
    args.site = os.path.abspath(args.site)

    reports_dir = os.path.join(args.out, "reports")
    os.makedirs(args.out, exist_ok=True)
    shutil.rmtree(reports_dir, ignore_errors=True)  # never judge an earlier run's index.json
    errors = []
    started = time.monotonic()

    with tempfile.TemporaryDirectory(prefix="consult-edge-autobahn-") as data_dir:
        gateway = None
        try:
            if args.gateway:
                gateway = Gateway(args.gateway, data_dir, os.path.join(args.out, "gateway.log"))
                port = gateway.wait_for_address()
                url = "ws://127.0.0.1:%d%s" % (port, ECHO_PATH)
            else:
                url = args.url
            spec_path = write_spec(args.out, url, reports_dir)
            log("target %s, spec %s" % (url, spec_path))
            err = run_wstest(args, spec_path, os.path.join(args.out, "wstest.log"))
            if err:
                errors.append(err)
            if gateway is not None:
                err = gateway.stop()
                if err:
                    errors.append("%s; last lines of %s:\n%s"
                                  % (err, gateway.log_path, tail(gateway.log_path)))
        except RuntimeError as e:
            errors.append(str(e))
            if gateway is not None:
                errors.append("last lines of %s:\n%s" % (gateway.log_path,
                                                          tail(gateway.log_path)))
        finally:
            if gateway is not None:
                gateway.kill()

    log("reports in %s (open index.html); total %.1f s"
        % (reports_dir, time.monotonic() - started))
    verdict = check.check(reports_dir)
    # Harness errors come last so that a clean case count cannot hide them.
    for err in errors:
        log("ERROR %s" % err)
    if errors:
        log("run failed: %d harness error(s) above" % len(errors))
    return 1 if errors or verdict != 0 else 0


if __name__ == "__main__":
    sys.exit(main())
