"""The store: batchrun's database, behind one repository object (``Store``).

``open_store(resolve_db_url(...))`` gives a migrated, ready ``Store``; nothing outside this
package writes SQL.
"""

from batchrun.store.engine import open_store, resolve_db_url
from batchrun.store.repository import BudgetReachedError, CampaignRecord, PlanCounts, StaleJobError, Store
from batchrun.store.types import utcnow

__all__ = ["BudgetReachedError", "CampaignRecord", "PlanCounts", "StaleJobError", "Store", "open_store", "resolve_db_url", "utcnow"]
