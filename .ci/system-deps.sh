#!/usr/bin/env bash
# System packages some tests need: Chromium, for the live-view page test
# (tests/browser/test_liveview_browser.py); Xvfb and the libraries PyQt5's xcb platform plugin
# loads, for the Taurus GUI tests (tests/gui/).
# Idempotent, and never fails the build: where apt-get is missing, not allowed or cannot install,
# it says so and the tests that need the packages skip with their own message.
set -u

# Xvfb, and the libraries PyQt5's xcb platform plugin and QtGui load that python:3.11-bookworm
# lacks (ldd of libqxcb.so, libQt5XcbQpa and libQt5Gui, Qt 5.15: no libxcb-cursor0 before 6.5)
QT_PACKAGES=(xvfb libxkbcommon-x11-0 libxcb-icccm4 libxcb-image0 libxcb-keysyms1 libxcb-randr0
             libxcb-render-util0 libxcb-xinerama0 libxcb-xfixes0 libxcb-shape0 libxcb-xkb1
             libx11-xcb1 libgl1 libfontconfig1 libglib2.0-0)

have_chromium() {
    command -v chromium >/dev/null 2>&1 || command -v chromium-browser >/dev/null 2>&1
}

have_qt() {
    command -v Xvfb >/dev/null 2>&1 || return 1
    local package
    for package in "${QT_PACKAGES[@]}"; do
        dpkg-query -W -f='${Status}\n' "$package" 2>/dev/null | grep -q "install ok installed" ||
            return 1
    done
}

note() { echo "system-deps: $*" >&2; }

missing=()
have_chromium || missing+=(chromium)
have_qt || missing+=("${QT_PACKAGES[@]}")
if [ ${#missing[@]} -eq 0 ]; then
    exit 0
fi
if ! command -v apt-get >/dev/null 2>&1; then
    note "no apt-get here; ${missing[*]} not installed, the tests that need them will skip"
    exit 0
fi
sudo=()
if [ "$(id -u)" -ne 0 ]; then
    if command -v sudo >/dev/null 2>&1 && sudo -n true 2>/dev/null; then
        sudo=(sudo -n)
    else
        note "not root and no password-less sudo; ${missing[*]} not installed, the tests that" \
             "need them will skip"
        exit 0
    fi
fi

log=$(mktemp)
trap 'rm -f "$log"' EXIT
export DEBIAN_FRONTEND=noninteractive
if ! ${sudo[@]+"${sudo[@]}"} apt-get update -qq >"$log" 2>&1; then
    note "apt-get update failed; the tests that need ${missing[*]} will skip. Last lines:"
    tail -n 5 "$log" >&2
    exit 0
fi
# one group at a time, so that a package missing from one does not keep the other out
install() {
    local what=$1 check=$2
    shift 2
    if ${sudo[@]+"${sudo[@]}"} apt-get install -y -qq --no-install-recommends "$@" >>"$log" 2>&1 &&
       $check; then
        note "installed $what"
    else
        note "apt-get could not install $what; the tests that need it will skip. Last lines:"
        tail -n 5 "$log" >&2
    fi
}
have_chromium || install "Chromium" have_chromium chromium
have_qt || install "Xvfb and the Qt libraries" have_qt "${QT_PACKAGES[@]}"
exit 0
