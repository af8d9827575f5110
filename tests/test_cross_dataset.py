"""cross_dataset.py: one table of a run on its own dataset and on others."""
import json

import pytest

from fakedetect.cli import cross_dataset, numerical_analysis
from fakedetect.data import demo as demo_data

from conftest import TINY_SPLITS


@pytest.fixture(scope="module")
def tiny_synthetic(tmp_path_factory):
    return demo_data.write_dataset(tmp_path_factory.mktemp("data") / "tiny_synthetic", "demo_synthetic", TINY_SPLITS,
                                   workers=1, progress=False)


def test_one_table_holds_the_in_domain_and_the_cross_dataset_rows(tiny_run, tiny_synthetic, tmp_path, capsys):
    flags = ["-d", str(tiny_run["dataset"]), "-o", "Adam", "--out-dir", str(tiny_run["out_dir"]),
             "--checkpoint-dir", str(tiny_run["checkpoint_dir"]), "--device", "cpu", "--figures-dir", str(tmp_path)]
    assert cross_dataset.main(flags + ["--eval-dataset", str(tiny_synthetic)]) == 0
    table = (tmp_path / "tiny_fakes_SimpleNet_Adam_cross_dataset.md").read_text().splitlines()
    assert table[0].startswith("| evaluated on (test) | | images (real / fake) | AUC | AP | EER |")
    assert table[2].startswith("| tiny_fakes | in-domain | 12 (6 / 6) |")
    assert table[3].startswith("| tiny_synthetic | cross-dataset | 12 (6 / 6) |")
    results = json.loads((tmp_path / "tiny_fakes_SimpleNet_Adam_cross_dataset.json").read_text())["results"]
    assert [row["dataset"] for row in results] == ["tiny_fakes", "tiny_synthetic"]
    for row, dataset in zip(results, (tiny_run["dataset"], tiny_synthetic)):  # the same numbers as one evaluation
        assert numerical_analysis.main(flags + ["--eval-dataset", str(dataset)]) == 0
        name = "" if dataset == tiny_run["dataset"] else f"_on_{dataset.name}"
        alone = json.loads((tmp_path / f"tiny_fakes_SimpleNet_Adam{name}_metrics.json").read_text())
        assert (row["auc"], row["average_precision"], row["eer"], row["accuracy"]) == (
            alone["auc"], alone["average_precision"], alone["eer"], alone["accuracy"])
    assert "| tiny_synthetic | cross-dataset |" in capsys.readouterr().out
