"""Prompt-family reliability of zero-shot VLM safety scores.

The package holds every computation of the workflow; the Snakemake scripts under
``workflow/scripts`` only move files in and out of these functions.
"""

__version__ = "0.1.0"

LABEL_UNSAFE = 1
LABEL_SAFE = 0
