import re
from pathlib import Path

import pytest
import yaml

from citypipe.errors import CitypipeError
from citypipe.params import load_params

REPO = Path(__file__).resolve().parents[1]


def test_repo_params_load():
    params = load_params(REPO / "params.yaml")
    assert params.train.crop_size == (64, 128)
    assert params.model.arch in ("deeplabv3", "deeplabv3plus")
    assert params.model.pretrained == "none"  # YAML reads the bare word none as a string, not null
    # the demo keeps its own recipe where mmseg's differs (the profile takes mmseg's: test_profiles.py)
    assert (params.model.head_channels, params.model.head_style) == (256, "torchvision")
    assert (params.train.photometric, params.train.resize, params.train.loss_average) == ("simple", "antialias", "valid")


def _write(tmp_path, mutate):
    raw = yaml.safe_load((REPO / "params.yaml").read_text())
    mutate(raw)
    path = tmp_path / "params.yaml"
    path.write_text(yaml.safe_dump(raw))
    return path


@pytest.mark.parametrize("mutate, message", [
    (lambda r: r["train"].update(learning_rate=0.1), "unknown key train.learning_rate"),
    (lambda r: r["train"].pop("lr"), "missing key train.lr"),
    (lambda r: r["train"].update(lr=-0.1), "train.lr: expected a value > 0"),
    (lambda r: r["model"].update(arch="unet"), "model.arch: expected one of"),
    (lambda r: r["model"].update(output_stride=32), "model.output_stride"),
    (lambda r: r["train"].update(crop_size=[128]), "train.crop_size: expected a list of 2 values"),
    (lambda r: r["train"].update(epochs="ten"), "train.epochs: expected an integer"),
    (lambda r: r["train"].update(flip_prob=1.5), "train.flip_prob: expected a value in [0.0, 1.0]"),
    (lambda r: r.update(extra={}), "unknown section extra"),
    (lambda r: r.pop("device"), "missing section device"),
    (lambda r: r["device"].update(type="tpu"), "device.type"),
    (lambda r: r["model"].update(pretrained=True),
     "model.pretrained: expected one of 'none', 'IMAGENET1K_V1', 'IMAGENET1K_V2', got True"),
    (lambda r: r["model"].update(pretrained=False),
     "model.pretrained: expected one of 'none', 'IMAGENET1K_V1', 'IMAGENET1K_V2', got False"),
    (lambda r: r["model"].update(pretrained=None), "model.pretrained: expected one of"),
    (lambda r: r["model"].update(pretrained="DEFAULT"), "model.pretrained: expected one of"),
    (lambda r: r["train"].update(lr=float("nan")), "train.lr: expected a finite number, got nan"),
    (lambda r: r["train"].update(momentum=float("inf")), "train.momentum: expected a finite number, got inf"),
    (lambda r: r["train"].update(scale_range=[0.5, float("-inf")]), "train.scale_range[1]: expected a finite number"),
    (lambda r: r["model"].update(head_channels=0), "model.head_channels: expected a value > 0, got 0"),
    (lambda r: r["model"].update(head_style="deeplab"), "model.head_style: expected one of 'torchvision', 'mmseg'"),
    (lambda r: r["train"].update(photometric=True), "train.photometric: expected one of 'none', 'simple', 'mmseg', got True"),
    (lambda r: r["train"].update(resize="nearest"), "train.resize: expected one of 'antialias', 'bilinear'"),
    (lambda r: r["train"].update(loss_average="mean"), "train.loss_average: expected one of 'valid', 'all'"),
    (lambda r: r["train"].pop("loss_average"), "missing key train.loss_average"),
    (lambda r: r["inference"].update(mode="slide", crop_size=[64, 128], stride=[64, 129]),
     "inference.stride: expected a value <= inference.crop_size [64, 128] on each axis"),
    # seeds: checked on load, not when their generator is made after the long work
    (lambda r: r["train"].update(seed=-1), "train.seed: expected a seed in [0, 2^63 - 1], got -1"),
    (lambda r: r["evaluate"].update(bootstrap_seed=2 ** 63), "evaluate.bootstrap_seed: expected a seed in [0, 2^63 - 1]"),
    (lambda r: r["synthesize"].update(seed=2 ** 64), "synthesize.seed: expected a seed"),
    (lambda r: r["visualize"].update(seed=-5), "visualize.seed: expected a seed"),
    # names that become path parts
    (lambda r: r["synthesize"].update(train_cities=["aachen", "../../x/escape"]),
     "synthesize.train_cities: expected a plain name (letters, digits, '-'; no '/', '..' or '_'), got '../../x/escape'"),
    (lambda r: r["synthesize"].update(test_cities=[".."]), "synthesize.test_cities: expected a plain name"),
    (lambda r: r["data"].update(cities=["frankfurt", "/etc"]), "data.cities: expected a plain name"),
    (lambda r: r["data"].update(cities=["frank_furt"]), "data.cities: expected a plain name"),
    (lambda r: r["data"].update(root=""), "data.root: expected a folder (not empty), got ''"),
    # test-time scales that round the network input to zero pixels
    (lambda r: r["inference"].update(size=[128, 256], scales=[0.001]),
     "inference.scales: expected scales that keep inference.size [128, 256] at least 1 pixel, got 0.001"),
    (lambda r: r["inference"].update(scales=[1.0, 0.003]), "inference.scales: expected scales that keep"),
])
def test_bad_params_are_rejected_with_the_key_named(tmp_path, mutate, message):
    with pytest.raises(CitypipeError, match=re.escape(message)):
        load_params(_write(tmp_path, mutate))


