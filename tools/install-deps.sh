#!/usr/bin/env bash
# Installs the Debian packages tinymoe needs that this machine lacks (apt-get, as root).
# Sourced or run by tools/demo.sh and tools/test.sh; safe to run again (it installs nothing
# when everything is present).
set -euo pipefail

packages=(cmake g++ make libeigen3-dev libopenblas-dev nlohmann-json3-dev libcli11-dev catch2 libopenmpi-dev openmpi-bin)

missing=()
for package in "${packages[@]}"; do
  if ! dpkg-query -W -f='${Status}' "$package" 2>/dev/null | grep -q "install ok installed"; then
    missing+=("$package")
  fi
done

if [ ${#missing[@]} -eq 0 ]; then
  exit 0
fi

echo "tinymoe: installing missing packages: ${missing[*]}"
if [ "$(id -u)" -ne 0 ]; then
  if command -v sudo >/dev/null 2>&1; then
    SUDO=sudo
  else
    echo "tinymoe: not root and no sudo; install these packages first: ${missing[*]}" >&2
    exit 1
  fi
else
  SUDO=
fi
export DEBIAN_FRONTEND=noninteractive
$SUDO apt-get update -qq
$SUDO apt-get install -y -qq --no-install-recommends "${missing[@]}"
