# Source me: `source scripts/activate.sh` puts .venv and the colcon overlay into this shell.
_pop3d_root="$(cd "$(dirname "${BASH_SOURCE[0]:-$0}")/.." && pwd)"
if [ ! -f "$_pop3d_root/.ws/install/setup.sh" ]; then
  echo "pop3d_ros: environment not built; run 'make setup' first" >&2
  return 1 2>/dev/null || exit 1
fi
# shellcheck disable=SC1091
. "$_pop3d_root/.venv/bin/activate"
export AMENT_PREFIX_PATH="$_pop3d_root/.venv${AMENT_PREFIX_PATH:+:$AMENT_PREFIX_PATH}"
# colcon's setup.sh expects to be sourced from its own directory's perspective.
COLCON_CURRENT_PREFIX="$_pop3d_root/.ws/install" . "$_pop3d_root/.ws/install/setup.sh"
export PATH="$_pop3d_root/.ws/install/pop3d_ros/lib/pop3d_ros:$PATH"
unset _pop3d_root
