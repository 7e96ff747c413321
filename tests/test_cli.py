import importlib.metadata
import os
import shutil
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
from click.testing import CliRunner
from PIL import Image

from citypipe.cli import main
from citypipe.data import layout
from citypipe.data.frames import to_rgb8
from citypipe.labels import evaluated_labels


def test_infer_writes_overlay_and_label_ids_for_a_file_and_a_folder(synth_root, trained_checkpoint, tmp_path):
    image = layout.find_samples(synth_root, "val")[0].image
    runner = CliRunner()
    result = runner.invoke(main, ["infer", str(image), "--checkpoint", str(trained_checkpoint),
                                  "--output", str(tmp_path / "overlay.png"), "--mask", "labelids", "--device", "cpu"])
    assert result.exit_code == 0, result.output
    # the overlay is visualize's figure (title and legend, at a readable size); the mask is pixel-aligned
    width, height = Image.open(tmp_path / "overlay.png").size
    assert width >= 800 and height > width * 64 / 128
    mask = np.asarray(Image.open(tmp_path / "overlay_labelIds.png"))
    assert mask.shape == Image.open(image).size[::-1]
    assert set(np.unique(mask)) <= {l.id for l in evaluated_labels()}
    folder = image.parent
    result = runner.invoke(main, ["infer", str(folder), "--checkpoint", str(trained_checkpoint), "--output",
                                  str(tmp_path / "many"), "--size", "32", "64", "--device", "cpu"])
    assert result.exit_code == 0, result.output
    assert len(list((tmp_path / "many").glob("*_overlay.png"))) == len(list(folder.glob("*.png")))


def test_infer_reports_a_missing_checkpoint_in_one_line(tmp_path):
    Image.new("RGB", (8, 8)).save(tmp_path / "a.png")
    result = CliRunner().invoke(main, ["infer", str(tmp_path / "a.png"), "--checkpoint", str(tmp_path / "x.pt"),
                                       "--output", str(tmp_path / "o.png")])
    assert result.exit_code == 1 and "checkpoint not found" in result.output


REPO = Path(__file__).resolve().parents[1]


def _run_cli(*args: str) -> subprocess.CompletedProcess:
    """`citypipe ARGS` in a fresh interpreter; prints the heavy modules it imported on a last line."""
    code = ("import sys\nfrom citypipe.cli import main\ntry:\n    main(sys.argv[1:])\nexcept SystemExit:\n    pass\n"
            "print(sorted(m for m in ('torch', 'numpy', 'pandas', 'dvc', 'PIL') if m in sys.modules))")
    env = {**os.environ, "PYTHONPATH": str(REPO)}
    return subprocess.run([sys.executable, "-c", code, *args], capture_output=True, text=True, env=env, timeout=60)


def test_help_imports_no_torch_and_version_prints_the_package_version():
    result = _run_cli("--help")
    assert "infer" in result.stdout and "profile" in result.stdout
    assert result.stdout.strip().splitlines()[-1] == "[]", result.stdout  # no torch, numpy, pandas, dvc
    result = _run_cli("infer", "--help")
    assert "--scales" in result.stdout and result.stdout.strip().splitlines()[-1] == "[]"
    result = CliRunner().invoke(main, ["--version"])
    assert result.exit_code == 0 and result.output.strip() == f"citypipe {importlib.metadata.version('citypipe')}"


def test_help_lists_every_command_with_a_whole_summary():
    # The last line is _run_cli's list of heavy modules imported, not a command.
    commands = _run_cli("--help").stdout.split("Commands:")[1].strip().splitlines()[:-1]
    assert {line.split()[0] for line in commands} == {"compare", "infer", "profile"}
    assert not [line for line in commands if line.rstrip().endswith("...")]  # click cuts long docstrings


@pytest.mark.parametrize("script", sorted(p.name for p in (REPO / "stages").glob("*.py")))
def test_every_stage_script_says_what_it_reads_and_writes_without_importing_torch(script):
    code = ("import runpy, sys; sys.argv = ['x', '--help']\n"
            "try:\n    runpy.run_path(sys.argv_path, run_name='__main__')\nexcept SystemExit:\n    pass\n"
            "print(sorted(m for m in ('torch', 'numpy', 'pandas', 'dvc') if m in sys.modules))")
    code = code.replace("sys.argv_path", repr(str(REPO / "stages" / script)))
    result = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, cwd=REPO)
    assert result.returncode == 0, result.stderr
    out = result.stdout
    assert out.strip().splitlines()[-1] == "[]", out  # help in well under a second: nothing heavy imported
    assert "DVC stage" in out and ("(written)" in out or "to write" in out), out  # what it does and writes


