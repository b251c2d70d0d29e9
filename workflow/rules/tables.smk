# Cross-pair tables, generated from the registry of analyses (report/registry.py): each per-pair
# piece is assembled into results/tables/<name>.parquet (read by the pipeline) with CSV and Markdown
# renderings for people; summaries are computed from the Parquet of the table they read.
from prompt_reliability.base.tables import assemble_table, write_html_table
from prompt_reliability.analysis import reliability
from prompt_reliability.report import registry

for analysis in registry.assembled():

    rule:
        name:
            f"{analysis.name}_table"
        input:
            pieces=per_pair(per_pair_piece(analysis.name)),
        output:
            **table_outputs(analysis.name),
        log:
            **job_logs("tables", analysis.name),
        localrule: True
        params:
            code=code_of(assemble_table),
            title=analysis.name,
        run:
            call(assemble_table, input, output, params, wildcards, log)


for analysis in registry.summaries():

    rule:
        name:
            analysis.name
        input:
            table=table_paths(analysis.made_from)[0],
        output:
            **{
                "summary" if k == "table" else k: v
                for k, v in table_outputs(analysis.name).items()
            },
        log:
            **job_logs("tables", analysis.name),
        localrule: True
        params:
            code=code_of(analysis.function),
            # the table's name, fixed when the rule is defined: `analysis` itself would be the loop's
            # last value when the job runs (run blocks read globals then), and the rule's name gets
            # a prefix when another workflow imports this one as a module
            table=analysis.name,
        run:
            call(ANALYSES[params.table].function, input, output, None, wildcards, log)


rule wins:
    input:
        reliability=table_paths("reliability")[0],
        ranking=table_paths("ranking_distribution")[0],
    output:
        **{"wins" if k == "table" else k: v for k, v in table_outputs("wins").items()},
    log:
        **job_logs("tables", "wins"),
    localrule: True
    params:
        code=code_of(reliability.write_wins),
    run:
        call(reliability.write_wins, input, output, params, wildcards, log)


# Every produced table as HTML in the HTML report (Snakemake shows HTML in the page; a CSV is only
# offered for download): category and caption from the registry, beside the CSV.
for analysis in PRODUCED:

    rule:
        name:
            f"{analysis.name}_html"
        input:
            table=table_paths(analysis.name)[0],
        output:
            html=report(
                table_html(analysis.name),
                caption=f"../report/{analysis.caption}",
                category=analysis.category,
                subcategory="Tables",
                labels={"table": analysis.name},
            ),
        log:
            **job_logs("tables", f"{analysis.name}_html"),
        localrule: True
        params:
            code=code_of(write_html_table),
            title=analysis.name,
        run:
            call(write_html_table, input, output, params, wildcards, log)
