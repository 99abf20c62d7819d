"""``batchrun report``: one self-contained HTML page about a campaign.

``data.gather`` reads the store into plain dicts (the only I/O); ``data.summarize`` and
``html.render`` are pure: dicts in, dicts or an HTML string out, so both are tested without a
database or a browser.
"""

from batchrun.report.data import gather, summarize
from batchrun.report.html import render

__all__ = ["gather", "render", "summarize"]
