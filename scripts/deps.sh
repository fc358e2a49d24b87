#!/usr/bin/env bash
# Installs the Debian packages the build needs, if any are missing. Sourced by demo.sh/test.sh.
moer_need=()
for pkg in cmake ninja-build g++ libgtest-dev nlohmann-json3-dev; do
  dpkg -s "$pkg" >/dev/null 2>&1 || moer_need+=("$pkg")
done
if [ ${#moer_need[@]} -gt 0 ]; then
  echo "moerouter: installing ${moer_need[*]}"
  moer_sudo=""
  [ "$(id -u)" -ne 0 ] && moer_sudo="sudo"
  $moer_sudo apt-get update -qq
  DEBIAN_FRONTEND=noninteractive $moer_sudo apt-get install -y -qq "${moer_need[@]}"
fi
unset moer_need moer_sudo