def test_infer_on_a_split_recurses_into_cities_and_mirrors_them(synth_root, trained_checkpoint, tmp_path):
    out = tmp_path / "out"
    result = CliRunner().invoke(main, ["infer", "--split", "val", "--data-root", str(synth_root), "--checkpoint",
                                       str(trained_checkpoint), "--output", str(out), "--device", "cpu",
                                       "--mask", "trainids"])
    assert result.exit_code == 0, result.output
    images = sorted((synth_root / "leftImg8bit" / "val").rglob("*.png"))
    assert len(images) == 6
    for image in images:
        city = image.parent.name
        assert (out / city / f"{image.stem}_overlay.png").is_file()
        assert (out / city / f"{image.stem}_trainIds.png").is_file()
    # the same folder given as IMAGE: same tree
    result = CliRunner().invoke(main, ["infer", str(synth_root / "leftImg8bit" / "val"), "--checkpoint",
                                       str(trained_checkpoint), "--output", str(tmp_path / "again"), "--device", "cpu"])
    assert result.exit_code == 0, result.output
    assert sorted(p.relative_to(tmp_path / "again") for p in (tmp_path / "again").rglob("*.png")) == \
        sorted(p.relative_to(out) for p in out.rglob("*_overlay.png"))


@pytest.mark.parametrize("options", [
    ["--flip"],
    ["--scales", "0.75,1.0,1.25"],
    ["--scales", "0.75", "--scales", "1.25", "--flip"],
    ["--mode", "slide", "--crop-size", "32", "64", "--stride", "32", "64"],
])
def test_infer_takes_the_evaluate_stage_inference_options(options, synth_root, trained_checkpoint, tmp_path):
    image = layout.find_samples(synth_root, "val")[0].image
    result = CliRunner().invoke(main, ["infer", str(image), "--checkpoint", str(trained_checkpoint), "--output",
                                       str(tmp_path / "o.png"), "--device", "cpu", "--mask", "trainids", *options])
    assert result.exit_code == 0, result.output
    assert Image.open(tmp_path / "o_trainIds.png").size == Image.open(image).size


def test_infer_scales_16_bit_greyscale_to_8_bit(trained_checkpoint, tmp_path):
    ramp = np.tile(np.arange(0, 65536, 512, dtype=np.uint16), (32, 1))  # (32, 128), 0..65024
    Image.fromarray(ramp).save(tmp_path / "grey16.png")
    rgb = np.asarray(to_rgb8(Image.open(tmp_path / "grey16.png")))
    assert rgb.shape == (32, 128, 3) and rgb.dtype == np.uint8
    np.testing.assert_array_equal(rgb[..., 0], (ramp >> 8).astype(np.uint8))
    assert np.array_equal(rgb[..., 0], rgb[..., 2])
    result = CliRunner().invoke(main, ["infer", str(tmp_path / "grey16.png"), "--checkpoint", str(trained_checkpoint),
                                       "--output", str(tmp_path / "o.png"), "--device", "cpu", "--mask", "trainids"])
    assert result.exit_code == 0, result.output
    assert Image.open(tmp_path / "o_trainIds.png").size == (128, 32)


def test_profile_finds_the_project_profiles_wherever_params_points(tmp_path):
    other = tmp_path / "other"
    other.mkdir()
    shutil.copy(REPO / "params.yaml", other / "params.yaml")  # no other/profiles/
    result = CliRunner().invoke(main, ["profile", "cityscapes", "--dry-run", "--params", str(other / "params.yaml")])
    assert result.exit_code == 0, result.output
    assert "train.crop_size" in result.output
    result = CliRunner().invoke(main, ["profile", "nope", "--params", str(other / "params.yaml")])
    assert result.exit_code == 1 and "known: cityscapes" in result.output


@pytest.mark.parametrize("size, mode, scales, warned", [
    ((64, 128), "whole", (1.0,), False), ((128, 256), "whole", (1.0,), False), ((512, 1024), "whole", (1.0,), True),
    ((16, 32), "whole", (1.0,), True), ((64, 128), "whole", (0.25, 1.0), True), ((64, 128), "slide", (1.0,), True),
])
def test_infer_warns_when_the_network_input_is_far_from_the_training_scale(size, mode, scales, warned):
    """train.base_size 64x128; slide mode sees the image itself (here 256x512)."""
    from citypipe.infer import scale_warning
    from citypipe.prediction.inference import InferenceConfig

    config = InferenceConfig(mode, size, size, size, False, scales)
    message = scale_warning(config, {"train": {"base_size": [64, 128]}}, (256, 512))
    assert (message is not None) == warned
    assert scale_warning(config, {}, (256, 512)) is None  # a checkpoint that records no training size


def test_infer_prints_the_scale_warning_in_one_line(synth_root, trained_checkpoint, tmp_path):
    image = layout.find_samples(synth_root, "val")[0].image
    result = subprocess.run([sys.executable, "-m", "citypipe.cli", "infer", str(image), "--checkpoint",
                             str(trained_checkpoint), "--output", str(tmp_path / "o.png"), "--device", "cpu",
                             "--size", "256", "512"], capture_output=True, text=True, env={**os.environ, "PYTHONPATH": str(REPO)})
    assert result.returncode == 0, result.stderr
    warnings = [line for line in result.stderr.splitlines() if line.startswith("warning:")]
    assert len(warnings) == 1 and "far from its training scale 64x128" in warnings[0], result.stderr
