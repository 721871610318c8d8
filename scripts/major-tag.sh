#!/usr/bin/env bash
# The major tag that a release tag moves: v1.4.2 -> v1, so that
# `uses: your-org/delta-audit@v1` runs the latest 1.x release (.github/workflows/release.yml).
#
# A prerelease (v1.5.0-rc.1) prints nothing and moves nothing: whoever pins @v1 must never get
# a release candidate. Anything that is not vMAJOR.MINOR.PATCH[-PRERELEASE] (semver without
# build metadata, no leading zeros) is exit 2 with a line saying what was expected.
set -euo pipefail

if [ "$#" -ne 1 ]; then
  echo "usage: major-tag.sh TAG   (e.g. major-tag.sh v1.4.2 prints v1)" >&2
  exit 2
fi

tag="$1"
release='^v(0|[1-9][0-9]*)\.(0|[1-9][0-9]*)\.(0|[1-9][0-9]*)(-[0-9A-Za-z][0-9A-Za-z.-]*)?$'
if [[ ! "$tag" =~ $release ]]; then
  echo "major-tag.sh: '$tag' is not a release tag; expected vMAJOR.MINOR.PATCH or vMAJOR.MINOR.PATCH-PRERELEASE, e.g. v1.4.2" >&2
  exit 2
fi

if [ -n "${BASH_REMATCH[4]}" ]; then
  exit 0
fi
echo "v${BASH_REMATCH[1]}"
