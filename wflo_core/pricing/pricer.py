"""One price compiled into one function of the usage, built once so that pricing a call is cheap.

``compile_pricer`` gives each price two forms, with identical results:

* the fold: every unit priced with ``calc_price``'s arithmetic (``price * count / per``) and summed
  unit by unit, in the caller's decimal context; a closure over tuples precomputed per price tier.
* the fast path, taken whenever the fold's arithmetic is exact: the context keeps at least 28 digits
  and every count is below a limit computed from the prices (about 10**20 tokens). A sum of exact
  ``Decimal`` terms is then their exact sum at the smallest exponent among them, in any order, so
  a term that is zero only matters through its exponent, and ``price * count / 10**k`` is one
  multiplication when ``count`` adds no trailing zero. It is Python source generated per price,
  straight-line code, because a loop over the units costs as much as the arithmetic itself.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from datetime import datetime
from decimal import Decimal, getcontext
from typing import NamedTuple, cast

from wflo_core.calls import Usage
from wflo_core.errors import PricingError, UsageInvalid

#: genai-prices usage keys that wflo's ``Usage`` reports, in the order a pricer reads the counts.
USAGE_KEYS = ("input_tokens", "output_tokens", "cache_read_tokens", "cache_write_tokens",
              "output_reasoning_tokens")
_FIELDS = ("input_tokens", "output_tokens", "cached_input_tokens", "cache_write_tokens", "reasoning_tokens")
"""The ``Usage`` attribute holding each of ``USAGE_KEYS``."""
ZERO_COUNT = len(USAGE_KEYS)
"""The index, after the usage counts, of the constant 0 that pads a unit's count to three terms."""
INPUT, OUTPUT, OTHER = 0, 1, 2
_ZERO = Decimal(0)
_PRECISION = 28
"""The fast path's results are exact in any context with at least this many digits (the default)."""


class Cost(NamedTuple):
    """What one call cost, and exactly which price was used (recorded on the ledger row).

    A named tuple, because one is built per call: a third of the cost of a frozen dataclass.
    """

    input_usd: Decimal
    output_usd: Decimal
    total_usd: Decimal
    """``input_usd + output_usd`` plus any per-request fee (which belongs to neither side)."""
    price_version: str
    """e.g. ``genai-prices==0.2.3:openai/gpt-4o``, ``override:<sha12>:openai_compatible/llama3@always``."""


Pricer = Callable[[Usage, datetime | None], Cost]
"""Prices one call's usage at the price in effect at the instant given (``None``: now)."""


@dataclass(frozen=True, slots=True)
class PricedUnit:
    """One priced unit of a price (input tokens, cache reads, the per-request fee...)."""

    usage_key: str
    direction: int
    price: Decimal
    tiers: tuple[tuple[int, Decimal], ...]
    """``(start, price)`` highest start first; the first with ``input_tokens > start`` applies."""
    per: int
    terms: tuple[tuple[int, int], ...]
    """The unit's token count as ``sum(coefficient * counts[index])`` over wflo's usage counts."""
    constant: int
    """1 for the per-request unit, else 0."""


_Row = tuple[Decimal, Decimal, Decimal, int, int, int, str]
"""A unit at one tier: its price, its ``per`` as a ``Decimal`` (dividing by an ``int`` converts it on
every call, 3x slower, for the same value and exponent), the ``Decimal`` a zero count adds
(``price * 0 / per``), the index of the count it adds and of the two it subtracts (``ZERO_COUNT``:
none), and its usage key for the error message."""
_Plan = tuple[tuple[_Row, ...], tuple[_Row, ...], Decimal, Decimal, Decimal]
"""One tier of a price: input rows, output rows, the starting input and output sums, and the fee."""


def compile_pricer(units: tuple[PricedUnit, ...], version: str) -> Pricer:
    """The price as one function: the generated fast path, falling back to the fold."""
    base = _plan(units, None)
    tiers = tuple((start, _plan(units, start))
                  for start in sorted({start for unit in units for start, _ in unit.tiers}, reverse=True))
    fold = _fold(base, tiers, version)
    return _generate(base, tiers, version, fold) or fold


