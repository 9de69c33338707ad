"""The words of ``bench/residency_trace.py``'s workload: the tasks a developer asks for, the
memory bank of their project, and the pieces its source files are made of."""

from __future__ import annotations

from dataclasses import dataclass

__all__ = [
    "BANK_TEXT",
    "FIELDS",
    "HEADER",
    "NOUNS",
    "STATEMENTS",
    "TASKS",
    "VERBS",
    "TaskSpec",
]


@dataclass(frozen=True)
class TaskSpec:
    symbol: str
    test: str
    files: tuple[str, ...]
    text: str
    question: str  # the same work asked as an analysis first (Plan mode)
    review: str  # an analysis after the implementation; a log is pasted after it
    chat: str


def _spec(head: str, text: str, question: str, review: str, chat: str) -> TaskSpec:
    symbol, test, *files = head.split()
    paths = tuple(f"app/{f}.py" for f in files)
    return TaskSpec(symbol, f"tests/{test}.py", paths, text, question, review, chat)


TASKS = (
    _spec(
        "list_invoices test_invoices_api api/invoices db/queries schemas/invoice",
        "Add limit/offset pagination to GET /invoices, with the total in an X-Total-Count "
        "header. Keep the default page size at 50.",
        "Explain how GET /invoices builds its query today and review whether offset "
        "pagination stays fast with 200k invoices. Propose a plan, don't change code yet.",
        "Before we go on, review the pagination change for edge cases. Staging logged this:",
        "thanks! what does keyset pagination mean, compared to offset?",
    ),
    _spec(
        "send_due_reminders test_reminders jobs/reminders jobs/scheduler db/models",
        "Customers get the payment reminder twice when the scheduler restarts during a run. "
        "Fix it so each reminder is sent at most once.",
        "Why could a reminder be sent twice after a scheduler restart? Walk me through the "
        "reminder job and its locking, and compare the options to make it exactly-once.",
        "Can you review the reminder fix again? The worker log from last night:",
        "thanks. what does at-least-once delivery mean exactly?",
    ),
    _spec(
        "paid_invoices_between test_reports api/reports db/queries services/money",
        "Add a streamed CSV export of paid invoices for a date range: GET /reports/paid.csv",
        "How should we structure the CSV export so it does not load every invoice in memory? "
        "Review the reports module and recommend an approach.",
        "Review the export: are time zones and currencies handled right? A staging run:",
        "great, thanks. what is the difference between a generator and a StreamingResponse?",
    ),
    _spec(
        "handle_payment_webhook test_webhooks api/webhooks services/payments db/models",
        "Retry failed payment webhooks with exponential backoff (max 6 attempts) and store an "
        "idempotency key so a retried webhook never books a payment twice.",
        "Investigate why some payments were booked twice last week: analyze the webhook "
        "handler and the payment service, explain the root cause. Log excerpt below:",
        "Review the retry logic: is the backoff bounded? The provider's delivery log:",
        "thx - what is an idempotency key, in one sentence?",
    ),
    _spec(
        "billing_email test_customers_api db/models schemas/customer api/customers",
        "Rename Customer.billing_email to invoice_email everywhere, with an Alembic migration.",
        "Plan the billing_email rename: which modules, migrations and API clients are "
        "affected, and what are the trade-offs of keeping a deprecated alias?",
        "Review the migration: will it lock the customers table for long? The staging run:",
        "ok cool. what does the alembic 'batch_alter_table' mode do?",
    ),
    _spec(
        "render_invoice_pdf test_pdf pdf/render pdf/layout services/money",
        "Put the company logo and an EPC QR code for bank transfer on the invoice PDF.",
        "Walk me through how the invoice PDF is rendered, from the template to the bytes, "
        "and assess where a QR code would fit best.",
        "Review the PDF change: the renderer logged warnings on staging:",
        "nice, thanks. what does EPC stand for in EPC QR code?",
    ),
    _spec(
        "invoice_total test_totals services/money services/totals schemas/invoice",
        "Invoice totals are off by a cent on invoices with many lines. Fix the rounding.",
        "Explain how totals and taxes are computed and where rounding happens; why can the "
        "total differ from the sum of the lines?",
        "Review the rounding fix against the accountant's report. The failing comparison:",
        "thanks! what does ROUND_HALF_EVEN mean exactly?",
    ),
    _spec(
        "RateLimiter test_rate_limit api/deps api/middleware settings",
        "Add rate limiting to the public API: 100 requests a minute per key, else 429.",
        "Compare a fixed window, a sliding window and a token bucket for our rate limit with "
        "three API replicas behind the load balancer. Recommend one.",
        "Review the limiter under load; the load test printed:",
        "great. what's the difference between 429 and 503 for clients?",
    ),
)

