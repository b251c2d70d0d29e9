import copy

import polars as pl
import pytest
import yaml
from conftest import IMPORT_CONFIG, REPO

from prompt_reliability.base.config import ConfigError, check_config, evaluation_pairs, needed_datasets, validate_config
from prompt_reliability.data.matrix import MatrixError, assemble_matrix, split_rows

SCHEMA = str(REPO / "workflow/schemas/config.schema.yaml")


def long_cache(ids, prompts, value=0.5):
    return pl.DataFrame({"sample_id": [s for s in ids for _ in prompts], "prompt_id": list(prompts) * len(ids),
                         "p_unsafe": [value] * (len(ids) * len(prompts))})


def test_matrix_keeps_manifest_order_and_registry_columns():
    manifest = pl.DataFrame({"sample_id": ["b", "a"], "split": ["test", "test"], "label": [1, 0]})
    matrix = assemble_matrix(manifest, [long_cache(["a", "b"], ["A2", "A1"]), long_cache(["b", "a"], ["B1"], 0.25)], ["A1", "A2", "B1"])
    assert matrix.columns == ["sample_id", "split", "label", "A1", "A2", "B1"]
    assert matrix["sample_id"].to_list() == ["b", "a"]
    assert matrix["B1"].to_list() == [0.25, 0.25]


def test_matrix_rejects_gaps_and_missing_prompts():
    manifest = pl.DataFrame({"sample_id": ["a", "b"], "split": ["test", "test"], "label": [1, 0]})
    with pytest.raises(MatrixError, match=r"sample 'b' has no score for prompt 'A1'"):
        assemble_matrix(manifest, [long_cache(["a"], ["A1"])], ["A1"], source="x")
    with pytest.raises(MatrixError, match=r"prompts \['B1'\] have no scores"):
        assemble_matrix(manifest, [long_cache(["a", "b"], ["A1"])], ["A1", "B1"])
    with pytest.raises(MatrixError, match="no samples in split 'train'"):
        split_rows(manifest, "train")


def validated(config):
    config = copy.deepcopy(config)
    validate_config(config, SCHEMA)
    return config


def test_schema_fills_defaults():
    config = validated(IMPORT_CONFIG)
    assert config["analysis"]["ece_bins"] == 15 and config["analysis"]["seed"] == 42
    assert config["lock"]["split"] == "train"
    assert config["prompt_format"]["with_query"] == "{template}\nQuery: {query}"
    assert evaluation_pairs(config) == [("ds_a", "test"), ("ds_b", "test")]
    assert needed_datasets(config) == ["ds_a", "ds_b"]


def test_embedded_default_config_is_valid():
    config = validated(yaml.safe_load((REPO / "config.yaml").read_text()))
    check_config(config)


@pytest.mark.parametrize(
    "change, message",
    [
        (lambda c: c["evaluate"].append({"dataset": "nope"}), r"'evaluate\[2\].dataset' is 'nope'"),
        (lambda c: c["models"]["m1"]["scores"].pop("ds_b"), r"'models.m1.scores' has no score file for dataset\(s\) \['ds_b'\]"),
        (lambda c: c["models"].update(h={"backend": "hf"}), r"'models.h.path' is missing"),
        (lambda c: c.update(prompts=["A", "all"]), r"'prompts' lists a family named 'all'"),
    ],
)
def test_cross_reference_errors_name_the_key(change, message):
    config = copy.deepcopy(IMPORT_CONFIG)
    change(config)
    with pytest.raises(ConfigError, match=message):
        check_config(validated(config))
