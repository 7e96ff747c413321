"""DVC stage `synthesize`: write CitySynth, the embedded dataset, in the official Cityscapes layout.

Writes leftImg8bit/ photos and gtFine/ labelIds, instanceIds, color and polygon files for the
train, val and test splits under --out, as params.yaml's `synthesize` section says.
"""
import click

from citypipe.command_line import params_option, reports_errors, stage_outputs


@click.command(help=__doc__)
@params_option
@click.option("--out", "out_dir", required=True, type=click.Path(file_okay=False), help="The data root (written).")
@reports_errors
def main(params_path: str, out_dir: str) -> None:
    from citypipe.params import load_params
    from citypipe.synth.writer import synthesize

    p = load_params(params_path).synthesize
    with stage_outputs(out_dir, inputs=(params_path,)):
        count = synthesize(out_dir, p.seed, p.height, p.width,
                           {"train": p.train_images, "val": p.val_images, "test": p.test_images},
                           {"train": p.train_cities, "val": p.val_cities, "test": p.test_cities}, p.workers)
    click.echo(f"synthesize: wrote {count} frames to {out_dir}")


if __name__ == "__main__":
    main()
