# What a user reads after a run: the claims check (table claims) and results/REPORT.md.
from prompt_reliability.s3_analysis import claims as claims_check

CLAIMS_FILE = config["claims"] or os.path.join(workflow.basedir, "workflow/claims.yaml")
try:
    CLAIMS = claims_check.load_claims(CLAIMS_FILE)
except claims_check.ClaimsError as err:
    raise WorkflowError(f"Invalid claims file: {err}") from None

FINAL_TARGETS.extend(table_paths("claims"))


rule claims:
    input:
        claims=CLAIMS_FILE,
        # only the tables this run produces; a claim on any other table is reported as missing
        source_tables=[
            table_paths(name)[0]
            for name in claims_check.claim_tables(CLAIMS)
            if table_paths(name)[0] in FINAL_TARGETS
        ],
    output:
        **table_outputs("claims", category="Claims"),
    log:
        log_path("tables", "claims"),
    benchmark:
        benchmark_path("tables", "claims")
    localrule: True
    run:
        call(claims_check.write_claims, input, output, None, wildcards, log)
