# Labeled calibrators (fit by the lock rule on the lock split) applied without refitting (Table 3;
# tables calibration, calibration_summary: tables.smk).
from prompt_reliability.analysis import calibration


rule calibration:
    input:
        matrix=per_pair_piece("matrix"),
        lock="results/lock/{model}.json",
    output:
        table=per_pair_piece("calibration"),
    log:
        **pair_logs("calibration"),
    group:
        PAIR_GROUP
    resources:
        **analysis_resources(),
    params:
        code=code_of(calibration.write_calibration),
        analysis=analysis_params("ece_bins", "eps"),
    run:
        call(calibration.write_calibration, input, output, params, wildcards, log)
