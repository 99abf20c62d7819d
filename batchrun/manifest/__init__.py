"""Manifests: a YAML (or bare CSV) file -> a validated ``Campaign`` whose ``jobs()`` are JobSpecs.

``load_campaign`` parses, expands and validates everything and raises one ``ManifestError``
listing every problem, each located at ``file:line:column`` of the value that caused it.
Format v1, top-level keys:
``name`` ``model`` ``defaults`` ``jobs`` ``matrix`` ``csv`` ``takes`` ``output`` ``budget`` ``prices``

Modules, in the order data flows through them:

    yamlnodes  line-aware YAML (duplicate keys, alias bombs and odd tags become problems)
    csvrows    CSV rows with their lines and columns
    templates  ``{var}`` strings with ``{{``/``}}`` escapes
    loader     top-level keys and job sources -> a checked ``Plan``
    expand     the Plan -> JobSpecs (jobs x matrix x takes), keys and file names, lazily
    campaign   ``Campaign``, the result
"""

from __future__ import annotations

from batchrun.manifest.campaign import Campaign
from batchrun.manifest.loader import TOP_KEYS, load_campaign

__all__ = ["Campaign", "load_campaign", "TOP_KEYS"]
