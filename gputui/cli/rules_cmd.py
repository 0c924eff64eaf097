"""`gputui rules`: Prometheus alerting rules for what gputui judges critical or failed."""

from __future__ import annotations

from typing import Annotated

import typer

from gputui.cli.app import app


@app.command("rules")
def rules(
    for_dcgm: Annotated[
        bool,
        typer.Option(
            "--for-dcgm",
            help="Rules over dcgm-exporter's DCGM_FI_* series instead of gputui's: the subset "
            "those series can express",
        ),
    ] = False,
) -> None:
    """Print Prometheus alerting rules (a rules file, YAML) on stdout.

    Over gputui's series (`gputui exporter`): critical and failed XIDs, hardware slowdowns,
    lost GPUs, row-remap failures, uncorrectable ECC, unreachable or stale hosts, verdicts at
    critical or worse; each with NVIDIA's action in its annotations. Check the file with
    `promtool check rules`; docs/prometheus.md says how to load it."""
    from gputui import __version__
    from gputui.render.prom_rules import dcgm_rules, gputui_rules, rules_yaml

    if for_dcgm:
        groups = dcgm_rules()
        header = (
            f"Alerting rules over dcgm-exporter's series, from gputui {__version__} "
            "(gputui rules --for-dcgm).\n"
            "Only what one DCGM series says alone: limits that depend on the GPU's model, "
            "latched reasons\nand host states need gputui's own series (gputui rules)."
        )
    else:
        groups = gputui_rules()
        header = (
            f"Alerting rules over gputui's series, from gputui {__version__} (gputui rules).\n"
            "The series: gputui exporter, or gputui report --format prometheus for "
            "node_exporter."
        )
    typer.echo(rules_yaml(groups, header), nl=False)
