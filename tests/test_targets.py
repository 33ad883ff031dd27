from __future__ import annotations

import pytest

from edgekd import resources
from edgekd.errors import ConfigError
from edgekd.targets import TargetProfile, load_target


@pytest.mark.parametrize("name", resources.builtin_names("targets"))
def test_every_shipped_target_loads(name):
    target = load_target(name)
    assert target.name == name
    assert target.entry_id.startswith(target.runtime + "/")
    # Printed (edgekd targets) in the YAML shape, each runtime's section a top-level key, and
    # loaded back to the same profile.
    data = target.to_dict()
    assert list(data) == [
        *("name", "runtime", "description", "precision", "device", "threads", "host", "input_shape"),
        *("onnxruntime", "openvino", "torch", "budgets"),
    ]
    assert TargetProfile.from_dict(data) == target


def test_shipped_folders_are_found():
    assert "x86-cpu-onnxruntime-int8" in resources.builtin_names("targets")
    assert "modrec" in resources.builtin_names("recipes")


def test_malformed_profile_names_key_and_reason(tmp_path):
    bad = tmp_path / "t.yaml"
    bad.write_text("name: t\nruntime: onnxruntime\nbudgets:\n  max_p90: 3\n")
    with pytest.raises(ConfigError) as err:
        load_target(bad)
    assert "budgets.max_p90" in err.value.message and "max_p90_ms" in err.value.one_line()
    bad.write_text("name: t\nruntime: tflite\n")
    with pytest.raises(ConfigError, match="runtime must be one of"):
        load_target(bad)
    bad.write_text("name: t\nruntime: onnxruntime\nbudgets:\n  min_accuracy: 85\n")
    with pytest.raises(ConfigError, match="fractions"):
        load_target(bad)


def test_unknown_target_name_lists_builtins():
    with pytest.raises(ConfigError) as err:
        load_target("x86-cpu-onnxruntime-int9")
    assert "did you mean 'x86-cpu-onnxruntime-int8'" in err.value.one_line()


BASE = "name: t\nruntime: onnxruntime\n"
BAD_PROFILES = [
    ("port_0", BASE + "host: ssh://pi@device:0\n", "port 0"),
    ("port_65536", BASE + "host: ssh://pi@device:65536\n", "port 65536"),
    ("port_huge", BASE + "host: ssh://pi@device:999999\n", "not an ssh URL"),
    ("port_text", BASE + "host: ssh://pi@device:http\n", "not an ssh URL"),
    ("host_option", BASE + "host: ssh://-oProxyCommand=touch@x\n", "not an ssh URL"),
    ("host_space", BASE + "host: 'ssh://pi@dev ice'\n", "not an ssh URL"),
    ("host_scheme", BASE + "host: http://device\n", "neither 'local' nor ssh"),
    ("host_empty", BASE + "host: ''\n", "neither 'local' nor ssh"),
    ("threads_negative", BASE + "threads: -1\n", "threads must be in 1..1024"),
    ("threads_zero", BASE + "threads: 0\n", "threads must be in 1..1024"),
    ("threads_huge", BASE + "threads: 100000\n", "threads must be in 1..1024"),
    ("threads_bool", BASE + "threads: true\n", "threads"),
    ("device_unknown", BASE + "device: TPU\n", "not a onnxruntime device"),
    ("device_ov_for_torch", "name: t\nruntime: torch\ndevice: NPU\n", "not a torch device"),
    ("torch_int8", "name: t\nruntime: torch\nprecision: int8\n", "does not run int8"),
    ("tensorrt_bf16", "name: t\nruntime: tensorrt\nprecision: bf16\ndevice: GPU\n", "does not run bf16"),
    ("runtime_typo", "name: t\nruntime: onnxruntim\n", "did you mean 'onnxruntime'"),
    ("sections_key", BASE + "sections: {onnxruntime: {}}\n", "unknown config key 'sections'"),
    ("section_typo", BASE + "onnxruntme: {execution_mode: parallel}\n", "did you mean 'onnxruntime'"),
    ("name_empty", "name: ''\nruntime: onnxruntime\n", "name"),
    ("name_newline", 'name: "a\\nb"\nruntime: onnxruntime\n', "name"),
    ("input_shape_rank1", BASE + "input_shape: [128]\n", "input_shape"),
    ("input_shape_zero", BASE + "input_shape: [1, 0, 128]\n", "input_shape"),
    ("input_shape_negative", BASE + "input_shape: [1, -2, 128]\n", "input_shape"),
    ("input_shape_huge", BASE + "input_shape: [1, 100000, 100000]\n", "input_shape"),
    ("input_shape_float", BASE + "input_shape: [1, 2.5, 128]\n", "input_shape"),
    ("budget_negative_size", BASE + "budgets: {max_size_bytes: -1}\n", "max_size_bytes must be >= 0"),
    ("budget_zero_size", BASE + "budgets: {max_size_bytes: 0}\n", "max_size_bytes is 0"),
    ("budget_negative_p90", BASE + "budgets: {max_p90_ms: -2.0}\n", "max_p90_ms must be >= 0"),
    ("budget_nan_p50", BASE + "budgets: {max_p50_ms: .nan}\n", "finite"),
    ("budget_inf_p90", BASE + "budgets: {max_p90_ms: .inf}\n", "finite"),
    ("budget_nan_text", BASE + "budgets: {max_latency_regression: nan}\n", "finite"),
    ("budget_p50_over_p90", BASE + "budgets: {max_p50_ms: 5.0, max_p90_ms: 2.0}\n", "never exceeds"),
    ("budget_accuracy_percent", BASE + "budgets: {min_accuracy: 90}\n", "fractions"),
    ("budget_accuracy_negative", BASE + "budgets: {min_accuracy: -0.1}\n", "min_accuracy must be >= 0"),
    ("budget_drop_above_1", BASE + "budgets: {max_accuracy_drop: 1.5}\n", "fractions"),
    ("budget_negative_regression", BASE + "budgets: {max_latency_regression: -0.1}\n", ">= 0"),
    ("budget_confidence", BASE + "budgets: {latency_confidence: 1.5}\n", "latency_confidence"),
    ("budget_anchor", BASE + "budgets: {latency_anchor: 'not an id'}\n", "latency_anchor"),
    ("budget_method", BASE + "budgets: {latency_method: fastest}\n", "latency_method"),
    ("ort_inter_threads", BASE + "onnxruntime: {inter_op_threads: 0}\n", "inter_op_threads"),
    ("ov_streams", "name: t\nruntime: openvino\nopenvino: {num_streams: -1}\n", "num_streams"),
]


