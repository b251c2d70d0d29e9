# What a user reads after a run: the claims check (table claims) and results/REPORT.md.
from prompt_reliability.analysis import claims as claims_check

# one claims file per paper: workflow/claims/*.yaml, or the files config key `claims` lists
CLAIMS_FILES = claims_check.claim_files(
    config["claims"], os.path.join(WORKFLOW_DIR, "workflow/claims")
)
try:
    CLAIMS = claims_check.load_claims(CLAIMS_FILES)
except claims_check.ClaimsError as err:
    raise WorkflowError(f"Invalid claims file: {err}") from None


rule claims:
    input:
        # only the tables this run produces; a claim on any other table is reported as missing
        source_tables=[
            table_paths(name)[0]
            for name in claims_check.claim_tables(CLAIMS)
            if table_paths(name)[0] in PRODUCED_TABLES
        ],
    output:
        **table_outputs("claims"),
    log:
        **job_logs("tables", "claims"),
    localrule: True
    params:
        code=code_of(claims_check.write_claims),
        # the validated claims themselves, not the files' paths: another clone re-runs nothing,
        # an edit of any claims file re-runs the check
        claims=CLAIMS,
    run:
        call(claims_check.write_claims, input, output, params, wildcards, log)


# REPORT.md is the last file of every run: it reads every table, manifest and lock and links every
# figure. Its params are only what it renders of the config (report_run_info), so a setting of how
# jobs run (workers, resources, batch sizes) does not rewrite it. Figures stay plain inputs (a
# redrawn figure rewrites it): with ancient() ones, Snakemake would drop the job as a dependant of a
# re-running figure without checking its own params (docs/architecture.md, "What re-runs what").
rule report_md:
    input:
        tables_in=sorted(PRODUCED_TABLES),
        manifests=[f"results/data/{d}.parquet" for d in DATASETS],
        locks=[f"results/lock/{m}.json" for m in MODELS],
        caches=[
            f"results/scores/{m}/{config['lock']['dataset']}/{FAMILIES[0]}.parquet"
            for m in MODELS
        ],
        figures=PRODUCED_FIGURES,
    output:
        report=REPORT_MD,
    log:
        **job_logs("report", "REPORT"),
    localrule: True
    params:
        code=code_of(report_md.write_report),
        run=report_run_info(),
    run:
        call(report_md.write_report, input, output, params, wildcards, log)
