"""config/perception.yaml, launch/perception.launch.py and rviz/perception.rviz agree with the node.

The node runs in this process (own rclpy context) and is asked through its real ROS interfaces:
the ``list_parameters`` service and the graph's publishers/subscriptions of the node. The launch
file is checked statically here (``launch_ros`` is not installed) and by running
``generate_launch_description()`` where it is.
"""

from __future__ import annotations

import ast
import importlib.util
import sys
import types

import pytest
import yaml

from efc_core.perceptor_config import BACKEND_KINDS, PERCEPTOR_FIELDS
from efc_ros.node_parameters import PARAMETER_SPECS
from tests.ros.ros_helpers import spin_in_background, REPO_ROOT, RosClient, require_loopback_environment

pytestmark = pytest.mark.ros

CONFIG = REPO_ROOT / "config" / "perception.yaml"
LAUNCH = REPO_ROOT / "launch" / "perception.launch.py"
RVIZ = REPO_ROOT / "rviz" / "perception.rviz"
NAMESPACE = "/efc_cfg"
LAUNCH_ARGUMENTS = {"image_topic", "namespace", "params_file", "backend", "model_path", "use_sim_time", "rviz"}


def _yaml_parameters() -> dict:
    document = yaml.safe_load(CONFIG.read_text())
    assert list(document) == ["/**"] and list(document["/**"]) == ["ros__parameters"]
    return document["/**"]["ros__parameters"]


@pytest.fixture(scope="module")
def node_graph(demo_model):
    """Two nodes in-process (raw and compressed input), started from the YAML file, plus a client."""
    require_loopback_environment()
    import rclpy
    from rclpy.executors import SingleThreadedExecutor
    from rclpy.parameter import Parameter

    from efc_ros.perception_node import PerceptionNode

    context = rclpy.Context()
    rclpy.init(context=context)
    nodes = [
        PerceptionNode(context=context, namespace=f"{NAMESPACE}{suffix}",
                       cli_args=["--ros-args", "--params-file", str(CONFIG)],
                       parameter_overrides=[Parameter("model_path", value=str(demo_model)),
                                            Parameter("use_compressed", value=compressed),
                                            Parameter("num_threads", value=1)])
        for suffix, compressed in (("", False), ("_compressed", True))
    ]
    executor = SingleThreadedExecutor(context=context)
    for node in nodes:
        executor.add_node(node)
    spinner = spin_in_background(executor)
    client = RosClient("efc_cfg_client")
    yield nodes, client
    client.close()
    executor.shutdown()
    spinner.join(5)
    for node in nodes:
        node.destroy_node()
    rclpy.try_shutdown(context=context)


def _topics(client: RosClient, namespace: str, kind: str) -> set[str]:
    query = getattr(client.node, f"get_{kind}_names_and_types_by_node")
    found: set[str] = set()
    client.wait_for(lambda: bool(found.update(name for name, _ in query("efc_perception", namespace)) or found), 10,
                    0.2)
    return found


def test_yaml_has_every_declared_parameter_with_its_default(ros_environment, node_graph):
    nodes, client = node_graph
    declared = client.list_parameters(f"{NAMESPACE}/efc_perception")
    yaml_values = _yaml_parameters()
    ours = {spec.name for spec in PARAMETER_SPECS}
    assert ours <= declared
    # Besides ours the node only has rclpy's own parameters (use_sim_time, and on newer distros
    # start_type_description_service), which the YAML may list but need not.
    assert set(yaml_values) - {"use_sim_time"} == ours
    assert set(yaml_values) <= declared
    for spec in PARAMETER_SPECS:
        assert yaml_values[spec.name] == spec.default and type(yaml_values[spec.name]) is type(spec.default), spec.name


def test_yaml_values_reach_the_node_and_descriptors_carry_ranges(ros_environment, node_graph):
    from rcl_interfaces.srv import DescribeParameters

    nodes, client = node_graph
    assert nodes[0].settings.qos_depth == _yaml_parameters()["qos_depth"]
    names = [spec.name for spec in PARAMETER_SPECS]
    response = client.call_service(DescribeParameters, f"{NAMESPACE}/efc_perception/describe_parameters",
                                   DescribeParameters.Request(names=names), idempotent=True)
    by_name = {descriptor.name: descriptor for descriptor in response.descriptors}
    for spec in PARAMETER_SPECS:
        descriptor = by_name[spec.name]
        assert descriptor.description and descriptor.read_only == spec.read_only, spec.name
        if spec.float_range:
            assert (descriptor.floating_point_range[0].from_value,
                    descriptor.floating_point_range[0].to_value) == spec.float_range
        if spec.int_range:
            assert (descriptor.integer_range[0].from_value, descriptor.integer_range[0].to_value) == spec.int_range


def _launch_tree() -> ast.Module:
    return ast.parse(LAUNCH.read_text())


def _calls(tree: ast.AST, name: str) -> list[ast.Call]:
    return [n for n in ast.walk(tree) if isinstance(n, ast.Call) and getattr(n.func, "id", None) == name]


