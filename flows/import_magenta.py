"""Prefect flow ``import_magenta_bundle``: a Magenta ``.mag`` (or run directory) → a melodyflow bundle.

A flow, although the conversion is one local step, so that an import run from a deployment (a bucket of
users' bundles) is recorded like training: where the model came from, what it became, and its self-check,
in the run's markdown artifact.
"""

from __future__ import annotations

from prefect import flow, get_run_logger
from prefect.artifacts import create_markdown_artifact

from melodyflow.flows.reporting import link


def summary_markdown(result: dict) -> str:
    sizes = "x".join(str(s) for s in result["rnn_layer_sizes"])
    check = result["self_check_max_abs_prob_diff"]
    return "\n".join([
        f"# Magenta model imported as `{result['config']}` ({result['status'].replace('_', ' ')})", "",
        f"- **Source:** `{result['source']}` ({result['source_kind'].replace('_', ' ')}, "
        f"generator id `{result['generator_id']}`, sha256 `{result['sha256'][:16]}…`)",
        f"- **Bundle:** {link(result['bundle'])}",
        f"- **Model:** {sizes} LSTM, {result['input_size']} inputs, {result['num_classes']} classes; "
        f"{result['tensors']} tensors named as {result['tensor_naming']}",
        "- **Self-check:** max |Δp| against Magenta's equations on a probe melody: "
        + (f"{check:.1e}" if check is not None else "n/a"),
        "", f"Generate with `melodyflow generate {result['out']} --output OUT`.",
    ])


@flow(name="import-magenta-bundle")
def import_magenta_bundle(source: str, out: str, config: str | None = None, hparams: str | None = None) -> dict:
    """Import a Magenta Melody RNN into ``out`` (a RUN_DIR-style directory with ``bundles/LATEST``)."""
    from melodyflow.models.bundles.magenta_import import import_magenta

    logger = get_run_logger()
    result = import_magenta(source, out, config=config, hparams=hparams)
    if result["status"] == "up_to_date":
        logger.info("%s already holds this import of %s; nothing to do", out, source)
    else:
        logger.info("Imported %s (%s) into %s; self-check max |dp| %.1e", source, result["config"],
                    result["bundle"], result["self_check_max_abs_prob_diff"])
    create_markdown_artifact(key="magenta-import-summary", markdown=summary_markdown(result),
                             description="Where the imported Magenta model came from and where it went")
    return result
