#!/bin/sh
# The chaos run's build command: sleeps a random short time, fails for the
# packages listed in FAIL_LIST, and otherwise writes a package at
# $PKGFARM_OUTPUT whose bytes differ on every run (so a package overwritten
# by a second build of the same job shows up as a digest mismatch). Only
# `sleep` is a program of its own: the run does thousands of these on a
# shared machine, and every fork counts.
#
# usage: build-one.sh FAIL_LIST MIN_MS MAX_MS   (the job comes as PKGFARM_* environment)
set -eu
fail_list=$1
min_ms=$2
max_ms=$3
# $$ is a fresh pid per run: random enough for a duration and for the bytes.
ms=$((min_ms + ($$ * 7919) % (max_ms - min_ms + 1)))
sleep "$((ms / 1000)).$(printf '%03d' $((ms % 1000)))"
echo "chaos: $PKGFARM_PKGNAME attempt $PKGFARM_ATTEMPT of build $PKGFARM_BUILD_ID took $ms ms"
while IFS= read -r name; do
  if [ "$name" = "$PKGFARM_PKGNAME" ]; then
    echo "chaos: $PKGFARM_PKGNAME is one of the packages chosen to fail" >&2
    exit 1
  fi
done <"$fail_list"
printf '%s %s %s %s %s\n' "$PKGFARM_PKGNAME" "$PKGFARM_BUILD_ID" "$PKGFARM_ATTEMPT" "$$" "$ms" >"$PKGFARM_OUTPUT"
