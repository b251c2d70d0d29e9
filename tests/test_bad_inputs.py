"""Bad-input catalogue (issue 13, point 5): every case fails with a short message naming the key,
file or row and the fix, before anything downstream is written.

Most cases are unit tests of the check functions the workflow calls (``validate_config`` and
``check_config`` at parse time, ``check_manifest`` before scoring, the dataset adapters); two are
Snakemake runs showing that nothing is written. Import score-file cases live in test_backends.py
(``test_import_jsonl_validation_names_file_and_line``, ``test_import_parquet_...``).
"""

from __future__ import annotations

import copy
import re
from pathlib import Path

import polars as pl
import pytest
import yaml
from conftest import REPO, run_snakemake, validated_dataset, write_config

from prompt_reliability.base.config import ConfigError, check_config, validate_config
from prompt_reliability.data.datasets import DatasetError, local_manifest
from prompt_reliability.data.manifest_checks import check_manifest, manifest_requirements
from prompt_reliability.data.prompts import load_registry

SCHEMA = REPO / "workflow/schemas/config.schema.yaml"
DEFAULT = yaml.safe_load((REPO / "config.yaml").read_text())
REGISTRY = load_registry(REPO / "prompts", ["A", "B", "C"])


def checked(config):
    config = copy.deepcopy(config)
    validate_config(config, SCHEMA)
    check_config(config, REGISTRY)
    return config


def changed(change):
    config = copy.deepcopy(DEFAULT)
    change(config)
    return config


