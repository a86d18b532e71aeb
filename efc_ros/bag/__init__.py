"""Offline rosbag tools: synthetic bags, processing, evaluation reports and live replay.

Bags are read and written with the pure-Python ``rosbags`` library (sqlite3 and MCAP storage),
with the typestore pinned to ROS 2 Humble, so these tools run on machines without ``ros2 bag``.
"""
