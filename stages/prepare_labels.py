"""DVC stage `prepare-labels`: the trainId cache, class statistics, class and sample weights.

Reads data.root's gtFine labelIds; writes trainId PNGs for every split (--cache), the train split's
class pixel shares (--class-table), the loss's class weights and the sampler's per-image weights.
With prepare.image_cache, --cache also holds each train frame's decoded image (.npy) for the loader.
"""
import click

from citypipe.command_line import params_option, reports_errors, stage_outputs


@click.command(help=__doc__)
@params_option
@click.option("--data-root", required=True, type=click.Path(file_okay=False),
              help="The dataset in the official layout (read); dvc.yaml passes ${data.root}.")
@click.option("--cache", required=True, type=click.Path(file_okay=False),
              help="trainId PNGs of every split, and decoded train images with prepare.image_cache (written).")
@click.option("--class-table", required=True, type=click.Path(dir_okay=False), help="Class pixel shares, CSV (written).")
@click.option("--class-weights", required=True, type=click.Path(dir_okay=False), help="The loss's class weights (written).")
@click.option("--sample-weights", required=True, type=click.Path(dir_okay=False), help="The sampler's weights (written).")
@reports_errors
def main(params_path: str, data_root: str, cache: str, class_table: str, class_weights: str, sample_weights: str) -> None:
    from citypipe.params import load_params
    from citypipe.prepare.label_cache import prepare_labels
    from citypipe.prepare.outputs import write_prepare_outputs

    params = load_params(params_path, {"data.root": data_root})
    p = params.prepare
    with stage_outputs(cache, class_table, class_weights, sample_weights, inputs=(params_path, params.data.root)):
        results = prepare_labels(params.data.root, cache, params.data.cities, p.workers, image_cache=p.image_cache)
        frame_ids, counts = results["train"]
        write_prepare_outputs(counts, frame_ids, p.class_weighting, p.inverse_log_c, p.sample_weighting,
                              class_table, class_weights, sample_weights)
    frames = f" and {len(frame_ids)} decoded train images" if p.image_cache else ""
    click.echo(f"prepare-labels: {sum(len(ids) for ids, _ in results.values())} label images{frames} -> {cache}")


if __name__ == "__main__":
    main()
