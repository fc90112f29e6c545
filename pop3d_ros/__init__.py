"""pop3d_ros: open-vocabulary 3D occupancy (POP-3D) from surround-view cameras.

The core subpackages (geometry, model, text, data, training, export, viz) import no rclpy;
only `pop3d_ros.ros` does.
"""

# The colcon install holds the generated `srv` package; the source tree (pip -e) holds the
# same modules. Merging every `pop3d_ros` directory on sys.path lets both be found.
from pkgutil import extend_path

__path__ = extend_path(__path__, __name__)

__version__ = "0.1.0"
