"""The user's price overrides file: prices for private, fine-tuned or self-hosted models.

YAML or JSON (``.json``), USD per million tokens, validated strictly so that a typo is an error naming
the file and the field rather than a model silently priced at zero. See ``overrides.example.yaml``.
"""

from __future__ import annotations

import hashlib
import json
from dataclasses import dataclass
from datetime import date
from decimal import Decimal
from pathlib import Path
from typing import TYPE_CHECKING, Any

import yaml
from pydantic import BaseModel, ConfigDict, Field, ValidationError, model_validator

from wflo_core.errors import ConfigError

if TYPE_CHECKING:
    from genai_prices import types as genai

EXAMPLE_PATH = Path(__file__).with_name("overrides.example.yaml")


class OverridePrice(BaseModel):
    """One model's price from ``effective_from`` on (or always, when unset)."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    provider: str = Field(min_length=1)
    """wflo provider name: ``openai``, ``anthropic``, ``google``, ``openai_compatible``..."""
    model: str = Field(min_length=1)
    """The model name exactly as sent to the provider (compared case-insensitively)."""
    input_mtok: Decimal = Field(ge=0, allow_inf_nan=False)
    output_mtok: Decimal = Field(ge=0, allow_inf_nan=False)
    cached_input_mtok: Decimal | None = Field(default=None, ge=0, allow_inf_nan=False)
    """Cache reads; unset = cached tokens cost ``input_mtok``."""
    cache_write_mtok: Decimal | None = Field(default=None, ge=0, allow_inf_nan=False)
    """Cache writes (Anthropic-style); unset = cache writes cost ``input_mtok``."""
    reasoning_mtok: Decimal | None = Field(default=None, ge=0, allow_inf_nan=False)
    """Reasoning tokens; unset = they cost ``output_mtok`` like the rest of the output."""
    effective_from: date | None = None
    """UTC date from which this price applies; the latest started one wins."""

    def to_genai(self) -> genai.ModelPrice:
        """The same price as genai-prices models it, so it is priced by the same arithmetic."""
        from genai_prices import types as genai

        keys = {
            "input_mtok": self.input_mtok,
            "output_mtok": self.output_mtok,
            "cache_read_mtok": self.cached_input_mtok,
            "cache_write_mtok": self.cache_write_mtok,
            "output_reasoning_mtok": self.reasoning_mtok,
        }
        return genai.ModelPrice(**{key: value for key, value in keys.items() if value is not None})


class _OverridesDocument(BaseModel):
    model_config = ConfigDict(extra="forbid")

    models: list[OverridePrice]

    @model_validator(mode="after")
    def _no_duplicates(self) -> _OverridesDocument:
        seen: set[tuple[str, str, date | None]] = set()
        for entry in self.models:
            key = (entry.provider, entry.model.lower(), entry.effective_from)
            if key in seen:
                raise ValueError(
                    f"{entry.provider}/{entry.model} has two prices effective from "
                    f"{entry.effective_from or 'always'}; give each a different effective_from"
                )
            seen.add(key)
        return self


@dataclass(frozen=True)
class PriceOverrides:
    """A loaded overrides file; ``sha`` identifies its exact content in price versions."""

    path: Path
    sha: str
    entries: tuple[OverridePrice, ...]

    def prices_for(self, provider: str, model: str) -> list[OverridePrice]:
        """This model's prices, oldest first (the one without ``effective_from`` leads)."""
        matches = [e for e in self.entries if e.provider == provider and e.model.lower() == model.lower()]
        return sorted(matches, key=lambda e: (e.effective_from is not None, e.effective_from or date.min))


def load_overrides(path: Path) -> PriceOverrides:
    """Read and validate an overrides file; any problem is a ``ConfigError`` naming file and field."""
    try:
        raw = path.read_bytes()
    except OSError as err:
        raise _bad(path, f"cannot be read ({err.strerror})", field=None) from None
    try:
        document: Any = json.loads(raw) if path.suffix.lower() == ".json" else yaml.safe_load(raw)
    except (json.JSONDecodeError, yaml.YAMLError, UnicodeDecodeError) as err:
        raise _bad(path, f"is not valid {'JSON' if path.suffix.lower() == '.json' else 'YAML'}: {err}",
                   field=None) from None
    try:
        parsed = _OverridesDocument.model_validate(document)
    except ValidationError as err:
        problems = [(".".join(str(part) for part in e["loc"]) or "(top level)",
                     e["msg"].removeprefix("Value error, ")) for e in err.errors()]
        listed = "; ".join(f"field {field}: {problem}" for field, problem in problems)
        raise _bad(path, f"is invalid: {listed}", field=problems[0][0]) from None
    return PriceOverrides(path, hashlib.sha256(raw).hexdigest()[:12], tuple(parsed.models))


def _bad(path: Path, problem: str, *, field: str | None) -> ConfigError:
    return ConfigError(
        f"price overrides file {path} {problem}; fix the file (example: {EXAMPLE_PATH}) or unset "
        "WFLO_PRICE_OVERRIDES_PATH",
        path=str(path),
        field=field,
    )
