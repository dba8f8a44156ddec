"""Exact call prices: a catalog on genai-prices plus user overrides, and usage read from responses."""

from wflo_core.calls import Usage as Usage
from wflo_core.pricing.catalog import CATALOG_VERSION as CATALOG_VERSION
from wflo_core.pricing.catalog import UNPRICED_VERSION as UNPRICED_VERSION
from wflo_core.pricing.catalog import ModelPrice as ModelPrice
from wflo_core.pricing.catalog import PriceCatalog as PriceCatalog
from wflo_core.pricing.catalog import UnknownModelPolicy as UnknownModelPolicy
from wflo_core.pricing.catalog import UnpricedModelWarning as UnpricedModelWarning
from wflo_core.pricing.overrides import OverridePrice as OverridePrice
from wflo_core.pricing.overrides import load_overrides as load_overrides
from wflo_core.pricing.pricer import Cost as Cost
from wflo_core.pricing.usage import usage_from_anthropic as usage_from_anthropic
from wflo_core.pricing.usage import usage_from_google as usage_from_google
from wflo_core.pricing.usage import usage_from_openai_chat as usage_from_openai_chat
from wflo_core.pricing.usage import usage_from_openai_responses as usage_from_openai_responses

__all__ = [
    "CATALOG_VERSION",
    "UNPRICED_VERSION",
    "Cost",
    "ModelPrice",
    "OverridePrice",
    "PriceCatalog",
    "UnknownModelPolicy",
    "UnpricedModelWarning",
    "Usage",
    "load_overrides",
    "usage_from_anthropic",
    "usage_from_google",
    "usage_from_openai_chat",
    "usage_from_openai_responses",
]
