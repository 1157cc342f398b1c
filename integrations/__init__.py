"""Third-party engines and services, each behind a small interface; imports ``callbacks`` only.

``REPORTING_INTEGRATIONS`` names the logging backends ``report_to`` accepts. Each backend's
module is imported only when a run asks for it.
"""

from .reporting import REPORTING_INTEGRATIONS, resolve_report_to

__all__ = ["REPORTING_INTEGRATIONS", "resolve_report_to"]