CONFIG_CASES = {
    "analysis_typo": (lambda c: c["analysis"].update(ece_bin=10),
                      r"^config key 'analysis.ece_bin' is not a known key; did you mean 'ece_bins'\?$"),
    "model_typo_simulate": (lambda c: c["models"]["sim"].update(simulte={"seed": 1}),
                            r"'models.sim.simulte' is not a known key; did you mean 'simulate'\?"),
    "model_typo_dtype": (lambda c: c["models"]["tiny-llava"].update(dtyp="float32"),
                         r"'models.tiny-llava.dtyp' is not a known key; did you mean 'dtype'\?"),
    "model_typo_batch_size": (lambda c: c["models"]["tiny-llava"].update(batchsize=4),
                              r"'models.tiny-llava.batchsize' is not a known key; did you mean 'batch_size'\?"),
    "top_level_typo": (lambda c: c.update(modles={}), r"^config key 'modles' is not a known key; did you mean 'models'\?$"),
    "dataset_typo": (lambda c: c["datasets"]["synth"].update(adaptr="local"),
                     r"'datasets.synth.adaptr' is not a known key; did you mean 'adapter'\?"),
    "selective_typo": (lambda c: c["analysis"].update(selective={"coverge": [0.5, 1.0]}),
                       r"'analysis.selective.coverge' is not a known key; did you mean 'coverage'\?"),
    "prompt_format_without_template": (lambda c: c.update(prompt_format={"with_query": "Query: {query}"}),
                                       r"'prompt_format.with_query' lacks \{template\}: every prompt would be the same"),
    "prompt_format_unknown_placeholder": (lambda c: c.update(prompt_format={"with_query": "{template} {question}"}),
                                          r"'prompt_format.with_query' has the placeholder \{question\}; only \{template\}, \{query\}"),
    "prompt_format_query_without_query": (lambda c: c.update(prompt_format={"without_query": "{template} {query}"}),
                                          r"'prompt_format.without_query' has the placeholder \{query\}; only \{template\}"),
    "prompt_format_unbalanced_brace": (lambda c: c.update(prompt_format={"with_query": "{template"}),
                                       r"'prompt_format.with_query' is not a valid format string"),
    "model_labels_not_in_templates": (lambda c: c["models"]["tiny-llava"].update(labels={"unsafe": "A", "safe": "B"}),
                                      r"'models.tiny-llava.labels.unsafe' is 'A', but template 'A1' never asks for it"),
    "model_labels_identical": (lambda c: c["models"]["tiny-llava"].update(labels={"safe": "U"}),
                               r"'models.tiny-llava.labels' reads 'U' for both unsafe and safe; give two different"),
    "lock_split_evaluated": (lambda c: c["evaluate"].append({"dataset": "synth", "split": "train"}),
                             r"'evaluate\[1\]' evaluates on the lock split synth/train.*allow_lock_split: true"),
    "ece_bins_too_many": (lambda c: c["analysis"].update(ece_bins=100000), r"'analysis.ece_bins' is 100000; it must be <= 100"),
    "ece_variant_bins_too_many": (lambda c: c["analysis"].update(ece_variants=[{"bins": 5000, "strategy": "width"}]),
                                  r"'analysis.ece_variants\[0\].bins' is 5000; it must be <= 100"),
    "mistyped_local_model_folder": (lambda c: c["models"].update(real={"backend": "hf", "path": "./models/qwen2-vl-2b"}),
                                    r"'models.real.path' is './models/qwen2-vl-2b': no such local folder"),
    "hf_key_on_simulate_model": (lambda c: c["models"]["sim"].update(dtype="float32"),
                                 r"'models.sim.dtype' applies to backend 'hf' only, but model 'sim' has backend 'simulate'"),
    "bad_enum": (lambda c: c["models"]["tiny-llava"].update(dtype="fp16"),
                 r"'models.tiny-llava.dtype' is 'fp16'; use one of \['auto', 'float32', 'bfloat16', 'float16'\]"),
    "lock_dataset_typo": (lambda c: c["lock"].update(dataset="synht"), r"'lock.dataset' is 'synht'.*did you mean 'synth'\?"),
    "temperature_bounds_reversed": (lambda c: c["analysis"].update(temperature_bounds=[10, 1]),
                                    r"'analysis.temperature_bounds' is \[10, 1\]; it needs \[low, high\] with low < high"),
    "selective_target_off_grid": (lambda c: c["analysis"].update(selective={"targets": ["error@33"]}),
                                  r"'analysis.selective.targets' names 'error@33', but coverage 0.33 is not in"),
    "gpu_model_without_gpus": (lambda c: c["models"]["sim"].update(resources={"gpu_model": "a100"}),
                               r"'models.sim.resources.gpu_model' is 'a100' but 'models.sim.resources.gpus' is 0"),
    "split_size_zero": (lambda c: c["datasets"]["synth"]["splits"]["train"].update(n=0),
                        r"'datasets.synth.splits.train.n' is 0; it must be >= 1"),
    "model_name_path_traversal": (lambda c: c["models"].update({"../evil": {"backend": "simulate"}}),
                                  r"config key 'models': '../evil' does not match the allowed pattern"),
    "dataset_name_path_traversal": (lambda c: c["datasets"].update({"a/../../b": {"adapter": "synthetic"}}),
                                    r"config key 'datasets': 'a/../../b' does not match the allowed pattern"),
    "sizes_for_a_local_dataset": (lambda c: c["datasets"].update(mine={"adapter": "local", "path": "x.csv",
                                                                        "splits": {"test": {"n": 3}}}) or
                                  c["evaluate"].append({"dataset": "mine"}),
                                  r"'datasets.mine.splits' maps split names to sizes, which only adapter 'synthetic' reads"),
}


@pytest.mark.parametrize("case", list(CONFIG_CASES))
def test_config_mistakes_get_one_short_line(case):
    change, message = CONFIG_CASES[case]
    with pytest.raises(ConfigError) as caught:
        checked(changed(change))
    text = str(caught.value)
    assert re.search(message, text), text
    assert "\n" not in text and len(text) < 400, text  # one line, not a schema dump


def test_the_embedded_default_and_the_paper_config_pass():
    checked(DEFAULT)
    paper = yaml.safe_load((REPO / "config/paper.yaml").read_text())
    validate_config(paper, SCHEMA)
    check_config(paper, REGISTRY)


def test_lock_split_may_be_evaluated_when_asked():
    checked(changed(lambda c: c["evaluate"].append({"dataset": "synth", "split": "train", "allow_lock_split": True})))


