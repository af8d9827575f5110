"""Where in the face the detector looks: gradient saliency maps (Simonyan et al., 2014).

    python saliency_map.py -m SimpleNet -d demo_fakes -o AdamW

Writes ``figures/{dataset}_{model}_{optimizer}_saliency_maps_and_images_pairs.png`` (36 test images, half
real and half fake, drawn with ``--seed``, beside their maps) and
``..._mean_saliency_maps.png`` (mean normalized map of the real and of the fake test images),
and prints how well the maps of fakes hit their ground-truth masks when the split has them.
"""
import sys

from fakedetect.analysis.common import load_run_model, load_split
from fakedetect.analysis.saliency_figures import saliency_analysis
from fakedetect.cli.analysis_common import add_run_arguments, exits_on_error, parse_args
from fakedetect.cli.common import ArgumentParser
from fakedetect.explain.scores import format_scores_table, summarize_scores
from fakedetect.io.runs import operating_threshold


@exits_on_error
def main(argv=None):
    parser = ArgumentParser(description=__doc__)
    args = parse_args(add_run_arguments(parser), argv)
    model, checkpoint = load_run_model(args)
    _, result = saliency_analysis(model, checkpoint["normalization"], load_split(args), args,
                                  operating_threshold(checkpoint))
    if result["scores"]["map"]:
        print("\nsaliency maps of fakes against their manipulation masks:")
        print(format_scores_table(summarize_scores(result["scores"], "saliency")))
    return 0


if __name__ == "__main__":
    sys.exit(main())
