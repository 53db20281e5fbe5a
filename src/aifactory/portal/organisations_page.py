"""Register your organisation and keep its facts: type, country, size, partner and linked
enterprises; the EU SME test's verdict is shown before saving."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Annotated, Any

from fastapi import APIRouter, Depends, Request
from fastapi.responses import Response
from sqlalchemy.orm import Session

from aifactory.api.deps import SessionDep
from aifactory.domain.amounts import percent, whole_number
from aifactory.domain.enums import OrganisationType
from aifactory.errors import Invalid
from aifactory.portal.forms import FormErrors, attempt
from aifactory.portal.web import CurrentUser, PortalRoute, redirect, render
from aifactory.services import organisations, registry
from aifactory.services.self_service_views import MAX_LINKS, OrganisationInput, SmeVerdict
from aifactory.services.sessions import SignedIn

router = APIRouter(route_class=PortalRoute)
ORG_TYPES = {
    "startup": "Start-up",
    "sme": "SME (small or medium-sized enterprise)",
    "large_enterprise": "Large enterprise",
    "academia": "Academia (university, research organisation)",
    "public_body": "Public body",
}
SME_SIZES = {
    "micro": "Micro enterprise",
    "small": "Small enterprise",
    "medium": "Medium-sized enterprise",
    "not_sme": "Not an SME",
    "unknown": "Not known yet",
}
LINK_FIELDS = ("name", "share", "staff", "turnover_eur", "balance_sheet_eur")
MONEY_FIELDS = ("staff_headcount", "annual_turnover_eur", "balance_sheet_eur")
MAX_ROWS = MAX_LINKS


@dataclass
class LinkForm:
    name: str = ""
    share: str = ""
    staff: str = ""
    turnover_eur: str = ""
    balance_sheet_eur: str = ""

    def blank(self) -> bool:
        return not any(getattr(self, f).strip() for f in LINK_FIELDS)


@dataclass
class OrgForm:
    """The form as typed, so a bad value is shown back as it was written."""

    name: str = ""
    type: str = ""
    country_code: str = ""
    staff_headcount: str = ""
    annual_turnover_eur: str = ""
    balance_sheet_eur: str = ""
    links: list[LinkForm] = field(default_factory=list)
    action: str = "save"


async def _form(request: Request) -> OrgForm:
    data = await request.form()
    text = {k: str(v)[:300] for k, v in data.items() if isinstance(v, str)}
    rows = [
        LinkForm(*(text.get(f"enterprise_links.{i}.{f}", "") for f in LINK_FIELDS))
        for i in range(MAX_ROWS)
    ]
    kept = [r for r in rows if not r.blank()]
    scalars = ("name", "type", "country_code", *MONEY_FIELDS)
    values = {k: text.get(k, "").strip() for k in scalars}
    return OrgForm(**values, links=kept, action=text.get("action", "save"))


FormDep = Annotated[OrgForm, Depends(_form)]


def fields_of(form: OrgForm) -> set[str]:
    rows = range(len(form.links) + 1)
    links = {f"enterprise_links.{i}.{f}" for i in rows for f in LINK_FIELDS}
    return {"name", "type", "country_code", *MONEY_FIELDS, *links}


def parse(
    session: Session, form: OrgForm, errors: FormErrors, org_id: int | None
) -> OrganisationInput | None:
    """Every field checked; all problems recorded beside their fields at once."""
    raw: dict[str, Any] = {"name": form.name, "type": form.type, "country_code": form.country_code}
    for name in MONEY_FIELDS:
        raw[name] = _number(errors, name, getattr(form, name))
    raw["enterprise_links"] = [_link(errors, i, link) for i, link in enumerate(form.links)]
    for name, message in (("name", "give the organisation's name"), ("type", "choose a type")):
        if not raw[name]:
            errors.add(name, message)
    if not form.country_code:
        errors.add("country_code", "choose the country where it is established")
    for problem in organisations.problems(session, raw, org_id):
        errors.add(problem.field, problem.message)
    if errors:
        return None
    try:
        return organisations.validated(raw)
    except Invalid as exc:
        errors.absorb(exc)
        return None


def _number(errors: FormErrors, name: str, text: str) -> int | None:
    if not text:
        return None
    try:
        return whole_number(text, name)
    except Invalid as exc:
        errors.add(name, exc.details[0].message)
        return None


def _link(errors: FormErrors, i: int, link: LinkForm) -> dict[str, Any]:
    key = f"enterprise_links.{i}"
    if not link.name.strip():
        errors.add(f"{key}.name", "give the enterprise's name")
    share = None
    if not link.share.strip():
        errors.add(f"{key}.share", "give the share held, in %")
    else:
        try:
            share = percent(link.share, f"{key}.share")
        except Invalid as exc:
            errors.add(f"{key}.share", exc.details[0].message)
    out: dict[str, Any] = {"name": link.name.strip(), "share": share}
    for f in ("staff", "turnover_eur", "balance_sheet_eur"):
        out[f] = _number(errors, f"{key}.{f}", getattr(link, f)) or 0
    return out


def _page(
    request: Request,
    session: Session,
    form: OrgForm,
    org_id: int | None,
    errors: FormErrors,
    verdict: SmeVerdict | None,
    status: int = 200,
) -> Response:
    title = "Register your organisation" if org_id is None else f"Organisation: {form.name}"
    context = {
        "title": title,
        "form": form,
        "rows": [*form.links, LinkForm()],
        "org_id": org_id,
        "types": [(t.value, ORG_TYPES.get(t.value, t.value)) for t in OrganisationType],
        "sizes": SME_SIZES,
        "countries": [(c.code, f"{c.name} ({c.code})") for c in registry.list_countries(session)],
        "verdict": verdict,
        **errors.context(),
    }
    return render(request, "organisation_form.html", context, status)


def _submit(
    request: Request, session: Session, user: SignedIn, form: OrgForm, org_id: int | None
) -> Response:
    errors = FormErrors(fields_of(form))
    data = parse(session, form, errors, org_id)
    verdict = organisations.verdict(data) if data is not None else None
    if data is None or form.action != "save":
        status = 422 if errors and form.action == "save" else 200
        return _page(request, session, form, org_id, errors, verdict, status)

    def save() -> int:
        if org_id is None:
            return organisations.register(session, user.principal, data).id
        changes = data.model_dump()
        return organisations.update(session, user.principal, org_id, changes).id

    saved = attempt(session, errors, save)
    if saved is None:
        return _page(request, session, form, org_id, errors, verdict, 422)
    return redirect(f"/organisations/{saved}?notice=organisation_saved")


@router.get("/organisations/new")
def new_form(request: Request, session: SessionDep, user: CurrentUser) -> Response:
    """Signed in: an empty registration form."""
    return _page(request, session, OrgForm(), None, FormErrors(fields_of(OrgForm())), None)


@router.post("/organisations/new")
def create(request: Request, session: SessionDep, user: CurrentUser, form: FormDep) -> Response:
    """Check (shows the SME verdict), add a row, or save: you become a member."""
    return _submit(request, session, user, form, None)


@router.get("/organisations/{org_id}")
def show(org_id: int, request: Request, session: SessionDep, user: CurrentUser) -> Response:
    """Members and federation admins: the organisation, editable, with its SME verdict."""
    data = organisations.as_input(session, user.principal, org_id)
    form = OrgForm(
        name=data.name,
        type=data.type,
        country_code=data.country_code,
        **{k: _grouped(getattr(data, k)) for k in MONEY_FIELDS},
        links=[
            LinkForm(
                link.name,
                f"{(link.share * 100).normalize():f}",
                _grouped(link.staff),
                _grouped(link.turnover_eur),
                _grouped(link.balance_sheet_eur),
            )
            for link in data.enterprise_links
        ],
    )
    verdict = organisations.verdict(data)
    return _page(request, session, form, org_id, FormErrors(fields_of(form)), verdict)


@router.post("/organisations/{org_id}")
def edit(
    org_id: int, request: Request, session: SessionDep, user: CurrentUser, form: FormDep
) -> Response:
    organisations.get(session, user.principal, org_id)  # members and admins only
    return _submit(request, session, user, form, org_id)


def _grouped(value: int | None) -> str:
    return "" if value is None else f"{value:,}"
