# Preflight of the hf models (no weights): config and architecture, engine, processor, chat template,
# label tokens after every template, steering layers within the model's depth. A model that would
# fail at load time fails here, on the login node, before any GPU job is submitted:
#   snakemake --profile config/profiles/slurm --configfile my.yaml preflight
# A checkpoint gate: every other step waits for it (wait_for_gates in common.smk) but none depends
# on its report, so a re-run preflight (a model or prompt changed) re-scores only the caches whose
# own keys changed; Snakemake re-evaluates them once the preflight has run.

# On the machine that runs Snakemake (the login node under SLURM), a CPU step: it needs the Hub, not
# a GPU.
HF_MODELS = models_with_backend(config, "hf")


checkpoint preflight:
    input:
        tiny_models=[tiny_model_folder(m) for m in TINY_MODELS],
    output:
        report=PREFLIGHT_REPORT,
    log:
        **job_logs("preflight", "hf_models"),
    localrule: True
    threads: 1
    params:
        models={m: hf_model_config(m) for m in HF_MODELS},
        prompt_dir=untracked(PROMPT_DIR),
        prompts={f: REGISTRY.text_hash(f) for f in FAMILIES},
        families=config["prompts"],
        prompt_format=config["prompt_format"],
        steering_layers={
            m: config["safety_calibration"]["steering"]["layers"]
            for m in config["safety_calibration"]["models"]
        },
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
