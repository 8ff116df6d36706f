#!/usr/bin/env bash
# System packages some tests need: Chromium, for the live-view page test (tests/browser/test_liveview_browser.py).
# Idempotent, and never fails the build: where apt-get is missing, not allowed or cannot install,
# it says so and the browser test skips with its own message.
set -u

have_chromium() {
    command -v chromium >/dev/null 2>&1 || command -v chromium-browser >/dev/null 2>&1
}

note() { echo "system-deps: $*" >&2; }

if have_chromium; then
    exit 0
fi
if ! command -v apt-get >/dev/null 2>&1; then
    note "no apt-get here; Chromium not installed, the browser test will skip"
    exit 0
fi
sudo=()
if [ "$(id -u)" -ne 0 ]; then
    if command -v sudo >/dev/null 2>&1 && sudo -n true 2>/dev/null; then
        sudo=(sudo -n)
    else
        note "not root and no password-less sudo; Chromium not installed, the browser test will skip"
        exit 0
    fi
fi

log=$(mktemp)
trap 'rm -f "$log"' EXIT
export DEBIAN_FRONTEND=noninteractive
if ${sudo[@]+"${sudo[@]}"} apt-get update -qq >"$log" 2>&1 &&
   ${sudo[@]+"${sudo[@]}"} apt-get install -y -qq --no-install-recommends chromium >>"$log" 2>&1 &&
   have_chromium; then
    note "installed $(chromium --version 2>/dev/null | head -n 1)"
else
    note "apt-get could not install chromium; the browser test will skip. Last lines:"
    tail -n 5 "$log" >&2
fi
exit 0