@pytest.mark.parametrize(
    ("text", "fragment"), [c[1:] for c in BAD_PROFILES], ids=[c[0] for c in BAD_PROFILES]
)
@pytest.mark.parametrize("command", ["targets", "gate"])
def test_a_bad_field_is_refused_by_every_command(tmp_path, command, text, fragment):
    from click.testing import CliRunner

    from edgekd.cli.main import cli

    profile = tmp_path / "bad.yaml"
    profile.write_text(text)
    model = tmp_path / "model.onnx"
    model.write_bytes(b"not read: the profile is refused first")
    argv = (
        ["targets", str(profile)] if command == "targets" else ["gate", str(model), "--target", str(profile)]
    )
    result = CliRunner().invoke(cli, argv)
    assert result.exit_code == 2, result.output
    lines = [line for line in result.stderr.splitlines() if line.strip()]
    assert len(lines) == 1 and lines[0].startswith("edgekd: error: "), result.stderr
    assert str(profile) in lines[0] and fragment in lines[0], lines[0]
    assert "Traceback" not in result.output


def test_valid_hosts_and_devices_load(tmp_path):
    good = tmp_path / "good.yaml"
    for extra in (
        "host: ssh://pi@raspberrypi.local:2222\n",
        "host: 'ssh://[fe80::1]:22'\n",
        "device: cuda\n",
        "budgets: {max_p50_ms: 1.0, max_p90_ms: 1.0, min_accuracy: 0, max_latency_regression: 0}\n",
        "input_shape: [1, 3, 384, 384]\n",
    ):
        good.write_text(BASE + extra)
        load_target(good)
    good.write_text("name: t\nruntime: openvino\ndevice: AUTO:GPU,CPU\n")
    assert load_target(good).device == "AUTO:GPU,CPU"


def test_input_problem_compares_model_inputs():
    from edgekd.targets import TargetProfile

    target = TargetProfile(name="t", runtime="onnxruntime", input_shape=[1, 2, 128])
    assert target.input_problem((None, 2, 128)) is None
    assert target.input_problem((1, 2, 128)) is None
    assert "[?, 3, 32]" in target.input_problem((None, 3, 32))
    assert "batch 4" in target.input_problem((4, 2, 128))
    assert TargetProfile(name="t", runtime="onnxruntime").input_problem((None, 9)) is None
