"""Analysis with Pay-i from the notebook: use case definitions, KPIs, request properties after the fact, reports.

``use_cases`` (``pn.use_cases``), ``kpis`` (``pn.kpis``, ``pn.kpi``), ``annotate``
(``pn.annotate``), ``reports`` (``pn.report``) and ``outcomes`` (the KPI and property join
behind ``pn.ledger().df`` and ``pn.outcomes()``). ``routes`` holds the request plans.
"""