def test_launch_arguments_and_remappings_reference_real_parameters_and_topics(ros_environment, node_graph):
    nodes, client = node_graph
    tree = _launch_tree()
    arguments = {call.args[0].value: call for call in _calls(tree, "DeclareLaunchArgument")}
    assert set(arguments) >= LAUNCH_ARGUMENTS
    # Every LaunchConfiguration used is declared.
    used = {call.args[0].value for call in _calls(tree, "LaunchConfiguration")}
    assert used <= set(arguments)

    [perception] = [c for c in _calls(tree,
                                      "Node") if any(k.arg == "executable" and k.value.value == "perception_node"
                                                     for k in c.keywords)]
    keywords = {k.arg: k.value for k in perception.keywords}
    assert keywords["name"].value == "efc_perception"
    overrides = next(e for e in keywords["parameters"].elts if isinstance(e, ast.Dict))
    declared = client.list_parameters(f"{NAMESPACE}/efc_perception")
    assert {key.value for key in overrides.keys} <= declared
    remapped = {pair.elts[0].value for pair in keywords["remappings"].elts}
    raw_inputs = _topics(client, NAMESPACE, "subscriber")
    compressed_inputs = _topics(client, f"{NAMESPACE}_compressed", "subscriber")
    assert {f"{NAMESPACE}/image", f"{NAMESPACE}_compressed/image/compressed"} <= raw_inputs | compressed_inputs
    assert {f"{NAMESPACE}/{name}" for name in remapped} <= raw_inputs | {f"{NAMESPACE}/image/compressed"}
    # Files the launch file points at exist and are installed by setup.py.
    setup = (REPO_ROOT / "setup.py").read_text()
    for folder, filename in (("config", "perception.yaml"), ("rviz", "perception.rviz")):
        assert f'"{folder}", "{filename}"' in LAUNCH.read_text()
        assert (REPO_ROOT / folder / filename).is_file() and f'glob("{folder}/*.' in setup


#: What the launch file imports from ``launch`` / ``launch_ros``.
_LAUNCH_MODULES = ("launch", "launch.actions", "launch.conditions", "launch.substitutions", "launch_ros",
                   "launch_ros.actions", "launch_ros.parameter_descriptions", "launch_ros.substitutions")


def _recording_module(name: str) -> types.ModuleType:
    """A module whose every name is a class recording its constructor arguments (``args``, ``kwargs``)."""
    module = types.ModuleType(name)

    def record(self, *args, **kwargs) -> None:
        self.args, self.kwargs = args, kwargs

    module.__getattr__ = lambda attribute: type(attribute, (), {"__init__": record})
    return module


def test_launch_backend_argument_is_the_node_parameter(monkeypatch):
    # launch_ros is not installed here: run the launch file against recording stand-ins, so the
    # arguments it declares (computed from efc_core.perceptor_config, not literals) are checked.
    for name in _LAUNCH_MODULES:
        monkeypatch.setitem(sys.modules, name, _recording_module(name))
    spec = importlib.util.spec_from_file_location("perception_launch_stubbed", LAUNCH)
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    [entities] = module.generate_launch_description().args
    arguments = {e.args[0]: e.kwargs for e in entities if type(e).__name__ == "DeclareLaunchArgument"}
    assert set(arguments) >= LAUNCH_ARGUMENTS
    [backend] = [setting for setting in PERCEPTOR_FIELDS if setting.ros_name == "backend"]
    assert tuple(arguments["backend"]["choices"]) == BACKEND_KINDS == backend.choices
    assert arguments["backend"]["default_value"] == backend.default == "onnxruntime"
    assert arguments["backend"]["description"] == backend.description


def test_rviz_displays_show_the_node_topics_best_effort(ros_environment, node_graph):
    nodes, client = node_graph
    config = yaml.safe_load(RVIZ.read_text())
    displays = config["Visualization Manager"]["Displays"]
    publishers = _topics(client, NAMESPACE, "publisher")
    topics = set()
    for display in displays:
        assert display["Class"] == "rviz_default_plugins/Image"
        assert display["Topic"]["Reliability Policy"] == "Best Effort"
        topic = display["Topic"]["Value"]
        assert not topic.startswith("/"), "relative names: rviz2 runs in the node's namespace"
        topics.add(topic)
        if topic != "image":  # the camera, remapped like the node's input
            assert f"{NAMESPACE}/{topic}" in publishers, topic
    colour_outputs = {"segmentation/color", "flow/color", "overlay", "occlusion"}
    assert colour_outputs | {"image"} <= topics


def test_generate_launch_description_where_launch_ros_is_installed():
    pytest.importorskip("launch_ros", reason="launch_ros is not installed here (docs/ENVIRONMENT.md)")
    import importlib.util

    from launch.actions import DeclareLaunchArgument

    spec = importlib.util.spec_from_file_location("perception_launch", LAUNCH)
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    description = module.generate_launch_description()
    names = {entity.name for entity in description.entities if isinstance(entity, DeclareLaunchArgument)}
    assert names >= LAUNCH_ARGUMENTS
