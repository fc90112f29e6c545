"""The occupancy node as a managed (lifecycle) node: `occupancy_node --lifecycle`.

Transitions (lifecycle_msgs/srv/ChangeState on `<node>/change_state`, what `ros2 lifecycle
set`, launch_ros's `ChangeState` event and Nav2's lifecycle_manager call):
- configure: reads and validates the parameters, sets up publishers, the query service and
  diagnostics, and loads the model, waiting for it. Bad parameters or a model that does not
  load fail the transition with the reason in the log; the node stays unconfigured.
- activate: subscribes the cameras; camera sets and queries run.
- deactivate: no camera subscription, no inference (queries are refused with the reason).
- cleanup: frees the model and everything configure made.
- shutdown: the same, from any state.
There is no bond (`bond` has no Python implementation for rclpy): a lifecycle manager
started with `bond_timeout: 0.0` manages the node without one (README).
"""

from __future__ import annotations

from rclpy.lifecycle import LifecycleNode, LifecycleState, TransitionCallbackReturn

from pop3d_ros.geometry.rig import RigError
from pop3d_ros.ros.node_core import NODE_NAME, OccupancyCore
from pop3d_ros.ros.params import read


class LifecycleOccupancyNode(OccupancyCore, LifecycleNode):
    managed = True

    def __init__(self, **kwargs):
        LifecycleNode.__init__(self, NODE_NAME, **kwargs)
        self._init_core()

    def on_configure(self, state: LifecycleState) -> TransitionCallbackReturn:
        try:
            self.configure(read(self), wait_for_model=True)
        except (ValueError, RigError) as exc:
            self.log.error(f"configure failed: {exc}")
            return TransitionCallbackReturn.FAILURE
        self.log.info("configured")
        return TransitionCallbackReturn.SUCCESS

    def on_activate(self, state: LifecycleState) -> TransitionCallbackReturn:
        self.activate()
        self.log.info("active")
        return TransitionCallbackReturn.SUCCESS

    def on_deactivate(self, state: LifecycleState) -> TransitionCallbackReturn:
        self.deactivate()
        self.log.info("inactive")
        return TransitionCallbackReturn.SUCCESS

    def on_cleanup(self, state: LifecycleState) -> TransitionCallbackReturn:
        self.cleanup()
        self.log.info("cleaned up")
        return TransitionCallbackReturn.SUCCESS

    def on_shutdown(self, state: LifecycleState) -> TransitionCallbackReturn:
        self.cleanup()
        self.state = "finalized"
        self.log.info(f"shut down from {state.label}")
        return TransitionCallbackReturn.SUCCESS

    def on_error(self, state: LifecycleState) -> TransitionCallbackReturn:
        self.cleanup()
        return TransitionCallbackReturn.SUCCESS
