#!/usr/bin/env bash
# Installs the system programs that gputui's tests run for real: OpenSSH's sshd (collector and
# action tests), tmux (the TUI as a person sees it), Slurm and munge (the operator actions run
# against slurmctld and four slurmd started by the tests), Chromium and its WebDriver (`gputui
# serve` in a real headless browser), Prometheus and its promtool (the Prometheus source reads
# a real one; the exporter's text and the alerting rules are checked with promtool), and a
# Python 3.8 (the agent runs with GPU hosts' own python3, as old as 3.8). Idempotent; quiet when
# all are present.
set -euo pipefail

# Where tests/test_agent_bundle.py looks for a Python 3.8: python3.8 on PATH, or one pyenv built.
have_python38() {
    local p
    for p in python3.8 "${PYENV_ROOT:-$HOME/.pyenv}"/versions/3.8*/bin/python3.8; do
        "$p" -c 'import sys; sys.exit(sys.version_info[:2] != (3, 8))' >/dev/null 2>&1 && return 0
    done
    return 1
}

need=()
command -v sshd >/dev/null 2>&1 || [ -x /usr/sbin/sshd ] || need+=(openssh-server)
command -v ssh-keygen >/dev/null 2>&1 || need+=(openssh-client)
command -v tmux >/dev/null 2>&1 || need+=(tmux)
# Debian's packages; the tests start their own munged and daemons (no systemd needed).
command -v slurmctld >/dev/null 2>&1 || [ -x /usr/sbin/slurmctld ] || need+=(slurmctld)
command -v slurmd >/dev/null 2>&1 || [ -x /usr/sbin/slurmd ] || need+=(slurmd)
command -v scontrol >/dev/null 2>&1 || need+=(slurm-client)
command -v munged >/dev/null 2>&1 || [ -x /usr/sbin/munged ] || need+=(munge)
# The distribution's browser and driver, of one version: selenium is pointed at both, so it
# never downloads a browser of its own.
command -v chromium >/dev/null 2>&1 || need+=(chromium)
command -v chromedriver >/dev/null 2>&1 || need+=(chromium-driver)
# Debian's prometheus brings promtool. Its postinst would start the server as a service: the
# install below forbids that, and tests start their own server on loopback when they need one.
{ command -v promtool && command -v prometheus; } >/dev/null 2>&1 || need+=(prometheus)

# Debian 12 packages no python3.8 (PyPI has no interpreters): pyenv builds one from source.
build_python38=""
if ! have_python38; then
    if command -v pyenv >/dev/null 2>&1; then
        build_python38=1
        need+=(build-essential libssl-dev zlib1g-dev libbz2-dev libreadline-dev libsqlite3-dev
            libffi-dev liblzma-dev)
    else
        echo "gputui tests want a Python 3.8 (python3.8 on PATH, or pyenv to build one):" \
            "the agent's Python 3.8 tests will be skipped, or fail under GPUTUI_REQUIRE_SYSTEM=1" >&2
    fi
fi

if [ ${#need[@]} -eq 0 ]; then
    exit 0
fi

sudo=""
if [ "$(id -u)" -ne 0 ]; then
    if command -v sudo >/dev/null 2>&1; then
        sudo="sudo"
    else
        echo "gputui tests want: ${need[*]} (not root and no sudo: those tests will be skipped)" >&2
        exit 0
    fi
fi
echo "installing system packages for the tests: ${need[*]}" >&2
export DEBIAN_FRONTEND=noninteractive
# No package may start its service while installed (Debian's policy-rc.d: 101 = action forbidden;
# invoke-rc.d and deb-systemd-invoke both ask it). A policy the machine already has is kept.
policy=/usr/sbin/policy-rc.d
own_policy=""
if [ ! -e "$policy" ]; then
    own_policy=1
    printf '#!/bin/sh\nexit 101\n' | $sudo tee "$policy" >/dev/null
    $sudo chmod 755 "$policy"
    trap '$sudo rm -f "$policy"' EXIT
fi
$sudo apt-get update -qq
$sudo apt-get install -y -qq --no-install-recommends "${need[@]}" >/dev/null
if [ -n "$own_policy" ]; then
    $sudo rm -f "$policy"
    trap - EXIT
fi
# Installed here for its promtool: leave no Prometheus server running, nor enabled at boot.
if [[ " ${need[*]} " == *" prometheus "* ]]; then
    if command -v systemctl >/dev/null 2>&1 && systemctl is-enabled --quiet prometheus 2>/dev/null; then
        $sudo systemctl disable --now prometheus >/dev/null 2>&1 || true
    fi
    if [ -x /etc/init.d/prometheus ]; then
        $sudo /etc/init.d/prometheus stop >/dev/null 2>&1 || true
    fi
fi

if [ -n "$build_python38" ]; then
    version=$(pyenv latest -k 3.8)
    echo "building Python $version with pyenv for the agent's Python 3.8 tests" >&2
    pyenv install --skip-existing "$version" >/dev/null
fi
