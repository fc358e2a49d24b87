#!/usr/bin/env bash
# Installs the Debian packages the build needs, if any are missing. Sourced by demo.sh/test.sh.
# Build tools already on PATH (e.g. a CMake or Ninja installed by pip or by hand) count as
# present, so a machine without a package mirror that has them still builds.
moer_need=()
command -v cmake >/dev/null 2>&1 || moer_need+=(cmake)
command -v ninja >/dev/null 2>&1 || moer_need+=(ninja-build)
command -v g++ >/dev/null 2>&1 || moer_need+=(g++)
for pkg in libgtest-dev nlohmann-json3-dev; do
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