def test_trust_remote_code_is_off_unless_the_model_opts_in():
    config = checked(DEFAULT)
    assert config["models"]["tiny-llava"]["trust_remote_code"] is False
    opted = checked(changed(lambda c: c["models"]["tiny-llava"].update(trust_remote_code=True)))
    assert opted["models"]["tiny-llava"]["trust_remote_code"] is True



def test_the_loader_passes_trust_remote_code_only_when_opted_in(monkeypatch):
    transformers = pytest.importorskip("transformers")
    from prompt_reliability.scoring.backends import hf

    seen = []

    class Fake:
        def eval(self):
            return self

    def record(path, **kwargs):
        seen.append(kwargs["trust_remote_code"])
        return Fake()

    monkeypatch.setattr(transformers.AutoProcessor, "from_pretrained", record)
    monkeypatch.setattr(transformers.AutoModelForImageTextToText, "from_pretrained", record)
    for opt_in in (None, True):
        config = changed(lambda c, opt_in=opt_in: c["models"]["tiny-llava"].update({} if opt_in is None else {"trust_remote_code": True}))
        cfg = checked(config)["models"]["tiny-llava"]
        hf.load_model("tiny-llava", hf.hf_settings("tiny-llava", {**cfg, "path": "results/models/tiny-llava"}))
    assert seen == [False, False, True, True]


# --- manifest checks (rule check_manifest, before any score) -------------------------------------


def manifest(splits: dict[str, list[int]], images: list[str] | None = None) -> pl.DataFrame:
    rows = [(f"{split}-{i}", split, label) for split, labels in splits.items() for i, label in enumerate(labels)]
    n = len(rows)
    return pl.DataFrame({"sample_id": [r[0] for r in rows], "split": [r[1] for r in rows],
                         "label": pl.Series([r[2] for r in rows], dtype=pl.Int8), "query": [""] * n,
                         "image_path": images or [""] * n, "category": pl.Series([None] * n, dtype=pl.Utf8)})


def requirements(**changes):
    config = checked(changed(lambda c: [c["models"].pop("tiny-llava"), c["models"].pop("tiny-qwen2-vl")]))
    for key, value in changes.items():
        config[key] = value
    return manifest_requirements(config, "synth")


def test_manifest_missing_evaluation_split_names_the_key_and_nearest_split():
    with pytest.raises(DatasetError, match=r"split 'test' \(config key 'evaluate\[0\].split'\) has no samples; the manifest "
                                           r"has splits \['train', 'tests'\]\. did you mean 'tests'\?"):
        check_manifest(manifest({"train": [0, 1], "tests": [0, 1]}), "synth", requirements())


def test_manifest_lock_split_with_one_class():
    with pytest.raises(DatasetError, match=r"split 'train' \(config key 'lock.split'\) holds only safe samples \(3\), but the "
                                           r"prompt is selected and calibrators are fit on it"):
        check_manifest(manifest({"train": [0, 0, 0], "test": [0, 1]}), "synth", requirements())


def test_manifest_evaluation_split_with_one_class_under_reweighting_only():
    data = manifest({"train": [0, 1], "test": [1, 1]})
    with pytest.raises(DatasetError, match=r"split 'test' \(config key 'evaluate\[0\].split'\) holds only unsafe samples.*"
                                           r"analysis.bootstrap.prevalences reweights it"):
        check_manifest(data, "synth", requirements())
    native = checked(changed(lambda c: [c["analysis"].update(bootstrap={"prevalences": ["native"]}),
                                        c["models"].pop("tiny-llava"), c["models"].pop("tiny-qwen2-vl")]))
    assert check_manifest(data, "synth", manifest_requirements(native, "synth"))["splits"]["test"] == {"n": 2, "unsafe": 2, "safe": 0}


def test_manifest_images_must_open(tmp_path):
    from PIL import Image

    good = tmp_path / "good.png"
    Image.new("RGB", (8, 8)).save(good)
    bad = tmp_path / "bad.png"
    bad.write_bytes(b"not a png")
    need = manifest_requirements(checked(DEFAULT), "synth")
    assert need["images"]
    with pytest.raises(DatasetError, match=r"sample 'test-1': image '.*bad.png' does not open"):
        check_manifest(manifest({"train": [0, 1], "test": [0, 1]}, [str(good)] * 3 + [str(bad)]), "synth", need)
    with pytest.raises(DatasetError, match=r"sample 'train-0': no image, but a model with backend 'hf' scores images"):
        check_manifest(manifest({"train": [0, 1], "test": [0, 1]}), "synth", need)


