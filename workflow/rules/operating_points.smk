# Operating points: thresholds of the mean and the selected prompt fixed on the lock split and
# evaluated on every evaluation pair (table operating_points: tables.smk).
from prompt_reliability.analysis import operating_points


rule operating_points:
    input:
        matrix=per_pair_piece("matrix"),
        lock_matrix=f"results/matrix/{{model}}/{config['lock']['dataset']}.parquet",
        lock="results/lock/{model}.json",
    output:
        table=per_pair_piece("operating_points"),
    log:
        **pair_logs("operating_points"),
    group:
        PAIR_GROUP
    resources:
        **analysis_resources(),
    params:
        code=code_of(operating_points.write_operating_points),
        analysis=analysis_params("operating_points"),
        prevalences=config["analysis"]["bootstrap"]["prevalences"],
    run:
        call(
            operating_points.write_operating_points,
            input,
            output,
            params,
            wildcards,
            log,
        )
