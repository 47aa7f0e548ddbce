"""docs.alert_rules: the Prometheus alerting rules TaskHub ships (etc/prometheus/taskhub-alerts.yml)
load in Prometheus's own checker and pass their unit tests, and docs/operations.md shows the same
rules.

    promtool check rules etc/prometheus/taskhub-alerts.yml
    promtool test rules etc/prometheus/taskhub-alerts.test.yml

promtool comes from the Debian package prometheus, which scripts/install-deps unpacks (without
installing it: that would start a Prometheus server) to
/var/cache/taskhub-deps/prometheus/usr/bin/promtool. TASKHUB_PROMTOOL names another one. A missing
promtool fails this test: install-deps provides it.

Usage: check_alert_rules.py SOURCE_DIR
"""

import os
import re
import shutil
import subprocess
import sys

DEFAULT_PROMTOOL = "/var/cache/taskhub-deps/prometheus/usr/bin/promtool"


def find_promtool():
    for candidate in (os.environ.get("TASKHUB_PROMTOOL"), DEFAULT_PROMTOOL, shutil.which("promtool")):
        if candidate and os.access(candidate, os.X_OK):
            return candidate
    return None


def main():
    src = sys.argv[1] if len(sys.argv) > 1 else os.path.join(os.path.dirname(__file__), "..", "..")
    rules_dir = os.path.join(src, "etc", "prometheus")
    promtool = find_promtool()
    if promtool is None:
        print("FAIL: promtool not found (looked at $TASKHUB_PROMTOOL, %s and PATH); run scripts/install-deps, "
              "which unpacks it from the Debian package prometheus" % DEFAULT_PROMTOOL)
        return 1
    failed = False
    for args in (["check", "rules", "taskhub-alerts.yml"], ["test", "rules", "taskhub-alerts.test.yml"]):
        p = subprocess.run([promtool] + args, cwd=rules_dir, capture_output=True, text=True)
        print("$ promtool %s\n%s%s" % (" ".join(args), p.stdout, p.stderr))
        if p.returncode != 0:
            print("FAIL: promtool %s exited %d" % (" ".join(args), p.returncode))
            failed = True
    # The rules in docs/operations.md are the shipped ones: every alert and expression appears there.
    with open(os.path.join(rules_dir, "taskhub-alerts.yml")) as f:
        rules = f.read()
    with open(os.path.join(src, "docs", "operations.md")) as f:
        ops = f.read()
    for line in rules.splitlines():
        m = re.match(r"\s*- alert: (\S+)$|\s*expr: (.+)$", line)
        if m and line.strip() not in ops:
            print("FAIL: docs/operations.md does not show the rule line %r of etc/prometheus/taskhub-alerts.yml"
                  % line.strip())
            failed = True
    return 1 if failed else 0


if __name__ == "__main__":
    sys.exit(main())
