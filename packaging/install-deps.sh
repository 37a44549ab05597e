#!/bin/sh
# Installs, with apt-get, whichever of the packages Pillarbox needs to build
# and run are missing (Debian 12). Packages already installed are not touched,
# and apt is not called at all when nothing is missing, so a second run is
# quick and works offline. Extra package names may be given as arguments.
# Used by demo.sh and test.sh.
set -eu

# To build: compiler, meson/ninja and the libraries of the top meson.build;
# catch2 for the unit tests. To run: openssl (certificates, password hashes),
# ca-certificates (remote-delivery's CA bundle). To try it and for the
# end-to-end tests: swaks and python3; unbound (a local resolver serving the
# test zones of tests/e2e/test_remote.py); fetchmail (a real POP3 and IMAP
# client, tests/e2e/test_pop3.py and test_imapd.py); mutt and isync (mbsync),
# the real IMAP clients of tests/e2e/test_imapd.py.
packages="meson ninja-build g++ pkg-config libevent-dev libssl-dev libcap-dev
libunbound-dev libcrypt-dev catch2 openssl ca-certificates python3 swaks unbound
fetchmail mutt isync"

if ! command -v dpkg-query >/dev/null 2>&1; then
    echo "install-deps.sh: not a Debian system; install these by hand:" "$packages" "$@" >&2
    exit 0
fi

missing=""
for p in $packages "$@"; do
    if ! dpkg-query -W -f='${Status}' "$p" 2>/dev/null | grep -q "install ok installed"; then
        missing="$missing $p"
    fi
done
[ -z "$missing" ] && exit 0

if [ "$(id -u)" -ne 0 ]; then
    echo "install-deps.sh: missing packages:$missing (run as root to install them)" >&2
    exit 1
fi
echo "install-deps.sh: installing$missing"
export DEBIAN_FRONTEND=noninteractive
apt-get update -qq
# shellcheck disable=SC2086 # the list is meant to split
apt-get install -y -qq --no-install-recommends $missing </dev/null
