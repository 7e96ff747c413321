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
    assert "# auxiliary FCN head on layer3" in text and "crop_size: [512, 1024]" in text
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
    assert result.exit_code == 1 and "no such profile (known: broken, cityscapes)" in result.output
    assert params_file.read_text() == before
