"""efc_core: transport-free library of the EFC (Every Frame Counts) perception stack.

Two tiers:

* the numpy tier (``contract``, ``errors``, ``manifest``, ``pairing``, ``preprocess``,
  ``postprocess``, ``viz``, ``metrics``, ``flow_ops``, ``data.synthetic``, ``data.formats``,
  ``runtime``) imports only numpy and OpenCV and runs on a robot without PyTorch;
* the torch tier (``model``, ``losses``, ``data.datasets``, ``export``) is for training and export.

Nothing here imports rclpy or ROS message packages.
"""

__version__ = "0.1.0"
