"""efc_ros: the ROS 2 side of the EFC perception stack.

The rclpy perception node and its message conversions, the ``efc`` command-line tool (export,
TensorRT engine build, backend verification, benchmarks) and the rosbag tools. It imports only the
numpy tier of ``efc_core``; torch and TensorRT are imported lazily by the commands that need them.
"""
