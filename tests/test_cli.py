import numpy as np
from click.testing import CliRunner
from PIL import Image

from citypipe.cli import main
from citypipe.data import layout
from citypipe.labels import evaluated_labels


def test_infer_writes_overlay_and_label_ids_for_a_file_and_a_folder(synth_root, trained_checkpoint, tmp_path):
    image = layout.find_samples(synth_root, "val")[0].image
    runner = CliRunner()
    result = runner.invoke(main, ["infer", str(image), "--checkpoint", str(trained_checkpoint),
                                  "--output", str(tmp_path / "overlay.png"), "--mask", "labelids", "--device", "cpu"])
    assert result.exit_code == 0, result.output
    assert Image.open(tmp_path / "overlay.png").size == Image.open(image).size
    mask = np.asarray(Image.open(tmp_path / "overlay_labelIds.png"))
    assert set(np.unique(mask)) <= {l.id for l in evaluated_labels()}
    folder = image.parent
    result = runner.invoke(main, ["infer", str(folder), "--checkpoint", str(trained_checkpoint), "--output",
                                  str(tmp_path / "many"), "--image-size", "32", "64", "--device", "cpu"])
    assert result.exit_code == 0, result.output
    assert len(list((tmp_path / "many").glob("*_overlay.png"))) == len(list(folder.glob("*.png")))


def test_infer_reports_a_missing_checkpoint_in_one_line(tmp_path):
    Image.new("RGB", (8, 8)).save(tmp_path / "a.png")
    result = CliRunner().invoke(main, ["infer", str(tmp_path / "a.png"), "--checkpoint", str(tmp_path / "x.pt"),
                                       "--output", str(tmp_path / "o.png")])
    assert result.exit_code == 1 and "checkpoint not found" in result.output
