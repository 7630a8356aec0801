#!/usr/bin/env bash
# pdflatex with the LaTeX packages of prift's tables, from Debian, for CI and the LaTeX tests (tests/conftest.py: the
# `pdflatex` fixture runs this script, as tests/test_slurm.py runs scripts/slurm-local.sh):
#   scripts/install-tex.sh          installs what is missing: apt-get update, then texlive-latex-base (pdflatex,
#                                   longtable, geometry), -recommended (booktabs), -extra (multirow), all with
#                                   --no-install-recommends (85 MB download, 300 MB installed, ~1 min on 2 cores);
#                                   does nothing when they are there
#   scripts/install-tex.sh --check  exit 0 iff pdflatex and the packages are there; installs nothing
# Exit codes: 0 ready; 1 missing (--check); 2 not root; 3 no apt-get; 4 apt-get failed (log in $LOG).
set -euo pipefail

PACKAGES=(texlive-latex-base texlive-latex-recommended texlive-latex-extra)
STYLES=(booktabs multirow longtable geometry)   # what the tables' .tex files and the tests' documents use
LOG=/var/log/prift-install-tex-apt.log

say() { echo "install-tex: $*" >&2; }

ready() {
    command -v pdflatex >/dev/null && command -v kpsewhich >/dev/null || return 1
    local s
    for s in "${STYLES[@]}"; do
        [ -n "$(kpsewhich "$s.sty")" ] || return 1
    done
}

ready && exit 0
if [ "${1:-}" = --check ]; then
    say "pdflatex or one of ${STYLES[*]} is missing"
    exit 1
fi
[ "$(id -u)" = 0 ] || { say "pdflatex with ${STYLES[*]} is missing; installing ${PACKAGES[*]} needs root"; exit 2; }
command -v apt-get >/dev/null || { say "pdflatex with ${STYLES[*]} is missing and there is no apt-get"; exit 3; }
# one apt-get at a time: the tests run in parallel workers (make test) whose fixtures may install side by side
exec 9>/var/lock/prift-apt.lock
flock -w 1800 9 || { say "waited 30 min for /var/lock/prift-apt.lock"; exit 4; }
say "installing ${PACKAGES[*]} (apt-get, log: $LOG)"
export DEBIAN_FRONTEND=noninteractive
if ! { apt-get update -qq && apt-get install -y -qq --no-install-recommends "${PACKAGES[@]}"; } >>"$LOG" 2>&1; then
    say "apt-get failed (see $LOG)"
    exit 4
fi
ready || { say "installed ${PACKAGES[*]}, but pdflatex or one of ${STYLES[*]} is still missing"; exit 4; }
