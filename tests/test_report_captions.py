"""Every caption of the HTML report renders without Docutils errors or warnings (issue 23, item 6).

Snakemake renders a caption as a Jinja template (``snakemake.config``, wildcards, params) and then
as reStructuredText; a Docutils problem shows up in the report as a "System Message" block.
"""

from __future__ import annotations

import io
from types import SimpleNamespace

import pytest
import yaml
from conftest import REPO

from prompt_reliability.base.config import validate_config

CAPTIONS = sorted((REPO / "workflow/report").glob("*.rst"))


@pytest.fixture(scope="module")
def snakemake_namespace():
    config = yaml.safe_load((REPO / "config.yaml").read_text())
    validate_config(config, REPO / "workflow/schemas/config.schema.yaml")
    return SimpleNamespace(config=config, wildcards={}, params={}, input=[], output=[], rule="rule")


@pytest.mark.parametrize("caption", CAPTIONS, ids=[c.name for c in CAPTIONS])
def test_caption_renders_without_docutils_messages(caption, snakemake_namespace):
    from docutils.core import publish_parts
    from jinja2 import Environment

    text = Environment().from_string(caption.read_text()).render(snakemake=snakemake_namespace, categories={}, files={})
    messages = io.StringIO()
    publish_parts(text, writer="html", settings_overrides={"warning_stream": messages, "report_level": 2})
    assert messages.getvalue() == "", f"{caption.name}: {messages.getvalue()}"
