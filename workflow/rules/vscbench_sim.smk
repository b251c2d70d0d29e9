# VSCBench at the paper's scale, simulated (config safety_simulation; config/vscbench_sim.yaml):
# one job per simulated model, then the SRA, trade-off and findings tables and the figures.
from prompt_reliability.base.jobs import call
from prompt_reliability.analysis import vscbench_findings
from prompt_reliability.report.figures import vscbench as vscbench_figures
from prompt_reliability.scoring import safety_simulator

VS = config["safety_simulation"]
VS_DIR = "results/vscbench_sim"
VS_MODELS = list(VS["models"])


rule vscbench_simulate:
    output:
        responses=f"{VS_DIR}/{{model}}/responses.parquet",
        helpfulness=f"{VS_DIR}/{{model}}/helpfulness.parquet",
    log:
        **job_logs("vscbench_sim", "{model}"),
    wildcard_constraints:
        model=one_of(VS_MODELS),
    resources:
        **analysis_resources(),
    params:
        code=code_of(safety_simulator.write_simulated_model),
        profile=lambda w: VS["models"][w.model],
        simulation={k: v for k, v in VS.items() if k not in ("models", "findings")},
    run:
        call(
            safety_simulator.write_simulated_model,
            input,
            output,
            params,
            wildcards,
            log,
        )


rule vscbench_sra:
    input:
        responses=expand(f"{VS_DIR}/{{model}}/responses.parquet", model=VS_MODELS),
    output:
        **table_outputs("vscbench_sra"),
    log:
        **job_logs("tables", "vscbench_sra"),
    resources:
        **analysis_resources(),
    params:
        code=code_of(vscbench_findings.write_sra),
        verdicts=config["safety_calibration"]["verdicts"],
    run:
        call(vscbench_findings.write_sra, input, output, params, None, log)


rule vscbench_tradeoff:
    input:
        sra="results/tables/vscbench_sra.parquet",
        helpfulness=expand(f"{VS_DIR}/{{model}}/helpfulness.parquet", model=VS_MODELS),
    output:
        **table_outputs("vscbench_tradeoff"),
    log:
        **job_logs("tables", "vscbench_tradeoff"),
    localrule: True
    params:
        code=code_of(vscbench_findings.write_tradeoff),
    run:
        call(vscbench_findings.write_tradeoff, input, output, params, None, log)


rule vscbench_findings:
    input:
        sra="results/tables/vscbench_sra.parquet",
        tradeoff="results/tables/vscbench_tradeoff.parquet",
        helpfulness=expand(f"{VS_DIR}/{{model}}/helpfulness.parquet", model=VS_MODELS),
    output:
        **table_outputs("vscbench_findings"),
    log:
        **job_logs("tables", "vscbench_findings"),
    localrule: True
    params:
        code=code_of(vscbench_findings.write_findings),
        verdicts=config["safety_calibration"]["verdicts"],
        findings_spec=VS["findings"],
    run:
        call(vscbench_findings.write_findings, input, output, params, None, log)


rule vscbench_figures:
    input:
        sra="results/tables/vscbench_sra.parquet",
        tradeoff="results/tables/vscbench_tradeoff.parquet",
    output:
        scatter=figure_output("vscbench/sra_scatter.png", "vscbench_scatter.rst"),
        categories=figure_output("vscbench/categories.png", "vscbench_categories.rst"),
        pareto=figure_output("vscbench/pareto.png", "vscbench_pareto.rst"),
    log:
        **job_logs("figures", "vscbench"),
    resources:
        **analysis_resources(),
    params:
        code=code_of(vscbench_figures.write_figures),
        verdicts=config["safety_calibration"]["verdicts"],
    run:
        call(vscbench_figures.write_figures, input, output, params, None, log)
