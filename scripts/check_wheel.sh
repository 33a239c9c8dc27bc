#!/usr/bin/env bash
# The wheel a user installs counts a photo: build it, install it (no editable install, core dependencies
# only) into a fresh venv, and count a face photo from another folder. Used by `make test-wheel` (CI).
set -euo pipefail
repo="$(cd "$(dirname "$0")/.." && pwd)"
python="${PYTHON:-python3}"
work="$(mktemp -d)"
trap 'rm -rf "$work"' EXIT
rm -rf "$repo/build"  # a stale build/lib would put deleted modules into the wheel
"$python" -m pip wheel -q --no-deps -w "$work/dist" "$repo"
"$python" -m venv "$work/venv"
"$work/venv/bin/pip" install -q "$work"/dist/lesioncount-*.whl
# A face photo (scikit-image's public-domain astronaut), written by the development venv.
"$repo/.venv/bin/python" -c "from skimage import data; from PIL import Image; Image.fromarray(data.astronaut()).save('$work/face.jpg')"
cd "$work"
"$work/venv/bin/lesioncount" count face.jpg --out counted
"$work/venv/bin/python" - <<'PY'
import json, sys
doc = json.load(open("counted/face.jpg.json"))
assert doc["face"]["found"], "no face found by the installed wheel"
assert doc["model"]["sha256"] and doc["model"]["thresholds"], doc["model"]
assert "torch" not in sys.modules
print(f"wheel OK: counted {doc['counts']['total_acne']} acne lesions with model {doc['model']['name']} {doc['model']['version']}")
PY
