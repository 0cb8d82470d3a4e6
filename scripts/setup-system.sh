#!/usr/bin/env bash
# Install the real tools synack's tests talk to (Debian packages). Skips what is already there.
# Usage: scripts/setup-system.sh            (as root; a no-op for tools already installed)
set -euo pipefail
declare -A pkg_for=(
  [tshark]=tshark
  [tcpdump]=tcpdump
  [nc]=netcat-openbsd
  [socat]=socat
  [curl]=curl
  [ss]=iproute2
  [ip]=iproute2
  [chromium]=chromium
  [iperf3]=iperf3
)
missing=()
for tool in "${!pkg_for[@]}"; do
  command -v "$tool" >/dev/null 2>&1 || missing+=("${pkg_for[$tool]}")
done
# The compiled core (scripts/build-compiled.sh, run by scripts/test.sh) needs a C compiler and the
# headers of the python3 that builds it; Debian's python3-dev has them for Debian's python3.
command -v cc >/dev/null 2>&1 || missing+=(gcc)
if ! python3 -c 'import os, sys, sysconfig
sys.exit(not os.path.exists(os.path.join(sysconfig.get_paths()["include"], "Python.h")))'; then
  if [ "$(command -v python3)" = /usr/bin/python3 ]; then
    missing+=(python3-dev)
  else
    echo "setup-system: $(command -v python3) has no Python.h; the compiled core will not build" >&2
  fi
fi
if [ "${#missing[@]}" -eq 0 ]; then
  echo "setup-system: all tools present (and a C compiler with the Python headers)"
  exit 0
fi
if [ "$(id -u)" -ne 0 ]; then
  echo "setup-system: missing ${missing[*]} and not root; tests needing them will fail" >&2
  exit 0
fi
# shellcheck disable=SC2207
uniq_missing=($(printf '%s\n' "${missing[@]}" | sort -u))
echo "setup-system: installing ${uniq_missing[*]}"
export DEBIAN_FRONTEND=noninteractive
echo "wireshark-common wireshark-common/install-setuid boolean false" | debconf-set-selections || true
apt-get update -qq
apt-get install -y -qq --no-install-recommends "${uniq_missing[@]}" >/dev/null
echo "setup-system: done"
