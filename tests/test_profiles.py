import shutil
from pathlib import Path

import pytest
import yaml
from click.testing import CliRunner

from citypipe.cli import main
from citypipe.errors import CitypipeError
from citypipe.params import params_from_dict
from citypipe.profiles import apply_profile, read_profile

REPO = Path(__file__).resolve().parents[1]


def test_cityscapes_profile_gives_valid_params_with_the_full_recipe():
    text, changes = apply_profile((REPO / "params.yaml").read_text(), read_profile(REPO / "profiles" / "cityscapes.yaml"))
    params = params_from_dict(yaml.safe_load(text))
    assert (params.model.backbone, params.model.output_stride, params.model.pretrained) == ("resnet50", 8, "IMAGENET1K_V1")
    assert params.train.crop_size == (512, 1024) and params.train.lr == 0.01 and params.train.min_lr == 1e-4
    assert "train.lr: 0.02 -> 0.01" in changes
    # mmseg's deeplabv3plus_r50b-d8 where the demo differs: its head, loss averaging, resize filter, distortion
    assert (params.model.head_channels, params.model.head_style) == (512, "mmseg")
    assert (params.train.photometric, params.train.resize, params.train.loss_average) == ("mmseg", "bilinear", "all")
    assert apply_profile(text, read_profile(REPO / "profiles" / "cityscapes.yaml"))[1] == []  # idempotent


def test_unknown_keys_and_bad_values_are_refused():
    params_text = (REPO / "params.yaml").read_text()
    with pytest.raises(CitypipeError, match="unknown key train.learning_rate"):
        apply_profile(params_text, {"train": {"learning_rate": 0.1}})
    with pytest.raises(CitypipeError, match="unknown section 'trainer'"):
        apply_profile(params_text, {"trainer": {"lr": 0.1}})
    with pytest.raises(CitypipeError, match="train.lr: expected a value > 0"):
        apply_profile(params_text, {"train": {"lr": -1.0}})


def _project(tmp_path: Path) -> Path:
    shutil.copy(REPO / "params.yaml", tmp_path / "params.yaml")
    shutil.copytree(REPO / "profiles", tmp_path / "profiles")
    return tmp_path / "params.yaml"


def test_cli_writes_params_keeping_comments_and_sets_the_data_root(tmp_path):
    params_file = _project(tmp_path)
    dataset = tmp_path / "datasets" / "cityscapes"
    (dataset / "leftImg8bit").mkdir(parents=True)
    result = CliRunner().invoke(main, ["profile", "cityscapes", "--data-root", str(dataset),
                                       "--params", str(params_file)])
    assert result.exit_code == 0, result.output
    text = params_file.read_text()
    assert "# auxiliary FCN head on layer3" in text and "crop_size:\n  - 512\n  - 1024\n" in text
    assert yaml.safe_load(text)["data"]["root"] == str(dataset)
    result = CliRunner().invoke(main, ["profile", "cityscapes", "--data-root", "datasets/cityscapes",
                                       "--params", str(params_file)])  # relative to the project
    assert result.exit_code == 0, result.output


def test_cli_dry_run_and_errors_leave_params_untouched(tmp_path):
    params_file = _project(tmp_path)
    before = params_file.read_text()
    assert CliRunner().invoke(main, ["profile", "cityscapes", "--dry-run", "--params", str(params_file)]).exit_code == 0
    (tmp_path / "profiles" / "broken.yaml").write_text("train:\n  lr: -0.5\n")
    result = CliRunner().invoke(main, ["profile", "broken", "--params", str(params_file)])
    assert result.exit_code == 1 and "train.lr" in result.output
    result = CliRunner().invoke(main, ["profile", "nope", "--params", str(params_file)])
    assert result.exit_code == 1 and "no such profile (known: broken, cityscapes, demo)" in result.output
    assert params_file.read_text() == before


def _changed_lines(before: str, after: str) -> list[tuple[str, str]]:
    return [(a, b) for a, b in zip(before.splitlines(), after.splitlines()) if a != b] + \
        [("", line) for line in after.splitlines()[len(before.splitlines()):]]


def _first_scalar_key(document: dict) -> tuple[str, object]:
    for section, values in document.items():
        for key, value in values.items():
            if isinstance(value, (int, float)) and not isinstance(value, bool):
                return f"{section}.{key}", value
    raise AssertionError("no numeric key")


@pytest.mark.parametrize("name", ["params.yaml", *sorted(p.name for p in (REPO / "profiles").glob("*.yaml"))])
def test_dvc_exp_run_set_changes_exactly_the_line_it_sets(name, tmp_path):
    """`dvc exp run -S key=value` rewrites params.yaml through DVC's own writer (the reference here):
    a file in its style changes in one line, comments kept."""
    from dvc.utils.hydra import apply_overrides

    source = REPO / name if name == "params.yaml" else REPO / "profiles" / name
    copy = tmp_path / "params.yaml"
    copy.write_text(source.read_text())
    key, value = _first_scalar_key(yaml.safe_load(copy.read_text()))
    apply_overrides(str(copy), [f"{key}={value + 1}"])
    changed = _changed_lines(source.read_text(), copy.read_text())
    assert len(changed) == 1 and changed[0][1].lstrip().startswith(f"{key.split('.')[1]}: {value + 1}"), changed
    assert len(copy.read_text().splitlines()) == len(source.read_text().splitlines())


def test_profile_output_is_in_dvc_style_too(tmp_path):
    from dvc.utils.hydra import apply_overrides

    text, _ = apply_profile((REPO / "params.yaml").read_text(), read_profile(REPO / "profiles" / "cityscapes.yaml"))
    copy = tmp_path / "params.yaml"
    copy.write_text(text)
    apply_overrides(str(copy), ["train.lr=0.5"])
    assert _changed_lines(text, copy.read_text()) == [("  lr: 0.01", "  lr: 0.5")]


def test_the_demo_profile_brings_back_the_committed_params():
    cityscapes, _ = apply_profile((REPO / "params.yaml").read_text(), read_profile(REPO / "profiles" / "cityscapes.yaml"))
    back, changes = apply_profile(cityscapes, read_profile(REPO / "profiles" / "demo.yaml"))
    assert changes and yaml.safe_load(back) == yaml.safe_load((REPO / "params.yaml").read_text())
    assert back == (REPO / "params.yaml").read_text()  # comments and layout too