NOUNS = ("invoice", "customer", "payment", "reminder", "line", "tax", "ledger", "export")
VERBS = ("load", "build", "validate", "apply", "render", "compute", "fetch", "store", "sync")
FIELDS = ("amount", "status", "due_date", "issued_at", "currency", "customer_id", "total")
BANK_TEXT = {
    "projectbrief": "# Project Brief: Ledgerline\n\n## Goal\nLedgerline is invoicing for small "
    "agencies (2-40 people): issue invoices in several currencies, chase payments, export "
    "what the accountant needs. One deployment per customer, hosted by us.\n\n## Scope\n- "
    "Invoices with line items, taxes per line, discounts, credit notes.\n- Payment reminders "
    "by email on a schedule the agency chooses.\n- Payments booked from the provider's "
    "webhooks (Stripe, GoCardless) and from bank statements.\n- Reports: open items, paid "
    "invoices, VAT per quarter, CSV for accountants.\n\n## Out of scope\nPayroll, "
    "expenses, time tracking (agencies use Harvest; we import its CSV).\n",
    "productContext": "# Product Context\n\n## Why it exists\nAgencies lose money to late "
    "invoices and forgotten reminders. Their accountants want clean exports, not PDFs.\n\n## "
    "Users\n- Owners: issue invoices, look at the open items every Monday.\n- Office managers:"
    " book payments, send reminders, answer customers.\n- Accountants (read only): exports "
    "at the end of each quarter.\n\n## Experience goals\n- An invoice is issued in under a "
    "minute from a Harvest import.\n- No customer is ever reminded twice for the same "
    "invoice on the same day.\n- Every amount on screen equals the amount in the export, to "
    "the cent.\n",
    "systemPatterns": "# System Patterns\n\n## Architecture\nA FastAPI app (app/api) over a "
    "service layer (app/services) and SQLAlchemy 2.0 models (app/db). Background jobs "
    "(app/jobs) run in one scheduler process with APScheduler; they take a Postgres advisory "
    "lock per job so a second scheduler waits.\n\n## Money\nAmounts are Decimal in the "
    "invoice currency, never float. app/services/money.py owns rounding (ROUND_HALF_UP per "
    "line, as the tax office wants).\n\n## Idempotency\nWebhook handlers store the "
    "provider's event id; a repeated id answers 200 without booking again.\n\n## Errors\n"
    "Services raise DomainError subclasses; app/api/errors.py maps them to problem+json.\n\n"
    "## Testing\npytest with a Postgres per worker (pytest-xdist), factories in "
    "tests/factories.py, time frozen with time-machine.\n\n## Modules\n{modules}",
    "techContext": "# Tech Context\n\n## Stack\n- Python 3.12, FastAPI 0.115, SQLAlchemy 2.0 "
    "(async), Alembic, Pydantic 2.\n- Postgres 16; Redis 7 for the rate limiter and job "
    "locks' heartbeat.\n- WeasyPrint for PDFs; Jinja templates in app/pdf/templates.\n- "
    "Emails through Postmark.\n\n## Development setup\n`uv sync`, `docker compose up db "
    "redis`, `uv run alembic upgrade head`, `uv run pytest -q`. Lint: `uv run ruff check . && "
    "uv run mypy app`.\n\n## Constraints\n- Three API replicas behind the load balancer; the "
    "scheduler runs once.\n- p95 under 300 ms for list endpoints at 200k invoices.\n",
    "activeContext": "# Active Context\n\n## Current focus\n{focus}\n\n## Recent decisions\n"
    "- Keep money as Decimal end to end; the API serialises amounts as strings.\n- Reports "
    "stream rows; never build a whole report in memory.\n{decisions}",
    "progress": "# Progress\n\n## What works\n- Invoices, credit notes, taxes, discounts.\n- "
    "Harvest import, PDF invoices, Postmark emails.\n- Stripe and GoCardless webhooks.\n"
    "{done}\n## What is left\n- Bank statement import (CAMT.053).\n- Multi-user roles.\n\n## "
    "Known issues\n- Reminder job occasionally slow on Monday mornings (n+1 queries).\n",
}
STATEMENTS = (
    "    {o} = row.{o} or Decimal(0)",
    '    if strict and row.{f} is None:\n        raise DomainError("{n} {f} is missing")',
    "    total = Decimal(0)\n    for line in row.lines:\n        total += (line.quantity * "
    'line.unit_price).quantize(\n            Decimal("0.01"), rounding=ROUND_HALF_UP\n        )',
    '    log.info("{v}_{n}", extra={{"id": row.id, "{o}": row.{o}}})',
    "    row.updated_at = datetime.now(UTC)\n    await session.flush()",
)
HEADER = (
    "from __future__ import annotations\n\nimport logging\nfrom dataclasses import dataclass\n"
    "from datetime import UTC, datetime\nfrom decimal import ROUND_HALF_UP, Decimal\n\n"
    "from sqlalchemy import select\nfrom sqlalchemy.ext.asyncio import AsyncSession\n\n"
    "from app.db.models import {m}, Customer, Invoice\nfrom app.services.errors import "
    "DomainError, NotFound\n\nlog = logging.getLogger(__name__)\n\n\n@dataclass(frozen=True)\n"
    "class {m}Row:"
)
