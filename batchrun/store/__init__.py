"""The store: batchrun's database, behind one repository object (``Store``).

``open_store(resolve_db_url(...))`` gives a migrated, ready ``Store``; nothing outside this
package writes SQL.
"""

from batchrun.store.engine import open_store, resolve_db_url
from batchrun.store.errors import BudgetReachedError, StaleJobError
from batchrun.store.planning import PlanCounts
from batchrun.store.repository import CampaignRecord, Store
from batchrun.store.types import utcnow

__all__ = ["BudgetReachedError", "CampaignRecord", "PlanCounts", "StaleJobError", "Store", "open_store", "resolve_db_url", "utcnow"]
