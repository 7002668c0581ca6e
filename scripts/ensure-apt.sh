#!/usr/bin/env bash
# Install the Debian packages given as arguments, only those missing. Idempotent.
# Not root and no password-less sudo: print the exact command and fail.
set -euo pipefail
missing=()
for pkg in "$@"; do
  dpkg-query -W -f='${Status}' "$pkg" 2>/dev/null | grep -q "install ok installed" || missing+=("$pkg")
done
[ ${#missing[@]} -eq 0 ] && exit 0
cmd="apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq --no-install-recommends ${missing[*]}"
if [ "$(id -u)" -eq 0 ]; then
  echo "installing: ${missing[*]}"
  bash -c "$cmd" >/dev/null
elif sudo -n true 2>/dev/null; then
  echo "installing with sudo: ${missing[*]}"
  sudo -n bash -c "$cmd" >/dev/null
else
  echo "Cascade needs these Debian packages: ${missing[*]}" >&2
  echo "Install them with:  sudo bash -c '$cmd'" >&2
  exit 1
fi
