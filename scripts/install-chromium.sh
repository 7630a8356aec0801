#!/usr/bin/env bash
# Debian's Chromium for the report test (tests/test_report.py renders results/report.html in a real headless browser;
# tests/conftest.py's `chromium` fixture runs this script, as the `pdflatex` fixture runs scripts/install-tex.sh):
#   scripts/install-chromium.sh          installs it when missing (apt-get update + chromium, --no-install-recommends,
#                                        ~15 s with the package lists fresh); does nothing when it is there
#   scripts/install-chromium.sh --check  exit 0 iff it is there; installs nothing
# Exit codes: 0 ready; 1 missing (--check); 2 not root; 3 no apt-get; 4 apt-get failed (log in $LOG).
set -euo pipefail

LOG=/var/log/prift-install-chromium-apt.log
say() { echo "install-chromium: $*" >&2; }

command -v chromium >/dev/null && exit 0
if [ "${1:-}" = --check ]; then
    say "chromium is missing"
    exit 1
fi
[ "$(id -u)" = 0 ] || { say "chromium is missing; installing it needs root"; exit 2; }
command -v apt-get >/dev/null || { say "chromium is missing and there is no apt-get"; exit 3; }
# one apt-get at a time: the tests run in parallel workers (make test) whose fixtures may install side by side
exec 9>/var/lock/prift-apt.lock
flock -w 1800 9 || { say "waited 30 min for /var/lock/prift-apt.lock"; exit 4; }
say "installing chromium (apt-get, log: $LOG)"
export DEBIAN_FRONTEND=noninteractive
if ! { apt-get update -qq && apt-get install -y -qq --no-install-recommends chromium; } >>"$LOG" 2>&1; then
    say "apt-get failed (see $LOG)"
    exit 4
fi
command -v chromium >/dev/null || { say "installed chromium, but the command is still missing"; exit 4; }