def _plan(units: tuple[PricedUnit, ...], tier: int | None) -> _Plan:
    """The rows and constant sums of a price for prompts longer than ``tier`` tokens (``None``: any).

    Units wflo's usage never counts (web searches, audio...) add their price's zero, whose only effect
    is its exponent: untiered ones start the sums; units without a direction (the per-request fee)
    add the same amount to every call, so they are summed here.
    """
    start = [_ZERO, _ZERO, _ZERO]
    for unit in units:
        if not unit.terms and not unit.constant and not unit.tiers:
            start[unit.direction] += unit.price * _ZERO / unit.per
    rows: tuple[list[_Row], list[_Row]] = ([], [])
    for unit in units:
        if not unit.terms and not unit.constant and not unit.tiers:
            continue
        price = next((price for begins, price in unit.tiers if tier is not None and begins <= tier), unit.price)
        per, zero = Decimal(unit.per), price * _ZERO / unit.per
        if unit.direction == OTHER and not unit.terms:
            start[OTHER] += price * unit.constant / per if unit.constant else zero
        else:
            plus, minus, minus2 = _indexes(unit)
            rows[unit.direction].append((price, per, zero, plus, minus, minus2, unit.usage_key))
    return tuple(rows[INPUT]), tuple(rows[OUTPUT]), start[INPUT], start[OUTPUT], start[OTHER]


def _indexes(unit: PricedUnit) -> tuple[int, int, int]:
    """The unit's count as ``counts[a] - counts[b] - counts[c]``: the shape every genai-prices unit has."""
    added = [index for index, coefficient in unit.terms if coefficient == 1]
    taken = [index for index, coefficient in unit.terms if coefficient == -1]
    if unit.direction == OTHER or len(added) > 1 or len(taken) > 2 or len(added) + len(taken) < len(unit.terms):
        raise PricingError(f"wflo cannot price {unit.usage_key} counted as {unit.terms} over {USAGE_KEYS}")
    minus, minus2 = (*taken, ZERO_COUNT, ZERO_COUNT)[:2]
    return (added[0] if added else ZERO_COUNT), minus, minus2


def _fold(base: _Plan, tiers: tuple[tuple[int, _Plan], ...], version: str) -> Pricer:
    """``calc_price``'s arithmetic, unit by unit in its order, over precomputed rows."""
    new_cost = tuple.__new__

    def price(usage: Usage, at: datetime | None = None) -> Cost:
        counts = (usage.input_tokens, usage.output_tokens, usage.cached_input_tokens,
                  usage.cache_write_tokens, usage.reasoning_tokens, 0)
        input_rows, output_rows, input_usd, output_usd, fee = base
        for start, plan in tiers:  # highest first: the first the prompt is longer than applies
            if counts[0] > start:
                input_rows, output_rows, input_usd, output_usd, fee = plan
                break
        for unit_price, per, zero, plus, minus, minus2, usage_key in input_rows:
            count = counts[plus] - counts[minus] - counts[minus2]
            if count > 0:
                input_usd += unit_price * count / per  # an int converts exactly, as Decimal(count) does
            elif count:
                raise _inconsistent(usage, usage_key)
            else:
                input_usd += zero
        for unit_price, per, zero, plus, minus, minus2, usage_key in output_rows:
            count = counts[plus] - counts[minus] - counts[minus2]
            if count > 0:
                output_usd += unit_price * count / per
            elif count:
                raise _inconsistent(usage, usage_key)
            else:
                output_usd += zero
        # Summed per direction first, then the total, as before; genai-prices adds every unit to the
        # total as it goes, which gives the same digits (the identity test checks the whole catalog).
        return new_cost(Cost, (input_usd, output_usd, input_usd + output_usd + fee, version))

    return price


