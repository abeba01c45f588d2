"""The stack's optional monthly budget (aws/stack.py's Budget: `aws setup --monthly-budget N --budget-email A`):
refused before any AWS call when it could never tell anyone, and shown by `aws status` with what AWS Budgets has
counted so far (DescribeBudget: its CalculatedSpend, actual and forecast)."""

from __future__ import annotations

from typing import Any

from .errors import error_code

HOW = "aws setup --monthly-budget N --budget-email ADDRESS"


def refusal(parameters: dict[str, str]) -> str | None:
    """Why these stack parameters make a budget nobody hears of (None: they do not)."""
    amount = parameters.get("MonthlyBudget", "0")
    if amount.isdigit() and int(amount) > 0 and not parameters.get("BudgetEmail"):
        return "a monthly budget needs an address to email when the forecast passes it: pass --budget-email too"
    return None


def status(budgets: Any, described: dict) -> str:
    """One line for `aws status`: the budget, what it counts, what AWS has counted, who is told; or how to make one."""
    outputs = {o["OutputKey"]: o["OutputValue"] for o in described.get("Outputs", [])}
    name = outputs.get("BudgetName")
    if not name:
        return f"none ({HOW})"
    parameters = {p["ParameterKey"]: p.get("ParameterValue", "") for p in described.get("Parameters") or []}
    told = f"a forecast over it emails {parameters.get('BudgetEmail') or '?'}"
    try:
        budget = budgets.describe_budget(AccountId=described["StackId"].split(":")[4], BudgetName=name)["Budget"]
    except Exception as err:  # the stack says what it asked for; Budgets may refuse this caller the reading
        return f"{name}: {parameters.get('MonthlyBudget', '?')} USD a month, the whole account; {told} " \
               f"(spend not readable: {error_code(err) or type(err).__name__})"
    limit = budget.get("BudgetLimit") or {}
    spend = budget.get("CalculatedSpend") or {}
    actual = (spend.get("ActualSpend") or {}).get("Amount")
    forecast = (spend.get("ForecastedSpend") or {}).get("Amount")
    counted = f"; spent {_usd(actual)} so far, forecast {_usd(forecast)}" if actual is not None else ""
    return f"{name}: {_usd(limit.get('Amount'))} a month, the whole account{counted}; {told}"


def _usd(amount: object) -> str:
    try:
        return f"{float(str(amount)):.2f} USD"
    except ValueError:
        return "? USD"
