# Everything chosen or fit on the lock split, once per model; evaluation never refits.
from prompt_reliability.analysis import lock as locking


rule lock:
    input:
        matrix=f"results/matrix/{{model}}/{config['lock']['dataset']}.parquet",
    output:
        lock="results/lock/{model}.json",
    log:
        **job_logs("lock", "{model}"),
    localrule: True
    resources:
        **analysis_resources(),
    params:
        code=code_of(locking.write_lock),
        dataset=config["lock"]["dataset"],
        split=config["lock"]["split"],
        prompt_ids=PROMPT_IDS,
        family_of=FAMILY_OF,
        analysis=analysis_params(
            "seed", "ece_bins", "eps", "threshold", "temperature_bounds"
        ),
    run:
        call(locking.write_lock, input, output, params, wildcards, log)