def _generate(base: _Plan, tiers: tuple[tuple[int, _Plan], ...], version: str, fold: Pricer) -> Pricer | None:
    """The fast path as generated source, or ``None`` where it cannot be exact (a ``per`` that is not a
    power of ten divides inexactly; a negative zero price keeps its sign).

    The source holds only generated names; every value (prices, limits, the version) is a constant
    of its namespace, so nothing from a catalog or an overrides file is ever parsed as code.
    """
    namespace: dict[str, object] = {
        "fold": fold, "getcontext": getcontext, "new_cost": tuple.__new__, "Cost": Cost, "version": version,
        "refuse": _inconsistent,
    }

    def constant(value: object) -> str:
        name = f"c{len(namespace)}"
        namespace[name] = value
        return name

    blocks, weight, read, bounded = [], 0, {0}, set[int]()
    for start, plan in ((None, base), *tiers):
        block = _block(plan, constant, read, bounded)
        if block is None:
            return None
        lines, plan_weight = block
        weight = max(weight, plan_weight)
        blocks.append((start, lines))
    limit = constant(10 ** _PRECISION // max(weight, 1))
    source = ["def price(usage, at=None):"]
    source += [f"    {_NAMES[index]} = usage.{_FIELDS[index]}" for index in sorted(read)]
    tests = [f"{_NAMES[index]} >= {limit}" for index in sorted(bounded)] + [f"getcontext().prec < {_PRECISION}"]
    source.append(f"    if {' or '.join(tests)}:")
    source.append("        return fold(usage, at)")
    for start, lines in blocks[1:]:
        source.append(f"    if i > {constant(start)}:")
        source += [f"        {line}" for line in lines]
    source += [f"    {line}" for line in blocks[0][1]]
    exec(compile("\n".join(source), "<wflo generated price>", "exec"), namespace)
    return cast(Pricer, namespace["price"])


_NAMES = ("i", "o", "cr", "cw", "rs")


def _block(
    plan: _Plan, constant: Callable[[object], str], read: set[int], bounded: set[int],
) -> tuple[list[str], int] | None:
    """One tier's lines, and the largest weight of a side: its amount's digits per token.

    ``read`` collects the usage counts the lines use, ``bounded`` those a priced unit adds (no
    count of a unit exceeds the one it adds, so bounding these bounds every amount).

    Each side starts with the unit of smallest price exponent (its zero when its count is 0), then
    adds the other counted units; their zeros never lower that exponent, so they are left out, and
    so are the constant zeros that do not lower it.
    """
    input_rows, output_rows, input_start, output_start, fee = plan
    lines: list[str] = []
    counted: list[list[tuple[_Row, str]]] = [[], []]
    zeros: list[list[Decimal]] = [[input_start], [output_start]]
    for side, row in [(INPUT, row) for row in input_rows] + [(OUTPUT, row) for row in output_rows]:
        price, _, zero, plus, minus, minus2, usage_key = row
        indexes = [index for index in (plus, minus, minus2) if index != ZERO_COUNT]
        read.update(indexes)
        if not indexes or not price:  # never counted, or free: only its zero's exponent matters
            zeros[side].append(zero)
            if indexes and minus != ZERO_COUNT:  # still refuse what the fold refuses
                lines.append(f"if {_count(plus, minus, minus2)} < 0: raise refuse(usage, {constant(usage_key)})")
            continue
        bounded.update(index for index in (plus,) if index != ZERO_COUNT)
        if minus == ZERO_COUNT:
            counted[side].append((row, _NAMES[plus]))
            continue
        name = f"n{len(lines)}"
        lines.append(f"{name} = {_count(plus, minus, minus2)}")
        lines.append(f"if {name} < 0: raise refuse(usage, {constant(usage_key)})")
        counted[side].append((row, name))
    smallest, weight = [0, 0], 0
    for side, amount in ((INPUT, "input_usd"), (OUTPUT, "output_usd")):
        low = min(zeros[side], key=_exponent)
        if any(_signed(d) for d in zeros[side]) or any(_signed(row[0]) for row, _ in counted[side]):
            return None
        smallest[side] = min([_exponent(low)] + [_exponent(row[0]) for row, _ in counted[side]])
        if not counted[side]:
            lines.append(f"{amount} = {constant(low)}")
            continue
        maybe_powers = [_power(row[1]) for row, _ in counted[side]]
        if None in maybe_powers:
            return None
        powers = cast(list[int], maybe_powers)
        lowest = min(smallest[side], *(_exponent(row[0]) - power
                                       for (row, _), power in zip(counted[side], powers, strict=True)))
        first = min(range(len(counted[side])), key=lambda k: _exponent(counted[side][k][0][0]))
        side_weight = 0
        for k in (first, *(k for k in range(len(counted[side])) if k != first)):
            (row, count), power = counted[side][k], powers[k]
            term = _term(row[0], power, count, constant)
            if k == first:
                lines.append(f"{amount} = {term} if {count} else {constant(row[2])}")
            else:
                lines.append(f"if {count}: {amount} += {term}")
            side_weight += _coefficient(row[0]) * 10 ** (_exponent(row[0]) - power - lowest)
        if _exponent(low) < _exponent(counted[side][first][0][0]):
            lines.append(f"{amount} += {constant(low)}")
        weight = max(weight, side_weight)
    if fee or _signed(fee) or _exponent(fee) < min(smallest):
        total = f"input_usd + output_usd + {constant(fee)}"
        lines.append(f"return new_cost(Cost, (input_usd, output_usd, {total}, version))")
    else:  # a zero fee whose exponent is no smaller than the sum's: adding it changes nothing
        lines.append("return new_cost(Cost, (input_usd, output_usd, input_usd + output_usd, version))")
    return lines, weight


def _count(plus: int, minus: int, minus2: int) -> str:
    names = [_NAMES[index] for index in (minus, minus2) if index != ZERO_COUNT]
    return " - ".join([_NAMES[plus] if plus != ZERO_COUNT else "0", *names])


def _term(price: Decimal, power: int, count: str, constant: Callable[[object], str]) -> str:
    """``price * count / 10**power``, as one multiplication when the price's digits (trailing zeros
    aside) times ``count`` do not end in 0: the quotient's trailing zeros are then the price's, up to
    ``power`` of them, so its exponent is known. Whether they end in 0 is one remainder of ``count``:
    by 10, or by 5 when those digits are even, or by 2 when they are a multiple of 5."""
    digits, exponent = _coefficient(price), _exponent(price)
    zeros = len(str(digits)) - len(str(digits).rstrip("0"))
    stripped, shift = digits // 10 ** zeros, min(zeros, power)
    rate = Decimal((0, tuple(int(d) for d in str(stripped * 10 ** (zeros - shift))), exponent - power + shift))
    modulus = 5 if stripped % 2 == 0 else 2 if stripped % 5 == 0 else 10
    return (f"({constant(rate)} * {count} if {count} % {modulus} "
            f"else {constant(price)} * {count} / {constant(Decimal(10 ** power))})")


def _exponent(value: Decimal) -> int:
    exponent = value.as_tuple().exponent
    assert isinstance(exponent, int), value  # prices are finite
    return exponent


def _coefficient(value: Decimal) -> int:
    return int("".join(str(d) for d in value.as_tuple().digits))


def _signed(value: Decimal) -> bool:
    return value.is_signed()


def _power(per: Decimal) -> int | None:
    """``k`` when ``per`` is ``10**k``."""
    text = str(int(per))
    return len(text) - 1 if text == "1" + "0" * (len(text) - 1) else None


def _inconsistent(usage: Usage, usage_key: str) -> UsageInvalid:
    problem = usage.inconsistency() or f"the {usage_key} count comes out negative"
    return UsageInvalid(
        f"UsageInvalid: cannot price {usage}: {problem}; fix the usage normalization for this provider",
        shape="usage",
    )