# --- dataset files --------------------------------------------------------------------------------


def local(tmp_path, text, suffix=".csv", **cfg):
    path = tmp_path / f"data{suffix}"
    path.write_text(text)
    return local_manifest("mine", validated_dataset({"adapter": "local", "path": str(path), **cfg}), tmp_path / "images")


@pytest.fixture
def image(tmp_path):
    from PIL import Image

    Image.new("RGB", (8, 8)).save(tmp_path / "a.png")
    return "a.png"


def test_column_map_naming_a_missing_column(tmp_path, image):
    with pytest.raises(DatasetError, match=r"config key 'datasets.mine.columns.query' names column 'txt', which .* does not "
                                           r"have \(columns: \['image', 'label', 'text'\]\); did you mean 'text'\?"):
        local(tmp_path, f"image,label,text\n{image},1,hello\n", columns={"query": "txt"})


def test_split_column_typo_is_named_not_blamed_on_lock_split(tmp_path, image):
    with pytest.raises(DatasetError, match=r"'datasets.mine.columns.split' names column 'splt'.*did you mean 'split'\?"):
        local(tmp_path, f"image,label,split\n{image},1,train\n", columns={"split": "splt"})


def test_header_only_csv(tmp_path):
    with pytest.raises(DatasetError, match=r"dataset 'mine': '.*data.csv' has no rows \(only a header, or empty\)"):
        local(tmp_path, "image,label\n")


def test_zero_byte_csv_names_the_file_and_the_fix(tmp_path):
    with pytest.raises(DatasetError, match=r"dataset 'mine': '.*data.csv' is empty \(0 bytes\); write a header and one row "
                                           r"per sample into it, or point 'datasets.mine.path' at the right file"):
        local(tmp_path, "")


def test_semicolon_separated_csv_gets_a_hint(tmp_path, image):
    with pytest.raises(DatasetError, match=r"no column 'label' .* read as one column because its fields are separated by "
                                           r"semicolons, not commas: save it comma-separated .*'datasets.mine.columns.label"):
        local(tmp_path, f"id;image;label\nx;{image};1\n")


def test_label_yes_is_not_silently_unsafe(tmp_path, image):
    with pytest.raises(DatasetError, match=r"label values \['no', 'yes'\] are neither unsafe \['1', 'true', 'unsafe'\] "
                                           r"nor safe \['0', 'false', 'safe'\]; set 'labels: "):
        local(tmp_path, f"image,label\n{image},yes\n{image},no\n")
    assert local(tmp_path, f"image,label\n{image},yes\n{image},no\n",
                 labels={"unsafe": ["yes"], "safe": ["no"]})["label"].to_list() == [1, 0]
    assert local(tmp_path, f"image,label\n{image},SSU\n{image},UUS\n", labels={"last_char": True})["label"].to_list() == [1, 0]


def test_missing_label_cell_names_its_row(tmp_path, image):
    with pytest.raises(DatasetError, match=r"row 1 \(0-based, header not counted\) has no label"):
        local(tmp_path, f'{{"image": "{image}", "label": 1}}\n{{"image": "{image}", "label": null}}\n', suffix=".jsonl")


def test_image_folder_metadata_without_file_name(tmp_path):
    from PIL import Image

    folder = tmp_path / "imgs"
    folder.mkdir()
    Image.new("RGB", (8, 8)).save(folder / "a.png")
    (folder / "metadata.csv").write_text("image,label\na.png,1\n")
    with pytest.raises(DatasetError, match=r"metadata file .* without a 'file_name' column"):
        local_manifest("mine", validated_dataset({"adapter": "local", "path": str(folder)}), tmp_path / "images")


