# Preflight of the hf models (no weights): config and architecture, engine, processor, chat template,
# label tokens after every template. Every hf scoring job depends on its report, so a model that
# would fail at load time fails here, on the login node, before any GPU job is submitted:
#   snakemake --profile config/profiles/slurm --configfile my.yaml preflight
# The report is an ancient() input of the scoring jobs (scoring_inputs in common.smk): a re-run
# preflight (a model or prompt changed) orders the jobs but does not by itself re-score models
# whose caches are up to date.

# On the machine that runs Snakemake (the login node under SLURM), a CPU step: it needs the Hub, not
# a GPU.
HF_MODELS = models_with_backend(config, "hf")


rule preflight:
    input:
        tiny_models=[tiny_model_folder(m) for m in TINY_MODELS],
        prompt_files=[os.path.join(PROMPT_DIR, f"{f}.yaml") for f in FAMILIES]
        + [os.path.join(PROMPT_DIR, "labels.yaml")],
    output:
        report=PREFLIGHT_REPORT,
    log:
        **job_logs("preflight", "hf_models"),
    localrule: True
    threads: 1
    params:
        models={m: hf_model_config(m) for m in HF_MODELS},
        prompt_dir=lambda w, input: os.path.dirname(input.prompt_files[-1]),
        families=config["prompts"],
        prompt_format=config["prompt_format"],
    run:
        call(
            "prompt_reliability.scoring.preflight:write_preflight",
            input,
            output,
            params,
            wildcards,
            log,
            torch_threads=1,
        )
