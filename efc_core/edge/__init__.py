"""The edge layer: where pixels enter (ROS image decoding, bags) and leave (rendered outputs).

Transport-free (no rclpy) and torch-free, so the ROS node, the bag tools and the rosbag training
dataset share one decoder (``image_decode``), one output renderer (``render``) and one way to read
stamps and open bags (``stamps``, ``bag_io``). ``efc_ros`` only wraps these in messages.
"""