def test_sample_ids_cannot_write_outside_the_image_folder():
    from prompt_reliability.data.datasets import _safe_filename

    for sample_id in ("../../etc/passwd", "/abs/path", "a/../../b", "..", "x\\..\\y"):
        name = _safe_filename(sample_id)
        assert "/" not in name and "\\" not in name and Path(name).name == name


# --- security: no pickle anywhere -----------------------------------------------------------------


def test_no_pickle_is_read_or_written_anywhere():
    pattern = re.compile(r"\bimport pickle\b|\bpickle\.|\bjoblib\b|\bcloudpickle\b|np\.load\([^)]*allow_pickle=True"
                         r"|torch\.load\((?![^)]*weights_only=True)")
    offenders = []
    for root in ("src", "workflow"):
        for path in (REPO / root).rglob("*"):
            if path.suffix in (".py", ".smk") or path.name == "Snakefile":
                for number, line in enumerate(path.read_text().splitlines(), 1):
                    if pattern.search(line):
                        offenders.append(f"{path.relative_to(REPO)}:{number}: {line.strip()}")
    assert not offenders, offenders


# --- through Snakemake: nothing written -----------------------------------------------------------

SMALL = {
    "datasets": {"synth": {"adapter": "synthetic", "images": False,
                           "splits": {"train": {"n": 12, "unsafe_rate": 0.0}, "test": {"n": 12}}}},
    "models": {"sim": {"backend": "simulate"}},
    "lock": {"dataset": "synth", "split": "train"},
    "evaluate": [{"dataset": "synth", "split": "test"}],
}


@pytest.mark.workflow
def test_config_typo_stops_the_run_with_one_line_and_writes_nothing(tmp_path):
    config = copy.deepcopy(SMALL)
    config["analysis"] = {"ece_bin": 10}
    write_config(tmp_path, config)
    result = run_snakemake(tmp_path, "--configfile", str(tmp_path / "config.yaml"), "--cores", "1", check=False)
    output = result.stdout + result.stderr
    assert result.returncode != 0
    line = next(text for text in output.splitlines() if "ece_bin" in text)
    print(line)
    assert "config key 'analysis.ece_bin' is not a known key; did you mean 'ece_bins'?" in line
    assert len(output.splitlines()) < 30  # no schema dump
    assert not (tmp_path / "results").exists()


@pytest.mark.workflow
def test_lock_split_with_one_class_stops_before_any_score(tmp_path):
    write_config(tmp_path, SMALL)
    result = run_snakemake(tmp_path, "--configfile", str(tmp_path / "config.yaml"), "--cores", "1", check=False)
    output = result.stdout + result.stderr
    assert result.returncode != 0
    log = (tmp_path / "results/logs/checks/synth.log").read_text()
    print(log.splitlines()[-1] if log else output[-500:])
    assert "split 'train' (config key 'lock.split') holds only safe samples (12)" in output + log
    assert (tmp_path / "results/data/synth.parquet").exists()
    assert not (tmp_path / "results/checks/synth.json").exists()
    assert not (tmp_path / "results/scores").exists()


def test_warnings_reach_the_console_as_well_as_the_log(tmp_path, capfd):
    import logging

    from prompt_reliability.base.logs import job_log

    with job_log(tmp_path / "job.log", console_prefix="[job] "):
        logging.getLogger("prompt_reliability.analysis.calibration").warning("temperature scaling: T = 100 lies at a bound")
        logging.getLogger("prompt_reliability").info("routine detail")
    console = capfd.readouterr().err
    assert "WARNING" in console and "lies at a bound" in console and "[job]" in console
    assert "routine detail" not in console
    assert "lies at a bound" in (tmp_path / "job.log").read_text()


