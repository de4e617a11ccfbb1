"""Pure analysis of the verify step: summarise samples, compare pools, judge the gates.

Input is the sample frame of :mod:`bgkit.samples`. Nothing here does I/O.

- :mod:`~bgkit.analysis.summary`: :func:`summarise`, the per-host and per-pool table;
- :mod:`~bgkit.analysis.comparison`: :func:`compare`, idle against live;
- :mod:`~bgkit.analysis.gates`: :func:`evaluate`, the gates and their :class:`Verdict`;
- :mod:`~bgkit.analysis.served`: the gates on what the idle hosts are (their release id,
  the load balancer's servers against bgkit.toml's);
- ``_frame``: the samples as integer codes, shared by the three; ``_gate``: one gate's
  result.
"""

from bgkit.analysis._frame import natural_key
from bgkit.analysis.comparison import Comparison, compare
from bgkit.analysis.gates import GateResult, GateVerdict, Verdict, evaluate
from bgkit.analysis.summary import POOL_ROW, SUMMARY_COLUMNS, summarise

__all__ = [
    "POOL_ROW",
    "SUMMARY_COLUMNS",
    "Comparison",
    "GateResult",
    "GateVerdict",
    "Verdict",
    "compare",
    "evaluate",
    "natural_key",
    "summarise",
]
