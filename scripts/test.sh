#!/usr/bin/env bash
# Installs everything the test suite needs, then runs it. Safe to re-run.
#   - Debian packages: Erlang's epmd/erl (erlang-base), elixir (BEAM benchmarks), etcd, dnsmasq,
#     the OpenSSH client, tmux, iproute2 — only those missing, and only when run as root;
#   - a virtualenv in .venv with pymesh (editable) and its test extras.
# Extra arguments go to pytest, e.g. scripts/test.sh tests/test_processes.py -x
set -euo pipefail
cd "$(dirname "$0")/.."

missing=()
for pair in epmd:erlang-base erl:erlang-base elixir:elixir etcd:etcd-server dnsmasq:dnsmasq-base \
            ssh:openssh-client tmux:tmux ip:iproute2; do
  command -v "${pair%%:*}" >/dev/null 2>&1 || PATH="$PATH:/usr/sbin:/sbin" command -v "${pair%%:*}" >/dev/null 2>&1 \
    || missing+=("${pair#*:}")
done
python3 -c 'import venv, ensurepip' >/dev/null 2>&1 || missing+=(python3-venv)
if [ ${#missing[@]} -gt 0 ]; then
  if [ "$(id -u)" = 0 ]; then
    echo "installing Debian packages: ${missing[*]}"
    apt-get update -qq
    DEBIAN_FRONTEND=noninteractive apt-get install -y -qq $(printf '%s\n' "${missing[@]}" | sort -u) >/dev/null
  else
    echo "missing Debian packages (run as root to install): ${missing[*]}" >&2
  fi
fi
export PATH="$PATH:/usr/sbin:/sbin"

if [ ! -x .venv/bin/python ]; then
  python3 -m venv .venv
fi
.venv/bin/python -m pip install -q --upgrade pip >/dev/null
.venv/bin/python -m pip install -q -e '.[test]'
exec .venv/bin/python -m pytest "$@"