def test_every_mapping_in_the_schema_is_closed():
    """Each object with named keys rejects unknown ones (additionalProperties false or a schema for map values)."""
    schema = yaml.safe_load(SCHEMA.read_text())
    # closed elsewhere: hf_model's keys are listed (and closed) in definitions.model; the if/then
    # branches only add defaults; device_map is accelerate's own free-form map (a value, not config keys);
    # so are served_model's keys, and its extra_body is the server's own request fields
    exempt = {"definitions.hf_model", "definitions.model.allOf[0].if", "definitions.model.allOf[1].if",
              "definitions.model.allOf[1].then", "definitions.served_model", "definitions.served_model.properties.extra_body",
              "definitions.model.allOf[2].if", "definitions.model.allOf[2].then"}
    open_ = []

    def walk(node, where):
        if isinstance(node, dict):
            if ("properties" in node or node.get("type") == "object") and where not in exempt \
                    and "additionalProperties" not in node:
                open_.append(where)
            for key, value in node.items():
                walk(value, f"{where}.{key}" if where else key)
        elif isinstance(node, list):
            for index, value in enumerate(node):
                walk(value, f"{where}[{index}]")

    walk(schema, "")
    assert not open_, open_


def test_yaml_syntax_error_in_a_config_names_file_line_and_fix(tmp_path, capsys):
    from prompt_reliability.base.config import load_config_file, main

    bad = tmp_path / "my.yaml"
    bad.write_text("datasets:\n  d: {adapter: synthetic\nmodels: {sim: {backend: simulate}}\n")
    with pytest.raises(ConfigError, match=r"my.yaml, line 3, column 7: not valid YAML \(expected ',' or '\}', but got "
                                          r"':'\); fix the syntax there"):
        load_config_file(bad)
    assert main([str(bad)]) == 1 and "my.yaml, line 3" in capsys.readouterr().err
    good = tmp_path / "good.yaml"
    good.write_text(yaml.safe_dump({**DEFAULT, "analysis": {"ece_bin": 10}}))
    assert main([str(good)]) == 1 and "'analysis.ece_bin' is not a known key" in capsys.readouterr().err
    good.write_text(yaml.safe_dump(DEFAULT))
    assert main([str(good)]) == 0


BROKEN_YAML = "datasets:\n  d: {adapter: synthetic\nmodels: {sim: {backend: simulate}}\n"


@pytest.mark.workflow
def test_what_a_user_sees_for_a_yaml_syntax_error(tmp_path):
    """A syntax error in a --configfile: Snakemake reads the file while it parses its command line,
    before this workflow's code runs, and its message names neither file nor line (the README says so
    and points to the checker); the checker names file, line, column and the fix. A syntax error in
    the embedded default (config.yaml, read by the Snakefile) gets the checker's message from the run."""
    import subprocess
    import sys

    bad = tmp_path / "my.yaml"
    bad.write_text(BROKEN_YAML)
    result = run_snakemake(tmp_path, "--configfile", str(bad), "-n", check=False)
    seen = result.stdout + result.stderr
    assert result.returncode != 0 and "Config file is not valid JSON or YAML" in seen and "my.yaml" not in seen
    assert "python -m prompt_reliability.base.config my.yaml" in (REPO / "README.md").read_text()
    checker = subprocess.run([sys.executable, "-m", "prompt_reliability.base.config", str(bad)], capture_output=True,
                             text=True, cwd=tmp_path)
    assert checker.returncode == 1 and checker.stdout == ""
    assert checker.stderr == (f"Invalid configuration: {bad}, line 3, column 7: not valid YAML (expected ',' or '}}', but "
                              "got ':'); fix the syntax there (closing quotes and brackets, indentation with spaces, "
                              "'key: value' with a space after the colon)\n")

    # the embedded default, broken in a copy of the workflow
    import shutil

    checkout, workdir = tmp_path / "checkout", tmp_path / "run"
    for folder in ("workflow", "src", "prompts", "profiles"):
        shutil.copytree(REPO / folder, checkout / folder, ignore=shutil.ignore_patterns("__pycache__"))
    shutil.copy2(REPO / "Snakefile", checkout / "Snakefile")
    (checkout / "config.yaml").write_text(BROKEN_YAML)
    workdir.mkdir()
    result = run_snakemake(workdir, "-n", check=False, snakefile=checkout / "Snakefile")
    seen = result.stdout + result.stderr
    assert result.returncode != 0
    assert f"Invalid configuration: {checkout / 'config.yaml'}, line 3, column 7: not valid YAML" in seen
    assert "fix the syntax there" in seen