def test_a_stride_larger_than_the_window_is_fine_outside_slide_mode(tmp_path):
    path = _write(tmp_path, lambda r: r["inference"].update(mode="whole", crop_size=[64, 128], stride=[96, 192]))
    assert load_params(path).inference.stride == (96, 192)


def test_missing_params_file_is_a_clear_error(tmp_path):
    with pytest.raises(CitypipeError, match="file not found"):
        load_params(tmp_path / "nope.yaml")


def test_cli_overrides_are_validated_too(tmp_path):
    with pytest.raises(CitypipeError, match="train.batch_size: expected a value > 0"):
        load_params(REPO / "params.yaml", {"train.batch_size": 0})


def test_an_unreadable_params_file_is_one_line(tmp_path):
    with pytest.raises(CitypipeError, match=r"cannot read \(.*expected the pipeline's params.yaml\)"):
        load_params(tmp_path)  # a folder
    (tmp_path / "binary.yaml").write_bytes(b"\xff\xfe\x00garbage")
    with pytest.raises(CitypipeError, match="binary.yaml: cannot read"):
        load_params(tmp_path / "binary.yaml")


def test_seed_bounds_are_inclusive(tmp_path):
    params = load_params(_write(tmp_path, lambda r: r["train"].update(seed=2 ** 63 - 1)))
    assert params.train.seed == 2 ** 63 - 1
    assert load_params(_write(tmp_path, lambda r: r["train"].update(seed=0))).train.seed == 0


def test_a_scale_that_keeps_one_pixel_is_fine(tmp_path):
    """0.004 x 128 = 0.512 rounds to 1 pixel, as prediction rounds it."""
    params = load_params(_write(tmp_path, lambda r: r["inference"].update(size=[128, 256], scales=[0.004])))
    assert params.inference.scales == (0.004,)


DUPLICATES = [  # (params.yaml with a key given twice, the message)
    (lambda t: t.replace("  lr: 0.02\n", "  lr: 0.02\n  lr: 5.0\n"), "duplicate key 'lr' (first on line {lr})"),
    (lambda t: t + "train:\n  lr: 5.0\n", "duplicate key 'train' (first on line {train})"),
    (lambda t: t.replace("  lr: 0.02\n", "  lr: {h: 1, h: 2}\n"), "duplicate key 'h'"),
]


@pytest.mark.parametrize("mutate, message", DUPLICATES, ids=["key", "section", "flow-mapping"])
def test_duplicate_keys_are_refused_naming_the_key_and_its_lines(tmp_path, mutate, message):
    """PyYAML keeps the last value silently (train.lr 0.02 then 5.0 trained with 5.0) while DVC refuses the file."""
    text = (REPO / "params.yaml").read_text()
    lines = text.splitlines()
    first = {"lr": lines.index("  lr: 0.02") + 1, "train": lines.index("train:") + 1}
    path = tmp_path / "params.yaml"
    path.write_text(mutate(text))
    with pytest.raises(CitypipeError) as error:
        load_params(path)
    assert str(error.value).startswith(f"{path}: not valid YAML (") and message.format(**first) in str(error.value)
    assert "\n" not in str(error.value)


def test_yaml_tags_and_syntax_errors_are_one_line(tmp_path):
    path = tmp_path / "params.yaml"
    for text, message in [("train: !!python/object/apply:os.system [echo]\n", "could not determine a constructor"),
                          ("train: [\n", "at line 2"), ("a: b: c\n", "mapping values are not allowed here at line 1")]:
        path.write_text(text)
        with pytest.raises(CitypipeError, match="not valid YAML") as error:
            load_params(path)
        assert message in str(error.value) and "\n" not in str(error.value)


def test_every_section_records_the_keys_its_readers_read():
    """tests/test_dvc_pipeline.py compares the keys each stage reads with dvc.yaml through _Traced: a section
    that does not record its reads would let a stage read a key it does not depend on unnoticed."""
    import typing

    from citypipe.params import Params, _Traced

    sections = typing.get_type_hints(Params)
    assert sections and all(issubclass(cls, _Traced) for cls in sections.values()), sections
